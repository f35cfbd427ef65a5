"""Exact answers from one in-process run over the generated log."""

from __future__ import annotations

import datetime as dt

import pytest
from eventlog import (
    BRUTE_IP,
    CAPTCHA_NOISY_IP,
    CAPTCHA_NORMAL_IP,
    EXPECTED_BAD,
    EXPECTED_BRUTEFORCE,
    EXPECTED_CAPTCHA,
    EXPECTED_CAPTCHA_ISSUED,
    EXPECTED_CSRF_BY_ORIGIN,
    EXPECTED_CSRF_BY_REASON,
    EXPECTED_FAILED_BY_REASON,
    EXPECTED_FAILURES_BY_ADDRESS,
    EXPECTED_LOGIN_ROUTE,
    NORMAL_IP,
    SLOW_IP,
    SPRAY_IP,
    expected_events_total,
    expected_kind_counts,
    find,
)

from portico_analytics.job import REPORT_NAMES

# percentile_approx is exact on groups this small; allow one rank either way.
PERCENTILE_TOLERANCE_MS = 1.0


def _hour(text: str) -> dt.datetime:
    """An hour as Spark hands it back to Python: naive, in the local zone."""
    return dt.datetime.fromisoformat(text).astimezone().replace(tzinfo=None)


def test_every_line_is_an_event_or_a_counted_bad_line(report):
    lines = report.summary["lines"]
    assert lines["events"] == expected_events_total()
    assert lines["bad"] == sum(EXPECTED_BAD.values())
    assert lines["total"] == lines["events"] + lines["bad"]
    assert report.summary["input"]["files"] == 4  # README.txt is not read
    assert report.summary["events_by_kind"] == expected_kind_counts()


def test_bad_lines_by_cause(report):
    assert report.summary["lines"]["bad_by_cause"] == EXPECTED_BAD
    on_disk = {r["cause"]: r["lines"] for r in report.rows("bad_lines")}
    assert on_disk == EXPECTED_BAD
    samples = report.rows("bad_lines_sample")
    assert len(samples) == sum(EXPECTED_BAD.values())
    truncated = [r for r in samples if r["line"].endswith('"kind":"requ')]
    assert len(truncated) == 1 and truncated[0]["cause"] == "unparsable_json"
    assert truncated[0]["file"].endswith("events-2026-11-25-web1.jsonl")


def test_failed_logins_per_address(report):
    rows = report.rows("login_failures_by_address")
    assert {r["client_ip"]: r["failures"] for r in rows} == EXPECTED_FAILURES_BY_ADDRESS
    normal = find(rows, client_ip=NORMAL_IP)
    assert (normal["bad_credentials"], normal["captcha"], normal["invalid_form"]) == (2, 1, 1)
    assert normal["distinct_accounts"] == 1  # the invalid form had no account
    assert report.summary["logins"]["failed_by_reason"] == EXPECTED_FAILED_BY_REASON
    assert report.summary["logins"]["failed"] == sum(EXPECTED_FAILED_BY_REASON.values())


def test_failed_logins_per_address_per_hour(report):
    rows = report.rows("login_failures_by_address_hour")
    assert find(rows, client_ip=BRUTE_IP, hour=_hour("2026-11-25T12:00:00+00:00"))["failures"] == 12
    assert find(rows, client_ip=BRUTE_IP, hour=_hour("2026-11-25T12:00:00+00:00"))["distinct_accounts"] == 3
    slow = sorted((r["hour"], r["failures"]) for r in rows if r["client_ip"] == SLOW_IP)
    assert slow == [
        (_hour("2026-11-25T12:00:00+00:00"), 6),
        (_hour("2026-11-25T13:00:00+00:00"), 6),
    ]
    spray = find(rows, client_ip=SPRAY_IP)
    assert (spray["hour"], spray["failures"], spray["distinct_accounts"]) == (
        _hour("2026-11-26T01:00:00+00:00"),
        6,
        6,
    )


def test_failed_logins_per_account_per_hour(report):
    rows = report.rows("login_failures_by_account_hour")
    noon = _hour("2026-11-25T12:00:00+00:00")
    alice = find(rows, account="alice", hour=noon)
    assert (alice["failures"], alice["distinct_addresses"]) == (4 + 2, 2)  # brute force 4, normal 2
    assert find(rows, account="dave", hour=noon)["failures"] == 6
    assert find(rows, account="(none)")["invalid_form"] == 1
    totals = {r["account"]: r["failures"] for r in report.rows("login_failures_by_account")}
    assert totals["alice"] == 4 + 3 and totals["dave"] == 12 and totals["user3"] == 1


def test_bruteforce_addresses_flagged_and_normal_ones_not(report):
    flagged = {r["client_ip"]: r for r in report.rows("bruteforce_addresses")}
    assert {ip: r["flagged_by"] for ip, r in flagged.items()} == EXPECTED_BRUTEFORCE
    assert NORMAL_IP not in flagged
    assert SLOW_IP not in flagged  # 12 failures, but never 10 within one hour
    brute = flagged[BRUTE_IP]
    assert (brute["failures"], brute["peak_hour_failures"], brute["flagged_hours"]) == (12, 12, 1)
    assert brute["peak_hour"] == _hour("2026-11-25T12:00:00+00:00")
    assert flagged[SPRAY_IP]["peak_hour_accounts"] == 6
    in_summary = {r["client_ip"] for r in report.summary["logins"]["bruteforce_addresses"]}
    assert in_summary == set(EXPECTED_BRUTEFORCE)


def test_captcha_solve_rate_per_mode(report):
    by_mode = report.summary["captcha"]["by_mode"]
    for mode, (ok, fail) in EXPECTED_CAPTCHA.items():
        assert (by_mode[mode]["ok"], by_mode[mode]["fail"]) == (ok, fail), mode
        assert by_mode[mode]["issued"] == EXPECTED_CAPTCHA_ISSUED[mode]
        assert by_mode[mode]["solve_rate"] == pytest.approx(ok / (ok + fail)), mode
    assert by_mode["latin"]["solve_rate"] == pytest.approx(0.3)
    assert by_mode["digits"]["solve_rate"] == pytest.approx(0.25)
    assert by_mode["zh"]["solve_rate"] == pytest.approx(1.0)
    assert (by_mode["digits"]["fail_wrong"], by_mode["digits"]["fail_expired"], by_mode["digits"]["fail_missing"]) == (1, 1, 1)


def test_captcha_solve_rate_per_hour(report):
    rows = report.rows("captcha_by_mode_hour")
    at_13 = find(rows, mode="latin", hour=_hour("2026-11-25T13:00:00+00:00"))
    assert (at_13["ok"], at_13["fail"]) == (6, 2)
    assert at_13["solve_rate"] == pytest.approx(0.75)
    at_15 = find(rows, mode="latin", hour=_hour("2026-11-25T15:00:00+00:00"))
    assert (at_15["ok"], at_15["fail"], at_15["solve_rate"]) == (0, 12, 0.0)
    issued_only = find(rows, mode="zh", hour=_hour("2026-11-25T12:00:00+00:00"))
    assert issued_only["issued"] == 4 and issued_only["solve_rate"] is None


def test_addresses_with_many_captcha_failures(report):
    rows = report.rows("captcha_fail_addresses")
    assert [r["client_ip"] for r in rows] == [CAPTCHA_NOISY_IP]
    assert (rows[0]["failures"], rows[0]["peak_hour_failures"], rows[0]["modes"]) == (12, 12, ["latin"])
    assert CAPTCHA_NORMAL_IP not in {r["client_ip"] for r in rows}


def test_csrf_rejections_by_reason_and_origin(report):
    assert report.summary["csrf"]["by_reason"] == EXPECTED_CSRF_BY_REASON
    assert report.summary["csrf"]["rejections"] == sum(EXPECTED_CSRF_BY_REASON.values())
    by_origin = {r["origin"]: r["rejections"] for r in report.rows("csrf_by_origin")}
    assert by_origin == EXPECTED_CSRF_BY_ORIGIN


def test_route_latency_percentiles_and_error_rates(report):
    rows = report.rows("routes")
    login = find(rows, path="/login")
    want = EXPECTED_LOGIN_ROUTE
    assert login["requests"] == want["requests"]
    assert login["p50_ms"] == pytest.approx(want["p50"], abs=PERCENTILE_TOLERANCE_MS)
    assert login["p95_ms"] == pytest.approx(want["p95"], abs=PERCENTILE_TOLERANCE_MS)
    assert login["p99_ms"] == pytest.approx(want["p99"], abs=PERCENTILE_TOLERANCE_MS)
    assert (login["errors_ge400"], login["errors_ge500"]) == (want["ge400"], want["ge500"])
    assert login["error_rate_ge400"] == pytest.approx(0.07)
    assert login["error_rate_ge500"] == pytest.approx(0.02)
    root = find(rows, path="/")
    assert (root["requests"], root["p50_ms"], root["error_rate_ge400"]) == (10, 5.0, 0.0)
    # The query string does not make a route of its own.
    assert find(rows, path="/static/app.css")["requests"] == 3
    assert [r["path"] for r in rows][0] == "/login"  # busiest first


def test_rate_limits_and_session_store_errors(report):
    scopes = {r["scope"]: (r["events"], r["addresses"]) for r in report.rows("rate_limited_by_scope")}
    assert scopes == {"login_ip": (2, 1), "captcha_ip": (1, 1)}
    assert report.summary["session_store_errors"] == 1


def test_every_report_and_summary_is_written(report):
    for name in REPORT_NAMES:
        assert (report.out / name).is_dir(), name
        assert list((report.out / name).glob("*.parquet")), name
    md = (report.out / "summary.md").read_text(encoding="utf-8")
    html = (report.out / "summary.html").read_text(encoding="utf-8")
    for text in (md, html):
        assert BRUTE_IP in text and "percentile_approx" in text
    assert "## Failed logins" in md and "| unparsable_json | 2 |" in md
    assert html.count("<svg") >= 3
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert report.summary["window"] == {
        "first_event": "2026-11-25T12:00:00.123Z",
        "last_event": "2026-11-26T01:00:17.123Z",
    }
