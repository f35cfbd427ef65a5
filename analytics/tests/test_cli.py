"""The command line: options, a run as a separate process, and inputs that must not crash."""

from __future__ import annotations

import json

import pytest
from eventlog import BRUTE_IP, EXPECTED_BAD, SLOW_IP, SPRAY_IP

from portico_analytics import job


def test_parse_args_defaults_and_validation():
    config = job.parse_args(["--events", "in", "--out", "out", "--conf", "spark.executor.memory=4g"])
    assert config.master is None  # spark-submit's choice, else local[*]
    assert config.spark_conf == {"spark.executor.memory": "4g"}
    assert config.thresholds == job.R.Thresholds()
    with pytest.raises(SystemExit):
        job.parse_args(["--events", "in", "--out", "out", "--bruteforce-min-failures", "0"])
    remote = job.parse_args(["--events", "in", "--out", "hdfs://nn/reports"])
    with pytest.raises(job.InputError):
        remote.summary_path()
    remote.summary_dir = "local-summary"
    assert remote.summary_path() == "local-summary"


def test_empty_folder_gives_zero_counts(spark, tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    summary = job.run(["--events", str(events), "--out", str(tmp_path / "out")], spark=spark)
    assert summary["lines"]["total"] == 0
    assert summary["logins"]["bruteforce_addresses"] == []
    assert summary["captcha"]["by_mode"]["latin"]["solve_rate"] is None
    assert (tmp_path / "out" / "summary.html").is_file()


def test_missing_folder_is_an_input_error(spark, tmp_path):
    with pytest.raises(job.InputError, match="not found"):
        job.run(["--events", str(tmp_path / "nope"), "--out", str(tmp_path / "out")], spark=spark)


def test_python_dash_m_runs_the_job(cli_run, report):
    """A run as its own process, with its own Spark, and thresholds set on the command line."""
    returncode, stdout, stderr = cli_run.wait()
    assert returncode == 0, stderr[-4000:]
    assert "3 brute-force address(es)" in stdout
    out = cli_run.out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["thresholds"] == {
        "bruteforce_min_failures": 6,
        "bruteforce_min_accounts": 7,
        "captcha_fail_threshold": 13,
    }
    flagged = {r["client_ip"]: r["flagged_by"] for r in summary["logins"]["bruteforce_addresses"]}
    # Six failures within an hour now suffice; six accounts no longer do.
    assert flagged == {BRUTE_IP: "failures", SLOW_IP: "failures", SPRAY_IP: "failures"}
    assert summary["captcha"]["failing_addresses"] == []
    assert summary["lines"]["bad_by_cause"] == EXPECTED_BAD
    # Everything the thresholds do not touch agrees with the in-process run.
    for key in ("lines", "events_by_kind", "csrf", "requests", "rate_limited", "window"):
        assert summary[key] == report.summary[key], key
    assert summary["captcha"]["by_mode"] == report.summary["captcha"]["by_mode"]
    assert (out / "summary.html").is_file() and (out / "bruteforce_addresses").is_dir()
