"""The batch job: read the event log, write every report, write the summaries.

Entry points:

* ``python -m portico_analytics --events DIR --out DIR [options]`` (or the
  ``portico-analytics`` console script), which calls :func:`main`;
* :func:`run`, for calling the job in-process, optionally with a Spark session
  the caller already has (tests share one across the suite, since starting a
  JVM costs several seconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence, Union
from urllib.parse import urlparse

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from . import reports as R
from .load import LoadedLog, load_log
from .render import render_html, render_markdown
from .schema import BAD_CAUSES, CAPTCHA_MODES, KIND_LOGIN_FAIL, LOGIN_FAIL_REASONS, SCHEMA_VERSION

#: Names of the Parquet report folders under --out, in the order they are written.
REPORT_NAMES = (
    "events_by_kind",
    "bad_lines",
    "bad_lines_sample",
    "login_failures_by_address_hour",
    "login_failures_by_account_hour",
    "login_failures_by_address",
    "login_failures_by_account",
    "bruteforce_addresses",
    "captcha_by_mode",
    "captcha_by_mode_hour",
    "captcha_fail_addresses",
    "csrf_by_reason",
    "csrf_by_origin",
    "routes",
    "rate_limited_by_scope",
)


#: How times appear in the summaries: RFC 3339, UTC, milliseconds.
TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"


class InputError(Exception):
    """The job was pointed at something it cannot read (reported, exit code 2)."""


@dataclass
class JobConfig:
    """Everything one run needs; built from the command line by :func:`parse_args`."""

    events: str
    out: str
    #: None leaves the choice to spark-submit or spark-defaults.conf, whose
    #: own default is local[*].
    master: Optional[str] = None
    glob: str = "*.jsonl"
    summary_dir: Optional[str] = None
    top: int = 20
    app_name: str = "portico-analytics"
    spark_conf: dict[str, str] = field(default_factory=dict)
    thresholds: R.Thresholds = field(default_factory=R.Thresholds)

    def summary_path(self) -> str:
        """Where summary.{json,md,html} go: a local folder, written by the driver.

        Parquet goes through Spark and so may live on any file system Spark
        can write; the summaries are small files written by Python, which
        only knows local paths.
        """
        if self.summary_dir:
            return self.summary_dir
        parsed = urlparse(self.out)
        if parsed.scheme == "":
            return self.out
        if parsed.scheme == "file":
            return parsed.path
        raise InputError(
            f"--out {self.out!r} is not a local path; give --summary-dir for the summary files"
        )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    defaults = R.Thresholds()
    p = argparse.ArgumentParser(
        prog="python -m portico_analytics",
        description="Reports over the Portico security event log "
        f"(JSON lines, schema version {SCHEMA_VERSION}).",
    )
    p.add_argument("--events", required=True, help="folder of event files (searched recursively); any Spark path or URI")
    p.add_argument("--out", required=True, help="folder for the reports: one Parquet folder per report, plus the summaries")
    p.add_argument(
        "--master",
        help="Spark master URL, e.g. local[4] or spark://host:7077 (default: the one spark-submit "
        "or spark-defaults.conf gives, else local[*])",
    )
    p.add_argument("--glob", default="*.jsonl", help="file name pattern of event files (default: %(default)s)")
    p.add_argument("--summary-dir", help="local folder for summary.{json,md,html} (default: --out, which must then be local)")
    p.add_argument("--top", type=_positive_int, default=20, help="rows per table in the summaries (default: %(default)s)")
    p.add_argument("--app-name", default="portico-analytics", help="Spark application name")
    p.add_argument(
        "--conf", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
        help="extra Spark configuration, repeatable (e.g. spark.executor.memory=4g)",
    )
    p.add_argument(
        "--bruteforce-min-failures", type=_positive_int, default=defaults.bruteforce_min_failures,
        help="failed logins from one address within one UTC hour that flag it as brute force (default: %(default)s)",
    )
    p.add_argument(
        "--bruteforce-min-accounts", type=_positive_int, default=defaults.bruteforce_min_accounts,
        help="distinct accounts one address failed on within one UTC hour that flag it as brute force (default: %(default)s)",
    )
    p.add_argument(
        "--captcha-fail-threshold", type=_positive_int, default=defaults.captcha_fail_threshold,
        help="failed captchas from one address within one UTC hour that list it (default: %(default)s)",
    )
    return p


def parse_args(argv: Sequence[str]) -> JobConfig:
    ns = build_parser().parse_args(list(argv))
    return JobConfig(
        events=ns.events,
        out=ns.out,
        master=ns.master,
        glob=ns.glob,
        summary_dir=ns.summary_dir,
        top=ns.top,
        app_name=ns.app_name,
        spark_conf=dict(ns.conf),
        thresholds=R.Thresholds(
            bruteforce_min_failures=ns.bruteforce_min_failures,
            bruteforce_min_accounts=ns.bruteforce_min_accounts,
            captcha_fail_threshold=ns.captcha_fail_threshold,
        ),
    )


def create_session(config: JobConfig) -> SparkSession:
    """A Spark session for one run. The session time zone is UTC, because the
    log's times are UTC and the hourly reports must not shift with the
    machine's zone."""
    builder = SparkSession.builder
    if config.master:
        # Set only when asked: under spark-submit, its own --master must win.
        builder = builder.master(config.master)
    builder = (
        builder.appName(config.app_name)
        .config("spark.sql.session.timeZone", "UTC")
        # A batch job's log is read later; progress bars only clutter it.
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in config.spark_conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


# --- summary --------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A Spark value as something json.dumps accepts."""
    if isinstance(value, Row):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, dt.datetime):
        # Naive datetimes from Spark are in the driver's local zone.
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rows(df: DataFrame, limit: Optional[int] = None) -> list[dict[str, Any]]:
    """The rows of a (small, already ordered) report as plain dicts."""
    if limit is not None:
        df = df.limit(limit)
    # Timestamps are formatted by Spark, in the session's UTC zone, so that the
    # driver's own time zone cannot shift them.
    df = df.select(
        *[
            F.date_format(F.col(f.name), TIME_FORMAT).alias(f.name)
            if isinstance(f.dataType, T.TimestampType)
            else F.col(f.name)
            for f in df.schema.fields
        ]
    )
    return [_plain(r) for r in df.collect()]


def _counts(rows: list[dict[str, Any]], key: str, value: str) -> dict[str, int]:
    return {r[key]: r[value] for r in rows}


def build_summary(
    config: JobConfig,
    log: LoadedLog,
    written: dict[str, DataFrame],
) -> dict[str, Any]:
    """The headline numbers, read back from the reports just written.

    Lists that could be long (addresses, accounts, routes, origins) are cut to
    ``config.top`` rows; the Parquet reports hold all of them.
    """
    top = config.top
    kinds = _counts(_rows(written["events_by_kind"]), "kind", "events")
    bad = _counts(_rows(written["bad_lines"]), "cause", "lines")
    bad_by_cause = {cause: bad.get(cause, 0) for cause in BAD_CAUSES}
    bad_by_cause.update({k: v for k, v in bad.items() if k not in bad_by_cause})
    events_total = sum(kinds.values())
    bad_total = sum(bad_by_cause.values())

    # The few numbers no report holds, in one pass over the cached log.
    good = F.col("cause").isNull()
    failed = good & (F.col("kind") == KIND_LOGIN_FAIL)
    head = log.classified.agg(
        F.date_format(F.min(F.when(good, F.col("event_time"))), TIME_FORMAT).alias("first"),
        F.date_format(F.max(F.when(good, F.col("event_time"))), TIME_FORMAT).alias("last"),
        F.countDistinct("file").alias("files"),
        *[
            F.sum(F.when(failed & (F.col("reason") == r), 1).otherwise(0)).alias(r)
            for r in LOGIN_FAIL_REASONS
        ],
    ).first()
    assert head is not None  # a global aggregate always has one row

    by_address = written["login_failures_by_address"]
    captcha_rows = _rows(written["captcha_by_mode"])
    captcha_by_mode = {r["mode"]: r for r in captcha_rows}
    for mode in CAPTCHA_MODES:
        captcha_by_mode.setdefault(
            mode,
            {"mode": mode, "issued": 0, "ok": 0, "fail": 0, "fail_wrong": 0,
             "fail_expired": 0, "fail_missing": 0, "solve_rate": None},
        )
    captcha_ok = sum(r["ok"] for r in captcha_rows)
    captcha_fail = sum(r["fail"] for r in captcha_rows)
    csrf_reason = _counts(_rows(written["csrf_by_reason"]), "reason", "rejections")

    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _plain(dt.datetime.now(dt.timezone.utc).replace(microsecond=0)),
        "input": {"events": config.events, "glob": config.glob, "files": head["files"]},
        "window": {"first_event": head["first"], "last_event": head["last"]},
        "thresholds": asdict(config.thresholds),
        "lines": {
            "total": events_total + bad_total,
            "events": events_total,
            "bad": bad_total,
            "bad_by_cause": bad_by_cause,
        },
        "events_by_kind": kinds,
        "logins": {
            "ok": kinds.get("login_ok", 0),
            "failed": kinds.get("login_fail", 0),
            "registered": kinds.get("register", 0),
            "failed_by_reason": {r: int(head[r] or 0) for r in LOGIN_FAIL_REASONS},
            "addresses_with_failures": by_address.count(),
            "bruteforce_count": written["bruteforce_addresses"].count(),
            "bruteforce_addresses": _rows(written["bruteforce_addresses"], top),
            "top_addresses": _rows(by_address, top),
            "top_accounts": _rows(written["login_failures_by_account"], top),
        },
        "captcha": {
            "issued": sum(r["issued"] for r in captcha_rows),
            "ok": captcha_ok,
            "fail": captcha_fail,
            "solve_rate": (captcha_ok / (captcha_ok + captcha_fail)) if captcha_ok + captcha_fail else None,
            "by_mode": captcha_by_mode,
            "failing_addresses": _rows(written["captcha_fail_addresses"], top),
        },
        "csrf": {
            "rejections": sum(csrf_reason.values()),
            "by_reason": csrf_reason,
            "by_origin": _rows(written["csrf_by_origin"], top),
        },
        "requests": {
            "total": kinds.get("request", 0),
            "routes": written["routes"].count(),
            "top_routes": _rows(written["routes"], top),
            "percentiles": f"approximate (percentile_approx, accuracy {R.PERCENTILE_ACCURACY})",
        },
        "rate_limited": _rows(written["rate_limited_by_scope"]),
        "session_store_errors": kinds.get("session_store_error", 0),
        "bad_line_samples": _rows(written["bad_lines_sample"], 10),
        "reports": list(REPORT_NAMES),
    }


# --- the run --------------------------------------------------------------


def _report_builders(
    config: JobConfig, log: LoadedLog, written: dict[str, DataFrame]
) -> dict[str, Callable[[], DataFrame]]:
    """How to build each report; a builder may read reports written before it."""
    ev, t = log.events, config.thresholds
    return {
        "events_by_kind": lambda: R.events_by_kind(ev),
        "bad_lines": lambda: R.bad_lines_by_cause(log.bad_lines),
        "bad_lines_sample": lambda: R.bad_lines_sample(log.bad_lines),
        "login_failures_by_address_hour": lambda: R.login_failures_by_address_hour(ev),
        "login_failures_by_account_hour": lambda: R.login_failures_by_account_hour(ev),
        "login_failures_by_address": lambda: R.login_failures_by_address(ev, t),
        "login_failures_by_account": lambda: R.login_failures_by_account(ev),
        "bruteforce_addresses": lambda: R.bruteforce_addresses(written["login_failures_by_address"]),
        "captcha_by_mode": lambda: R.captcha_by_mode(ev),
        "captcha_by_mode_hour": lambda: R.captcha_by_mode_hour(ev),
        "captcha_fail_addresses": lambda: R.captcha_fail_addresses(ev, t),
        "csrf_by_reason": lambda: R.csrf_by_reason(ev),
        "csrf_by_origin": lambda: R.csrf_by_origin(ev),
        "routes": lambda: R.routes(ev),
        "rate_limited_by_scope": lambda: R.rate_limited_by_scope(ev),
    }


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _check_input(spark: SparkSession, events: str) -> None:
    """Fail early, with a plain message, when the events folder is missing."""
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    path = jvm.org.apache.hadoop.fs.Path(events)
    if not path.getFileSystem(hadoop_conf).exists(path):
        raise InputError(f"events folder not found: {events}")


def run(
    args: Union[JobConfig, Sequence[str]],
    spark: Optional[SparkSession] = None,
) -> dict[str, Any]:
    """Run the whole job and return the summary (also written as summary.json).

    ``args`` is a :class:`JobConfig` or command-line arguments. When ``spark``
    is given it is used as is (and left running) and ``--master`` is ignored;
    otherwise a session is created from the configuration and stopped at the
    end.
    """
    config = args if isinstance(args, JobConfig) else parse_args(args)
    summary_dir = config.summary_path()
    own_session = spark is None
    session = create_session(config) if spark is None else spark
    session.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        _check_input(session, config.events)
        log = load_log(session, config.events, config.glob)
        try:
            written: dict[str, DataFrame] = {}
            for name, build in _report_builders(config, log, written).items():
                path = _join(config.out, name)
                build().write.mode("overwrite").parquet(path)
                written[name] = session.read.parquet(path)
            summary = build_summary(config, log, written)
        finally:
            log.unpersist()
    finally:
        if own_session:
            session.stop()

    os.makedirs(summary_dir, exist_ok=True)
    with open(os.path.join(summary_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    with open(os.path.join(summary_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(render_markdown(summary))
    with open(os.path.join(summary_dir, "summary.html"), "w", encoding="utf-8") as f:
        f.write(render_html(summary))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the process exit code."""
    config = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary = run(config)
    except InputError as e:
        print(f"portico-analytics: {e}", file=sys.stderr)
        return 2
    lines = summary["lines"]
    print(
        f"portico-analytics: {lines['total']} lines, {lines['events']} events, "
        f"{lines['bad']} bad; {summary['logins']['bruteforce_count']} brute-force "
        f"address(es); reports in {config.out}"
    )
    return 0
