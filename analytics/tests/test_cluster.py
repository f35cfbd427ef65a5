"""The job on a real Spark standalone cluster gives the report it gives in-process.

A master and a worker (2 cores, 2 GiB) are started from the installed
pyspark's own Spark, on 127.0.0.1; a log of a million events from three
servers is written the way the servers write it; ``python -m
portico_analytics`` runs once against the cluster and once on ``local[*]``,
and every report table, the summary page and the summary numbers must be the
same. The cluster is stopped afterwards, also when something fails, and the
test checks that none of its processes is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from bulklog import BAD_LINE_EVERY, INSTANCES, write_bulk_log
from pyspark.sql import SparkSession
from standalone import StandaloneCluster, ends_with_parent

from portico_analytics.job import REPORT_NAMES

EVENTS = 1_000_000
#: Small enough that every server's day is continued in a second part.
MAX_FILE_BYTES = 32 << 20
APP_NAME = "portico-analytics-cluster-test"
JOB_TIMEOUT_S = 900

#: Given to both runs. The latency percentiles are approximate sketches
#: merged per input partition, so two runs agree to the last digit only when
#: they split the input alike; the partition count follows the default
#: parallelism, which is the core count for local[*] and the cluster's cores
#: for the cluster. Fixing it keeps the comparison exact on a machine with
#: any number of cores (on two cores it changes nothing).
SHARED_CONF = {
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}
CLUSTER_CONF = {"spark.executor.memory": "2g", "spark.cores.max": "2"}
LOCAL_CONF = {"spark.driver.memory": "2g"}

SITE_FILE_NAME = re.compile(r"events-\d{4}-\d{2}-\d{2}-(?P<instance>[a-z0-9]+)(-\d+)?\.jsonl")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turns SIGTERM into KeyboardInterrupt while the cluster runs, so that a
    test run ended by ``kill`` or a CI timeout still stops it in teardown."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def bulk_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The log, removed afterwards: pytest keeps the last runs' temporary
    folders, and this one holds 260 MiB."""
    folder = tmp_path_factory.mktemp("bulk") / "events"
    files = write_bulk_log(folder, EVENTS, max_file_bytes=MAX_FILE_BYTES)
    names = [f.name for f in files]
    matches = [SITE_FILE_NAME.fullmatch(n) for n in names]
    assert all(matches), names
    assert {m.group("instance") for m in matches if m} == set(INSTANCES)
    assert any(m.group(2) for m in matches if m), "no file was continued in a second part"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    c = StandaloneCluster(tmp_path_factory.mktemp("cluster"), cores=2, memory="2g")
    with _sigterm_interrupts():
        c.start()
        try:
            yield c
        finally:
            c.stop()
    assert c.leftovers() == [], "processes of the cluster were left running"


def _start_job(events: Path, out: Path, master: str, conf: dict[str, str]) -> subprocess.Popen[str]:
    cmd = [
        *ends_with_parent(), sys.executable, "-m", "portico_analytics", "--events", str(events), "--out", str(out),
        "--master", master, "--app-name", APP_NAME,
    ]
    for key, value in {**SHARED_CONF, **conf}.items():
        cmd += ["--conf", f"{key}={value}"]
    log = (out.parent / f"{out.name}.log").open("w", encoding="utf-8")
    with log:
        # Its own process group, so that a run that hangs is ended together
        # with the JVM it started.
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(process: subprocess.Popen[str], log: Path, deadline: float) -> None:
    try:
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert process.returncode == 0, f"the job ended with {process.returncode}:\n{text[-4000:]}"


def _table(spark: SparkSession, path: Path) -> tuple[Any, list[Any]]:
    """A report's schema and rows, in an order that does not depend on the run."""
    df = spark.read.parquet(str(path))
    return df.schema, sorted(df.collect(), key=repr)


def _without_generated(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("Generated "))


def test_a_standalone_cluster_writes_the_same_report_as_local_mode(
    spark: SparkSession, bulk_events: Path, cluster: StandaloneCluster, tmp_path: Path
) -> None:
    on_cluster, local = tmp_path / "cluster", tmp_path / "local"
    jobs = [
        # Both at once: each spends much of its time in one-task stages and
        # in the driver, so together they finish sooner on two cores.
        (_start_job(bulk_events, on_cluster, cluster.url, CLUSTER_CONF), on_cluster),
        (_start_job(bulk_events, local, "local[*]", LOCAL_CONF), local),
    ]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    try:
        for process, out in jobs:
            _finish(process, out.parent / f"{out.name}.log", deadline)
    finally:
        for process, _ in jobs:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    # The work was done by the worker's executors, not by the driver.
    executor_logs = list((cluster.folder / "work").glob("app-*/*/stderr"))
    assert executor_logs, "the worker ran no executor"
    assert f"Registering app {APP_NAME}" in (cluster.folder / "master.log").read_text(encoding="utf-8")

    # Every line was read: the generator's lines, and each server's cut-short last one.
    summary = json.loads((on_cluster / "summary.json").read_text(encoding="utf-8"))
    lines = summary["lines"]
    assert lines["total"] == EVENTS + len(INSTANCES)
    assert lines["bad"] == EVENTS // BAD_LINE_EVERY + len(INSTANCES)
    assert lines["bad_by_cause"]["unparsable_json"] > len(INSTANCES)
    assert summary["input"]["files"] == len(list(bulk_events.glob("*.jsonl")))

    for name in REPORT_NAMES:
        schema, rows = _table(spark, on_cluster / name)
        local_schema, local_rows = _table(spark, local / name)
        assert rows, f"{name} is empty: the comparison would prove nothing"
        assert schema == local_schema, name
        if rows != local_rows:
            mine, theirs = Counter(map(repr, rows)), Counter(map(repr, local_rows))
            only_cluster, only_local = list(mine - theirs)[:5], list(theirs - mine)[:5]
            pytest.fail(
                f"{name}: {len(rows)} rows on the cluster, {len(local_rows)} locally; "
                f"only on the cluster: {only_cluster}; only locally: {only_local}"
            )

    md, local_md = ((d / "summary.md").read_text(encoding="utf-8") for d in (on_cluster, local))
    assert _without_generated(md) == _without_generated(local_md)
    local_summary = json.loads((local / "summary.json").read_text(encoding="utf-8"))
    for s in (summary, local_summary):
        del s["generated_at"]
    assert summary == local_summary
