"""Batch reports over the Portico security event log, on Apache Spark.

Run it with ``python -m portico_analytics --events DIR --out DIR``; see
README.md next to this package for the options and the event schema.
"""

__version__ = "0.1.0"
