"""Shared fixtures: one Spark session and one run of the job for the whole suite.

Starting a JVM takes seconds, so the session is created once, small (two
local cores, two shuffle partitions, no web UI), and every test reads the
reports of the same run unless it needs a run of its own.
"""

from __future__ import annotations

import json
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
