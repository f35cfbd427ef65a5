"""A small event log with known answers, written the way the site writes it.

Several servers' files (rotated daily and by size, one in a sub-folder) share
one folder; one file ends in a line cut short, as after a crash; a file that
is not an event file sits beside them. The EXPECTED_* constants below are the
answers, worked out by hand from the events built here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Optional

DAY1 = "2026-11-25"
DAY2 = "2026-11-26"

BRUTE_IP = "203.0.113.66"  # 12 failures within one hour: flagged by failures
SPRAY_IP = "198.51.100.7"  # 6 accounts within one hour: flagged by accounts
SLOW_IP = "192.0.2.20"  # 12 failures, but 6 + 6 in two hours: not flagged
NORMAL_IP = "192.0.2.10"  # 4 failures: not flagged
CAPTCHA_NOISY_IP = "203.0.113.99"  # 12 failed captchas within one hour
CAPTCHA_NORMAL_IP = "192.0.2.30"  # 5 failed captchas: not listed

EXPECTED_FAILURES_BY_ADDRESS = {BRUTE_IP: 12, SPRAY_IP: 6, SLOW_IP: 12, NORMAL_IP: 4}
EXPECTED_BRUTEFORCE = {BRUTE_IP: "failures", SPRAY_IP: "accounts"}
EXPECTED_FAILED_BY_REASON = {"bad_credentials": 32, "captcha": 1, "invalid_form": 1}
# mode -> (ok, fail)
EXPECTED_CAPTCHA = {"latin": (6, 14), "digits": (1, 3), "zh": (4, 0)}
EXPECTED_CAPTCHA_ISSUED = {"latin": 20, "digits": 4, "zh": 4}
EXPECTED_CSRF_BY_REASON = {"missing": 3, "foreign": 2, "cross_site": 1, "bad_origin": 1, "expired": 1}
EXPECTED_CSRF_BY_ORIGIN = {"(none)": 4, "https://evil.example": 3, "null": 1}
EXPECTED_BAD = {
    "unparsable_json": 2,
    "missing_version": 1,
    "unknown_version": 2,
    "bad_field_type": 1,
    "missing_kind": 1,
    "missing_time": 2,
}
# /login: latencies 1..100 ms, 5 responses of 429 and 2 of 500.
EXPECTED_LOGIN_ROUTE = {"requests": 100, "p50": 50.0, "p95": 95.0, "p99": 99.0, "ge400": 7, "ge500": 2}


def _event(kind: str, day: str, hour: int, seq: int, ip: str = "192.0.2.1", **fields: Any) -> dict[str, Any]:
    """One version 1 event. ``seq`` spreads events over the hour, a second apart."""
    at = dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00") + dt.timedelta(seconds=seq, milliseconds=123)
    ev: dict[str, Any] = {
        "v": 1,
        "time": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "ts_ms": int(at.timestamp() * 1000),
        "kind": kind,
        "instance": "web1",
        "request_id": f"req-{day}-{hour}-{seq}-{kind}",
        "client_ip": ip,
        "user": None,
        "session_hash": "9f2c…",
        "path": "/login",
        "method": "POST",
        "status": None,
        "latency_ms": None,
    }
    ev.update(fields)
    return ev


def build_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    seq = iter(range(100_000))

    def add(kind: str, hour: int, day: str = DAY1, **fields: Any) -> None:
        events.append(_event(kind, day, hour, next(seq), **fields))

    # --- logins ---
    for i in range(12):
        add("login_fail", 12, ip=BRUTE_IP, account=["alice", "bob", "carol"][i % 3], reason="bad_credentials")
    for i in range(6):
        add("login_fail", 1, day=DAY2, ip=SPRAY_IP, account=f"user{i}", reason="bad_credentials")
    for hour in (12, 13):
        for _ in range(6):
            add("login_fail", hour, ip=SLOW_IP, account="dave", reason="bad_credentials")
    add("login_fail", 12, ip=NORMAL_IP, account="alice", reason="bad_credentials")
    add("login_fail", 12, ip=NORMAL_IP, account="alice", reason="bad_credentials")
    add("login_fail", 14, ip=NORMAL_IP, account="alice", reason="captcha")
    add("login_fail", 14, ip=NORMAL_IP, account=None, reason="invalid_form")
    add("login_ok", 14, ip=NORMAL_IP, account="alice", user="alice")
    add("login_ok", 15, ip="192.0.2.11", account="bob", user="bob")
    add("register", 13, ip="192.0.2.12", account="erin", user="erin", path="/register")
    add("logout", 15, ip=NORMAL_IP, user="alice", path="/logout")

    # --- captchas ---
    for mode, issued in EXPECTED_CAPTCHA_ISSUED.items():
        for _ in range(issued):
            add("captcha_issued", 12, ip=CAPTCHA_NORMAL_IP, captcha_mode=mode, path="/captcha", method="GET")
    for mode, (ok, _) in EXPECTED_CAPTCHA.items():
        for _ in range(ok):
            add("captcha_ok", 13, ip=CAPTCHA_NORMAL_IP, captcha_mode=mode)
    add("captcha_fail", 13, ip=CAPTCHA_NORMAL_IP, captcha_mode="latin", reason="wrong")
    add("captcha_fail", 13, ip=CAPTCHA_NORMAL_IP, captcha_mode="latin", reason="expired")
    for reason in ("wrong", "expired", "missing"):
        add("captcha_fail", 13, ip=CAPTCHA_NORMAL_IP, captcha_mode="digits", reason=reason)
    for _ in range(12):
        add("captcha_fail", 15, ip=CAPTCHA_NOISY_IP, captcha_mode="latin", reason="wrong")

    # --- CSRF ---
    for _ in range(3):
        add("csrf_reject", 14, reason="missing", origin=None, path="/settings")
    for _ in range(2):
        add("csrf_reject", 14, reason="foreign", origin="https://evil.example", path="/settings")
    add("csrf_reject", 14, reason="cross_site", origin="https://evil.example", path="/settings")
    add("csrf_reject", 14, reason="bad_origin", origin="null", path="/settings")
    add("csrf_reject", 14, reason="expired", path="/settings")  # no origin field at all

    # --- requests ---
    for ms in range(1, 101):
        status = 500 if ms in (10, 20) else 429 if ms in (30, 40, 50, 60, 70) else 200
        add("request", 12 + ms % 3, status=status, latency_ms=float(ms))
    for _ in range(10):
        add("request", 12, path="/", method="GET", status=200, latency_ms=5)  # an int: still a double
    for _ in range(3):
        add("request", 12, path="/static/app.css?v=3", method="GET", status=304, latency_ms=0.4)

    # --- the rest ---
    add("rate_limited", 12, ip=BRUTE_IP, scope="login_ip")
    add("rate_limited", 12, ip=BRUTE_IP, scope="login_ip")
    add("rate_limited", 15, ip=CAPTCHA_NOISY_IP, scope="captcha_ip")
    add("session_store_error", 15, error="connection refused")
    return events


def bad_lines() -> list[str]:
    """One line per bad-line cause (two for some), matching EXPECTED_BAD.

    The truncated line is not among them: it is written last in a file,
    without its newline, as a writer that died mid-line leaves it.
    """
    good = _event("login_ok", DAY1, 16, 0, account="zoe")

    def variant(drop: tuple[str, ...] = (), **changes: Any) -> str:
        ev = {k: v for k, v in good.items() if k not in drop}
        ev.update(changes)
        return json.dumps(ev)

    return [
        "this is not json",  # unparsable_json
        variant(drop=("v",)),  # missing_version
        variant(v=2),  # unknown_version
        variant(v=2, status="created"),  # unknown_version, although status would not fit v1
        variant(status="oops"),  # bad_field_type
        variant(drop=("kind",)),  # missing_kind
        variant(time="yesterday"),  # missing_time
        variant(drop=("time",)),  # missing_time
    ]


TRUNCATED = '{"v":1,"time":"2026-11-25T16:59:59.999Z","ts_ms":1795280399999,"kind":"requ'


def write_log(root: Path) -> Path:
    """Write the log under ``root``; returns the events folder."""
    folder = root / "events"
    (folder / "web2").mkdir(parents=True)
    files = [
        folder / f"events-{DAY1}-web1.jsonl",
        folder / f"events-{DAY1}-web1.1.jsonl",
        folder / f"events-{DAY1}-web2.jsonl",
    ]
    day2 = folder / "web2" / f"events-{DAY2}-web2.jsonl"
    lines: dict[Path, list[str]] = {f: [] for f in files + [day2]}
    day1_events = [e for e in build_events() if e["time"].startswith(DAY1)]
    for i, ev in enumerate(day1_events):
        lines[files[i % len(files)]].append(json.dumps(ev, ensure_ascii=False))
    lines[day2] = [json.dumps(e) for e in build_events() if e["time"].startswith(DAY2)]
    lines[files[2]] += bad_lines() + [""]  # and a blank line, which is no line at all

    for path, content in lines.items():
        path.write_text("\n".join(content) + "\n", encoding="utf-8")
    with files[0].open("a", encoding="utf-8") as f:
        f.write(TRUNCATED)  # no newline: the writer died here
    # Not an event file: must not be read.
    (folder / "README.txt").write_text("events for the reference site\n{not json\n", encoding="utf-8")
    return folder


def expected_events_total() -> int:
    return len(build_events())


def expected_kind_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for ev in build_events():
        counts[ev["kind"]] = counts.get(ev["kind"], 0) + 1
    return counts


def find(rows: list[dict[str, Any]], **match: Any) -> Optional[dict[str, Any]]:
    """The one row whose fields equal ``match``, or None."""
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(found) <= 1, f"more than one row matches {match}: {found}"
    return found[0] if found else None
