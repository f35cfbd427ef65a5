"""Reading the event log: raw text lines in, typed events and bad lines out.

The files are read as plain text and parsed with ``from_json`` rather than with
``spark.read.json``. The JSON reader would fail or silently drop data on the
lines we most want to see: a line cut short by a crash or by a file that is
still being written, a line from a newer schema version, a line missing its
kind. Reading text first keeps every line, so each one is either an event or
a bad line with a cause, and the counts always add up to the lines read.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .schema import (
    BAD_FIELD_TYPE,
    BAD_MISSING_KIND,
    BAD_MISSING_TIME,
    BAD_MISSING_VERSION,
    BAD_UNKNOWN_VERSION,
    BAD_UNPARSABLE,
    CORRUPT_COLUMN,
    EVENT_FIELDS,
    EVENT_SCHEMA,
    LOOSE_SCHEMA,
    SCHEMA_VERSION,
)


@dataclass
class LoadedLog:
    """The parsed log: good events and bad lines, both read from one cached frame."""

    #: Every line, parsed and classified; persisted. The two frames below
    #: are filters of it.
    classified: DataFrame
    #: One row per good event: the schema's fields plus ``event_time``
    #: (timestamp, UTC), ``hour`` (``event_time`` truncated to the hour) and
    #: ``file`` (the file the line came from).
    events: DataFrame
    #: One row per bad line: ``file``, ``cause``, ``line``.
    bad_lines: DataFrame

    def unpersist(self) -> None:
        self.classified.unpersist()


def read_lines(spark: SparkSession, events_dir: str, glob: str) -> DataFrame:
    """Every non-blank line of every matching file under ``events_dir``.

    The lookup is recursive so that servers may write into sub-folders of the
    shared folder, and filtered by file name so that other files living there
    (a README, a temporary file of the rotation) are not read as events.
    Blank lines are dropped: a writer that ends each line with a newline can
    leave one at the end of a file, and it says nothing about the events.
    """
    raw = (
        spark.read.option("recursiveFileLookup", "true")
        .option("pathGlobFilter", glob)
        .text(events_dir)
    )
    return raw.select(
        F.col("value").alias("line"),
        F.col("_metadata.file_path").alias("file"),
    ).where(F.trim(F.col("line")) != "")


def _bad_cause(typed: Column, loose: Column, event_time: Column) -> Column:
    """The first cause, in ``schema.BAD_CAUSES`` order, that makes a line bad.

    The version is read from the loose parse so that a line of a future
    version counts as ``unknown_version`` even when its other fields no longer
    fit the version 1 types.
    """
    version = loose.getItem("v")
    kind = typed.getField("kind")
    return (
        F.when(loose.isNull(), F.lit(BAD_UNPARSABLE))
        .when(version.isNull(), F.lit(BAD_MISSING_VERSION))
        .when(version != F.lit(str(SCHEMA_VERSION)), F.lit(BAD_UNKNOWN_VERSION))
        .when(typed.getField(CORRUPT_COLUMN).isNotNull(), F.lit(BAD_FIELD_TYPE))
        .when(kind.isNull() | (F.trim(kind) == ""), F.lit(BAD_MISSING_KIND))
        .when(event_time.isNull(), F.lit(BAD_MISSING_TIME))
    )


def parse_lines(lines: DataFrame) -> LoadedLog:
    """Split raw lines into typed events and counted bad lines.

    One persisted frame holds both, so the files are read and parsed once
    however many reports follow. The raw text is kept only for bad lines:
    good events need their typed fields, not the line they came from.
    """
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}
    typed = F.from_json(F.col("line"), EVENT_SCHEMA, options)
    loose = F.from_json(F.col("line"), LOOSE_SCHEMA)
    # try_to_timestamp accepts RFC 3339 with a "Z" or a numeric offset and
    # yields NULL, instead of failing the job, for anything else.
    stage = lines.select("file", "line", typed.alias("e"), loose.alias("m")).withColumn(
        "event_time", F.try_to_timestamp(F.col("e.time"))
    )
    cause = _bad_cause(F.col("e"), F.col("m"), F.col("event_time"))
    classified = stage.select(
        *[F.col("e").getField(f.name).alias(f.name) for f in EVENT_FIELDS],
        "event_time",
        F.date_trunc("hour", F.col("event_time")).alias("hour"),
        "file",
        cause.alias("cause"),
        F.when(cause.isNotNull(), F.col("line")).alias("line"),
    ).persist(StorageLevel.MEMORY_AND_DISK)

    events = classified.where(F.col("cause").isNull()).drop("cause", "line")
    bad_lines = classified.where(F.col("cause").isNotNull()).select("file", "cause", "line")
    return LoadedLog(classified=classified, events=events, bad_lines=bad_lines)


def load_log(spark: SparkSession, events_dir: str, glob: str = "*.jsonl") -> LoadedLog:
    """Read and parse the event log folder."""
    return parse_lines(read_lines(spark, events_dir, glob))
