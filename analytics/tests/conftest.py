"""Shared fixtures: one Spark session and one run of the job for the whole suite.

Starting a JVM takes seconds, so the session is created once, small (two
local cores, two shuffle partitions, no web UI), and every test reads the
reports of the same run unless it needs a run of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from pyspark.sql import SparkSession

sys.path.insert(0, str(Path(__file__).parent))

from eventlog import write_log  # noqa: E402

from portico_analytics import job  # noqa: E402

SPARK_TEST_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    # The test log is tiny: compiling generated code and optimising the JVM's
    # own hot paths cost more here than they save.
    "spark.sql.codegen.wholeStage": "false",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
}

#: The thresholds the command-line run is given, unlike the in-process run.
CLI_THRESHOLDS = {
    "--bruteforce-min-failures": "6",
    "--bruteforce-min-accounts": "7",
    "--captcha-fail-threshold": "13",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    builder = SparkSession.builder.master("local[2]").appName("portico-analytics-tests")
    for key, value in SPARK_TEST_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def events_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_log(tmp_path_factory.mktemp("log"))


class CliRun:
    """``python -m portico_analytics`` running as a child process."""

    def __init__(self, events: Path, out: Path) -> None:
        self.out = out
        cmd = [
            sys.executable, "-m", "portico_analytics",
            "--events", str(events), "--out", str(out), "--master", "local[2]",
        ]
        for flag, value in CLI_THRESHOLDS.items():
            cmd += [flag, value]
        for key, value in SPARK_TEST_CONF.items():
            cmd += ["--conf", f"{key}={value}"]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
        )

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stdout, stderr


@pytest.fixture(scope="session", autouse=True)
def cli_run(events_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliRun]:
    """The command-line run, started before any test so that it overlaps the
    in-process ones: small Spark jobs spend much of their time waiting, so two
    of them share two cores well, and the suite finishes sooner."""
    run = CliRun(events_dir, tmp_path_factory.mktemp("cli") / "reports")
    yield run
    if run.process.poll() is None:
        run.process.kill()
        run.process.communicate()


class Report:
    """One finished run: its summary and a way to read its Parquet reports."""

    def __init__(self, spark: SparkSession, out: Path, summary: dict[str, Any]) -> None:
        self.spark, self.out, self.summary = spark, out, summary

    def rows(self, name: str) -> list[dict[str, Any]]:
        return [r.asDict(recursive=True) for r in self.spark.read.parquet(str(self.out / name)).collect()]


@pytest.fixture(scope="session")
def report(spark: SparkSession, events_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    out = tmp_path_factory.mktemp("reports")
    summary = job.run(["--events", str(events_dir), "--out", str(out)], spark=spark)
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["lines"] == summary["lines"]
    return Report(spark, out, summary)
