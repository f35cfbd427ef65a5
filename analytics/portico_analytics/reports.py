"""The reports, each a small aggregate DataFrame built from the parsed log.

Everything here is DataFrame expressions, with no Python UDFs. That keeps the
work inside the JVM, and it means a cluster's executors need nothing of this
package installed: only the machine that runs the driver does.

All hours are UTC clock hours (``date_trunc('hour', ...)`` with the session
time zone set to UTC by the job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from .schema import (
    CAPTCHA_FAIL_REASONS,
    KIND_CAPTCHA_FAIL,
    KIND_CAPTCHA_ISSUED,
    KIND_CAPTCHA_OK,
    KIND_CSRF_REJECT,
    KIND_LOGIN_FAIL,
    KIND_RATE_LIMITED,
    KIND_REQUEST,
    LOGIN_FAIL_REASONS,
)

#: Stand-in for a missing grouping value, so that it shows up as a row instead
#: of vanishing into a NULL key.
NONE_LABEL = "(none)"

#: Accuracy handed to percentile_approx: the relative error is about
#: 1/accuracy of the number of values, and it is exact on small groups.
PERCENTILE_ACCURACY = 10_000

#: How many bad lines are kept verbatim (cut to SAMPLE_LINE_CHARS) for a look.
BAD_LINE_SAMPLES = 50
SAMPLE_LINE_CHARS = 300


@dataclass(frozen=True)
class Thresholds:
    """When an address is worth a human's attention, all per UTC clock hour."""

    #: Failed logins from one address within one hour that mark it as brute force.
    bruteforce_min_failures: int = 10
    #: Distinct accounts one address failed to log into within one hour that
    #: mark it as brute force (password spraying / credential stuffing).
    bruteforce_min_accounts: int = 5
    #: Failed captchas from one address within one hour that list it.
    captcha_fail_threshold: int = 10


def _count_if(condition: Column) -> Column:
    """A count of the rows where ``condition`` holds, as a long."""
    return F.sum(F.when(condition, 1).otherwise(0)).cast("long")


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator, or NULL when there is nothing to divide by."""
    return F.when(denominator > 0, numerator / denominator)


def _sorted(df: DataFrame, *order: Union[str, Column]) -> DataFrame:
    """``df`` in one partition, sorted.

    Reports are small aggregates, written as one file each. Sorting within a
    single partition gives the same order as ``orderBy`` without the extra
    sampling pass that a range-partitioned global sort runs first.
    """
    return df.coalesce(1).sortWithinPartitions(*order)


def _label(col: str) -> Column:
    return F.coalesce(F.col(col), F.lit(NONE_LABEL)).alias(col)


# --- overview -------------------------------------------------------------


def events_by_kind(events: DataFrame) -> DataFrame:
    return events.groupBy("kind").agg(F.count(F.lit(1)).alias("events")).transform(_sorted, "kind")


def bad_lines_by_cause(bad_lines: DataFrame) -> DataFrame:
    return bad_lines.groupBy("cause").agg(F.count(F.lit(1)).alias("lines")).transform(_sorted, "cause")


def bad_lines_sample(bad_lines: DataFrame) -> DataFrame:
    """A few bad lines verbatim (shortened), so a person can see what broke."""
    return (
        bad_lines.select("file", "cause", F.substring("line", 1, SAMPLE_LINE_CHARS).alias("line"))
        .orderBy("file", "cause", "line")
        .limit(BAD_LINE_SAMPLES)
    )


# --- logins ---------------------------------------------------------------


def _login_failures(events: DataFrame) -> DataFrame:
    return events.where(F.col("kind") == KIND_LOGIN_FAIL).select(
        _label("client_ip"), "account", "reason", "hour", "event_time"
    )


def _reason_counts(reasons: tuple[str, ...]) -> list[Column]:
    return [_count_if(F.col("reason") == r).alias(r) for r in reasons]


def login_failures_by_address_hour(events: DataFrame) -> DataFrame:
    """Failed logins per client address per hour, split by reason."""
    return (
        _login_failures(events)
        .groupBy("hour", "client_ip")
        .agg(
            F.count(F.lit(1)).alias("failures"),
            F.countDistinct("account").alias("distinct_accounts"),
            *_reason_counts(LOGIN_FAIL_REASONS),
        )
        .transform(_sorted, "hour", F.desc("failures"), "client_ip")
    )


def login_failures_by_account_hour(events: DataFrame) -> DataFrame:
    """Failed logins per attempted account per hour."""
    return (
        _login_failures(events)
        .withColumn("account", _label("account"))
        .groupBy("hour", "account")
        .agg(
            F.count(F.lit(1)).alias("failures"),
            F.countDistinct("client_ip").alias("distinct_addresses"),
            *_reason_counts(LOGIN_FAIL_REASONS),
        )
        .transform(_sorted, "hour", F.desc("failures"), "account")
    )


def login_failures_by_account(events: DataFrame) -> DataFrame:
    """Failed logins per attempted account over the whole log."""
    return (
        _login_failures(events)
        .withColumn("account", _label("account"))
        .groupBy("account")
        .agg(
            F.count(F.lit(1)).alias("failures"),
            F.countDistinct("client_ip").alias("distinct_addresses"),
            *_reason_counts(LOGIN_FAIL_REASONS),
        )
        .transform(_sorted, F.desc("failures"), "account")
    )


def login_failures_by_address(events: DataFrame, thresholds: Thresholds) -> DataFrame:
    """Failed logins per client address over the whole log, with the brute-force verdict.

    The verdict looks at each hour on its own: an address is flagged when, in
    some hour, it failed at least ``bruteforce_min_failures`` times, or failed
    on at least ``bruteforce_min_accounts`` distinct accounts. ``flagged_by``
    names which of the two rules fired (in any hour).
    """
    failures = _login_failures(events)
    hourly = failures.groupBy("client_ip", "hour").agg(
        F.count(F.lit(1)).alias("n"),
        F.countDistinct("account").alias("accounts"),
    )
    by_failures = F.col("n") >= thresholds.bruteforce_min_failures
    by_accounts = F.col("accounts") >= thresholds.bruteforce_min_accounts
    peaks = hourly.groupBy("client_ip").agg(
        F.max("n").alias("peak_hour_failures"),
        # The busiest hour; on a tie, the earliest one.
        F.min_by("hour", F.struct(-F.col("n"), F.col("hour"))).alias("peak_hour"),
        F.max("accounts").alias("peak_hour_accounts"),
        _count_if(by_failures | by_accounts).alias("flagged_hours"),
        F.max(by_failures.cast("int")).alias("_by_failures"),
        F.max(by_accounts.cast("int")).alias("_by_accounts"),
    )
    totals = failures.groupBy("client_ip").agg(
        F.count(F.lit(1)).alias("failures"),
        F.countDistinct("account").alias("distinct_accounts"),
        *_reason_counts(LOGIN_FAIL_REASONS),
        F.min("event_time").alias("first_seen"),
        F.max("event_time").alias("last_seen"),
    )
    flagged_by = F.concat_ws(
        ",",
        F.when(F.col("_by_failures") == 1, F.lit("failures")),
        F.when(F.col("_by_accounts") == 1, F.lit("accounts")),
    )
    return (
        totals.join(peaks, "client_ip")
        .withColumn("bruteforce", F.col("flagged_hours") > 0)
        .withColumn("flagged_by", flagged_by)
        .drop("_by_failures", "_by_accounts")
        .transform(_sorted, F.desc("failures"), "client_ip")
    )


def bruteforce_addresses(by_address: DataFrame) -> DataFrame:
    """Only the addresses that look like brute force."""
    return by_address.where(F.col("bruteforce")).drop("bruteforce")


# --- captchas -------------------------------------------------------------


def _captcha_counts() -> list[Column]:
    kind = F.col("kind")
    ok = _count_if(kind == KIND_CAPTCHA_OK)
    fail = _count_if(kind == KIND_CAPTCHA_FAIL)
    return [
        _count_if(kind == KIND_CAPTCHA_ISSUED).alias("issued"),
        ok.alias("ok"),
        fail.alias("fail"),
        *[
            _count_if((kind == KIND_CAPTCHA_FAIL) & (F.col("reason") == r)).alias(f"fail_{r}")
            for r in CAPTCHA_FAIL_REASONS
        ],
        _ratio(ok, ok + fail).alias("solve_rate"),
    ]


def _captcha_events(events: DataFrame) -> DataFrame:
    kinds = [KIND_CAPTCHA_ISSUED, KIND_CAPTCHA_OK, KIND_CAPTCHA_FAIL]
    return events.where(F.col("kind").isin(kinds)).select(
        "kind", "reason", "hour", _label("client_ip"), _label("captcha_mode").alias("mode")
    )


def captcha_by_mode(events: DataFrame) -> DataFrame:
    """Captchas issued, solved and failed per mode; solve_rate = ok / (ok + fail)."""
    return _captcha_events(events).groupBy("mode").agg(*_captcha_counts()).transform(_sorted, "mode")


def captcha_by_mode_hour(events: DataFrame) -> DataFrame:
    """As captcha_by_mode, per hour."""
    return (
        _captcha_events(events)
        .groupBy("hour", "mode")
        .agg(*_captcha_counts())
        .transform(_sorted, "hour", "mode")
    )


def captcha_fail_addresses(events: DataFrame, thresholds: Thresholds) -> DataFrame:
    """Addresses that failed at least ``captcha_fail_threshold`` captchas in some hour."""
    fails = _captcha_events(events).where(F.col("kind") == KIND_CAPTCHA_FAIL)
    hourly = fails.groupBy("client_ip", "hour").agg(F.count(F.lit(1)).alias("n"))
    flagged = F.col("n") >= thresholds.captcha_fail_threshold
    peaks = hourly.groupBy("client_ip").agg(
        F.max("n").alias("peak_hour_failures"),
        F.min_by("hour", F.struct(-F.col("n"), F.col("hour"))).alias("peak_hour"),
        _count_if(flagged).alias("flagged_hours"),
    )
    totals = fails.groupBy("client_ip").agg(
        F.count(F.lit(1)).alias("failures"),
        *[_count_if(F.col("reason") == r).alias(f"fail_{r}") for r in CAPTCHA_FAIL_REASONS],
        F.array_sort(F.collect_set("mode")).alias("modes"),
    )
    return (
        totals.join(peaks, "client_ip")
        .where(F.col("flagged_hours") > 0)
        .transform(_sorted, F.desc("failures"), "client_ip")
    )


# --- CSRF -----------------------------------------------------------------


def _csrf(events: DataFrame) -> DataFrame:
    return events.where(F.col("kind") == KIND_CSRF_REJECT)


def csrf_by_reason(events: DataFrame) -> DataFrame:
    return (
        _csrf(events)
        .groupBy(_label("reason"))
        .agg(F.count(F.lit(1)).alias("rejections"))
        .transform(_sorted, F.desc("rejections"), "reason")
    )


def csrf_by_origin(events: DataFrame) -> DataFrame:
    """Rejections per Origin header value; "(none)" when the request sent none."""
    return (
        _csrf(events)
        .groupBy(_label("origin"))
        .agg(
            F.count(F.lit(1)).alias("rejections"),
            F.array_sort(F.collect_set("reason")).alias("reasons"),
        )
        .transform(_sorted, F.desc("rejections"), "origin")
    )


# --- requests -------------------------------------------------------------


def routes(events: DataFrame) -> DataFrame:
    """Requests per path: count, latency percentiles and error rates.

    Percentiles come from percentile_approx (Greenwald-Khanna sketch), exact
    for small groups and within about 1/PERCENTILE_ACCURACY in rank for large
    ones. Error rates are over all requests of the path; ``ge400`` includes
    the 5xx responses that ``ge500`` counts on their own. A query string, if a
    writer ever logs one, is cut off so that it does not split a route.
    """
    requests = events.where(F.col("kind") == KIND_REQUEST).select(
        F.coalesce(F.split(F.col("path"), r"\?").getItem(0), F.lit(NONE_LABEL)).alias("path"),
        "status",
        "latency_ms",
    )
    pct = F.percentile_approx("latency_ms", [0.5, 0.95, 0.99], PERCENTILE_ACCURACY)
    status = F.col("status")
    agg = requests.groupBy("path").agg(
        F.count(F.lit(1)).alias("requests"),
        pct.alias("_pct"),
        F.max("latency_ms").alias("max_ms"),
        _count_if(status >= 400).alias("errors_ge400"),
        _count_if(status >= 500).alias("errors_ge500"),
    )
    return (
        agg.select(
            "path",
            "requests",
            F.col("_pct").getItem(0).alias("p50_ms"),
            F.col("_pct").getItem(1).alias("p95_ms"),
            F.col("_pct").getItem(2).alias("p99_ms"),
            "max_ms",
            "errors_ge400",
            "errors_ge500",
            _ratio(F.col("errors_ge400"), F.col("requests")).alias("error_rate_ge400"),
            _ratio(F.col("errors_ge500"), F.col("requests")).alias("error_rate_ge500"),
        )
        .transform(_sorted, F.desc("requests"), "path")
    )


# --- everything else ------------------------------------------------------


def rate_limited_by_scope(events: DataFrame) -> DataFrame:
    return (
        events.where(F.col("kind") == KIND_RATE_LIMITED)
        .groupBy(_label("scope"))
        .agg(F.count(F.lit(1)).alias("events"), F.countDistinct("client_ip").alias("addresses"))
        .transform(_sorted, F.desc("events"), "scope")
    )
