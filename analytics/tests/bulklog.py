"""A large, realistic event log, written the way several servers write it.

The small log in ``eventlog.py`` has answers worked out by hand; this one has
volume instead: a million events or more, spread over several instances'
files, for checking that the job gives the same report wherever it runs and
for timing it. Its content follows a site's traffic: mostly requests (with
skewed routes, latencies and statuses), logins that fail now and then, a few
addresses guessing passwords or spraying accounts, captchas, CSRF refusals,
rate limits, and a bad line now and then (one of each cause in turn, and a
line cut short at the end of the file each server was writing last).

Lines are spelled as the site spells them: compact JSON in the fields' order,
``user`` and ``session_hash`` written as null when empty, the other optional
fields left out. Files are named as the site names them,
``events-YYYY-MM-DD-<instance>[-N].jsonl``, a new part whenever a file passes
``max_file_bytes``. The same seed always writes the same bytes.

Run it as a script to write a log for timing the job::

    python analytics/tests/bulklog.py --events-count 10000000 --out /tmp/portico-events
"""

from __future__ import annotations

import argparse
import calendar
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TextIO

#: Servers writing into the shared folder.
INSTANCES = ("web1", "web2", "web3")
#: The first day of the log (UTC); the log covers ``days`` days from here.
START_DAY = "2026-11-20"
#: The site's own default size limit of one file before it starts a new part.
SITE_MAX_FILE_BYTES = 64 << 20

# (kind, weight): the share of each kind among the events.
KIND_WEIGHTS = (
    ("request", 780),
    ("login_fail", 50),
    ("login_ok", 20),
    ("register", 5),
    ("logout", 10),
    ("captcha_issued", 60),
    ("captcha_ok", 45),
    ("captcha_fail", 15),
    ("csrf_reject", 8),
    ("rate_limited", 6),
    ("session_store_error", 1),
)

# (path, method, weight, typical latency in ms); "/notes/{id}/" gets a note id.
ROUTES = (
    ("/", "GET", 200, 4.0),
    ("/notes/", "GET", 150, 9.0),
    ("/notes/{id}/", "GET", 150, 6.0),
    ("/notes/{id}/edit/", "POST", 20, 14.0),
    ("/notes/new/", "POST", 25, 12.0),
    ("/static/site.css", "GET", 160, 0.4),
    ("/captcha/", "GET", 80, 22.0),
    ("/accounts/login/", "POST", 60, 48.0),
    ("/accounts/login/", "GET", 40, 3.0),
    ("/accounts/register/", "POST", 5, 52.0),
    ("/accounts/logout/", "POST", 10, 2.0),
    ("/healthz", "GET", 100, 0.2),
)
NOTE_IDS = 400

# (status, weight) of request responses; the rest are 200.
STATUS_WEIGHTS = ((200, 900), (303, 40), (304, 20), (400, 15), (403, 5), (404, 12), (429, 5), (500, 3))

LOGIN_FAIL_REASONS = (("bad_credentials", 90), ("captcha", 8), ("invalid_form", 2))
CAPTCHA_MODES = (("latin", 70), ("digits", 20), ("zh", 10))
CAPTCHA_FAIL_REASONS = (("wrong", 80), ("expired", 15), ("missing", 5))
CSRF_REASONS = (
    ("missing", 30), ("malformed", 5), ("expired", 20), ("foreign", 15),
    ("cross_site", 15), ("bad_origin", 10), ("bad_referer", 5),
)
CSRF_ORIGINS = ((None, 50), ("https://evil.example", 30), ("null", 10), ("https://mirror.example", 10))
RATE_LIMIT_SCOPES = (("login_ip", 50), ("login_account", 20), ("captcha_session", 20), ("captcha_ip", 10))
STORE_ERRORS = ("connection refused", "timed out", "pool exhausted")

#: Ordinary visitors' addresses, and accounts on the site.
VISITORS = 40_000
ACCOUNTS = 15_000
#: Addresses that guess one account's password, ones that try many accounts,
#: and ones that keep answering captchas wrong.
GUESSERS = 12
SPRAYERS = 8
CAPTCHA_BOTS = 3
#: The share of failed logins and failed captchas that come from those addresses.
ATTACK_SHARE = 0.3

#: One bad line in this many lines, cycling through BAD_LINES.
BAD_LINE_EVERY = 40_000
BAD_LINES = (
    "this is not json",
    '["an", "array"]',
    '{"time":"2026-11-20T00:00:00.000Z","kind":"request"}',
    '{"v":2,"time":"2026-11-20T00:00:00.000Z","kind":"request","status":"created"}',
    '{"v":1,"time":"2026-11-20T00:00:00.000Z","kind":"request","status":"ok"}',
    '{"v":1,"time":"2026-11-20T00:00:00.000Z","kind":""}',
    '{"v":1,"time":"yesterday","kind":"request"}',
)


def _table(weights: tuple[tuple[object, int], ...], size: int = 1000) -> list:
    """A list in which each value fills its share: one random.choice from it
    is much cheaper than a random.choices call with weights for every line."""
    total = sum(w for _, w in weights)
    table: list = []
    for value, w in weights:
        table += [value] * round(size * w / total)
    return table


def _visitor(n: int) -> str:
    return f"10.20.{(n >> 8) & 255}.{n & 255}"


@dataclass
class _Writer:
    """One instance's files: a new file each UTC day and when one grows past the limit."""

    folder: Path
    instance: str
    max_file_bytes: int
    day: str = ""
    part: int = 0
    size: int = 0
    out: Optional[TextIO] = None
    files: list[Path] = field(default_factory=list)

    def write(self, day: str, line: str) -> None:
        if self.out is None or day != self.day or self.size + len(line) > self.max_file_bytes:
            self._open(day)
        assert self.out is not None
        self.out.write(line)
        self.size += len(line)

    def _open(self, day: str) -> None:
        self.part = self.part + 1 if day == self.day else 0
        self.day = day
        if self.out is not None:
            self.out.close()
        suffix = f"-{self.part}" if self.part else ""
        path = self.folder / f"events-{day}-{self.instance}{suffix}.jsonl"
        self.out = path.open("w", encoding="utf-8", newline="\n")
        self.size = 0
        self.files.append(path)

    def close(self, tail: str = "") -> None:
        if self.out is not None:
            self.out.write(tail)
            self.out.close()
            self.out = None


def write_bulk_log(
    folder: Path,
    events: int,
    *,
    days: int = 2,
    instances: tuple[str, ...] = INSTANCES,
    seed: int = 1,
    max_file_bytes: int = SITE_MAX_FILE_BYTES,
    progress: Optional[Callable[[int], None]] = None,
) -> list[Path]:
    """Write ``events`` lines (events and a few bad lines) into ``folder``; returns the files.

    Each instance writes an equal share, its times rising evenly (with
    jitter) over ``days`` days from START_DAY, as a server appending to its
    log would. The last file of every instance ends in a line cut short,
    without a newline, as a server that is still writing (or died) leaves it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    kinds = _table(KIND_WEIGHTS)
    routes = _table(tuple((r, r[2]) for r in ROUTES))
    statuses = _table(STATUS_WEIGHTS)
    login_reasons = _table(LOGIN_FAIL_REASONS)
    modes = _table(CAPTCHA_MODES)
    captcha_reasons = _table(CAPTCHA_FAIL_REASONS)
    csrf_reasons = _table(CSRF_REASONS)
    origins = _table(CSRF_ORIGINS)
    scopes = _table(RATE_LIMIT_SCOPES)
    guessers = [f"203.0.113.{i + 1}" for i in range(GUESSERS)]
    sprayers = [f"198.51.100.{i + 1}" for i in range(SPRAYERS)]
    captcha_bots = [f"192.0.2.{i + 1}" for i in range(CAPTCHA_BOTS)]
    choice = rng.choice

    start_ms = calendar.timegm(time.strptime(START_DAY, "%Y-%m-%d")) * 1000
    span_ms = days * 86_400_000
    writers = [_Writer(folder, name, max_file_bytes) for name in instances]
    per_instance = [events // len(instances) + (i < events % len(instances)) for i in range(len(instances))]
    written = 0

    for writer, count in zip(writers, per_instance):
        step = span_ms / max(count, 1)
        prefix = '{"v":1,"time":"'
        inst = f'","instance":"{writer.instance}","request_id":"'
        last_second = -1
        second_text = day = ""
        for i in range(count):
            written += 1
            if written % BAD_LINE_EVERY == 0:
                writer.write(day or START_DAY, BAD_LINES[(written // BAD_LINE_EVERY) % len(BAD_LINES)] + "\n")
                continue
            ts = start_ms + int(i * step + rng.random() * step)
            second = ts // 1000
            if second != last_second:
                last_second = second
                second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                day = second_text[:10]
            kind = choice(kinds)
            r = rng.random()
            ip = _visitor(1 + int(r * r * VISITORS))  # a few visitors make most of the traffic
            user = "null"
            session = f'"{rng.getrandbits(96):024x}"' if r < 0.8 else "null"
            extra = ""
            path, method = "/accounts/login/", "POST"

            if kind == "request":
                path, method, _, typical = choice(routes)
                if "{id}" in path:
                    path = path.replace("{id}", str(rng.randrange(NOTE_IDS)))
                status = choice(statuses)
                latency = round(rng.expovariate(1.0 / typical) + typical / 4, 3)
                extra = f',"status":{status},"latency_ms":{latency}'
            elif kind == "login_fail":
                reason = choice(login_reasons)
                account = f"user{rng.randrange(ACCOUNTS)}"
                if rng.random() < ATTACK_SHARE:
                    if rng.random() < 0.5:
                        g = rng.randrange(GUESSERS)
                        ip, account, reason = guessers[g], f"user{g}", "bad_credentials"
                    else:
                        ip, reason = choice(sprayers), "bad_credentials"
                extra = f',"reason":"{reason}"' + ("" if reason == "invalid_form" else f',"account":"{account}"')
            elif kind in ("login_ok", "register"):
                account = f"user{rng.randrange(ACCOUNTS)}"
                user = f'"{account}"'
                if kind == "register":
                    path = "/accounts/register/"
                extra = f',"account":"{account}"'
            elif kind == "logout":
                user, path = f'"user{rng.randrange(ACCOUNTS)}"', "/accounts/logout/"
            elif kind.startswith("captcha_"):
                mode = choice(modes)
                extra = f',"captcha_mode":"{mode}"'
                if kind == "captcha_issued":
                    path, method = "/captcha/", "GET"
                elif kind == "captcha_fail":
                    extra += f',"reason":"{choice(captcha_reasons)}"'
                    if rng.random() < ATTACK_SHARE:
                        ip = choice(captcha_bots)
            elif kind == "csrf_reject":
                path = "/notes/new/"
                origin = choice(origins)
                extra = f',"reason":"{choice(csrf_reasons)}"'
                extra += ',"origin":null' if origin is None else f',"origin":"{origin}"'
            elif kind == "rate_limited":
                extra = f',"scope":"{choice(scopes)}"'
            else:  # session_store_error
                path, method = "/notes/", "GET"
                extra = f',"error":"{choice(STORE_ERRORS)}"'

            writer.write(
                day,
                f'{prefix}{second_text}.{ts % 1000:03d}Z","ts_ms":{ts},"kind":"{kind}{inst}'
                f'{rng.getrandbits(64):016x}","client_ip":"{ip}","user":{user},"session_hash":{session},'
                f'"path":"{path}","method":"{method}"{extra}}}\n',
            )
            if progress is not None and written % 1_000_000 == 0:
                progress(written)
        writer.close(tail=f'{prefix}{second_text}.999Z","ts_ms":{last_second * 1000 + 999},"kind":"requ')
    return [f for w in writers for f in w.files]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events-count", type=int, required=True, help="lines to write (events and a few bad lines)")
    p.add_argument("--out", type=Path, required=True, help="the events folder to write into (created)")
    p.add_argument("--days", type=int, default=2, help="days the log covers (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    p.add_argument(
        "--max-file-mb", type=int, default=SITE_MAX_FILE_BYTES >> 20,
        help="size at which a file is continued in a new part, in MiB (default: %(default)s, as the site)",
    )
    args = p.parse_args(argv)
    if any(args.out.glob("*.jsonl")):
        print(f"bulklog: {args.out} already holds event files; give an empty folder", file=sys.stderr)
        return 2
    started = time.monotonic()
    files = write_bulk_log(
        args.out, args.events_count, days=args.days, seed=args.seed, max_file_bytes=args.max_file_mb << 20,
        progress=lambda n: print(f"bulklog: {n} lines", file=sys.stderr),
    )
    size = sum(f.stat().st_size for f in files)
    print(json.dumps({
        "lines": args.events_count, "files": len(files), "bytes": size,
        "seconds": round(time.monotonic() - started, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
