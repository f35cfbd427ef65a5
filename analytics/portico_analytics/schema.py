"""The event log's schema, version 1, as Spark types and named constants.

The schema is spelled out field by field instead of being inferred: inference
would read every file twice, would change shape whenever a day happens to lack
some optional field, and would silently accept lines this job cannot
interpret. With an explicit schema every line either fits or is counted as a
bad line with a cause. README.md in this folder is the schema's home document;
keep the two in step.
"""

from __future__ import annotations

from pyspark.sql import types as T

#: The only schema version this job understands. Lines of any other version are
#: counted as bad lines instead of being guessed at.
SCHEMA_VERSION = 1

#: Name of the column that Spark's JSON reader fills with the raw line when the
#: line does not fit EVENT_SCHEMA (broken JSON or a field of the wrong type).
CORRUPT_COLUMN = "_corrupt_record"

EVENT_FIELDS: list[T.StructField] = [
    T.StructField("v", T.IntegerType()),
    T.StructField("time", T.StringType()),
    T.StructField("ts_ms", T.LongType()),
    T.StructField("kind", T.StringType()),
    T.StructField("instance", T.StringType()),
    T.StructField("request_id", T.StringType()),
    T.StructField("client_ip", T.StringType()),
    T.StructField("user", T.StringType()),
    T.StructField("session_hash", T.StringType()),
    T.StructField("path", T.StringType()),
    T.StructField("method", T.StringType()),
    T.StructField("status", T.IntegerType()),
    T.StructField("latency_ms", T.DoubleType()),
    # Kind-specific, optional.
    T.StructField("reason", T.StringType()),
    T.StructField("account", T.StringType()),
    T.StructField("captcha_mode", T.StringType()),
    T.StructField("origin", T.StringType()),
    T.StructField("scope", T.StringType()),
    T.StructField("error", T.StringType()),
]

#: The schema handed to ``from_json``. The extra corrupt-record column is how
#: the parser tells us a line did not fit.
EVENT_SCHEMA = T.StructType(EVENT_FIELDS + [T.StructField(CORRUPT_COLUMN, T.StringType())])

#: A schema every JSON object fits (Spark renders any JSON value as a string
#: for a string-typed map value). Parsing with it as well lets the job tell
#: "not JSON at all" apart from "JSON whose fields have the wrong types", and
#: read the version of a line whose other fields belong to a future schema.
LOOSE_SCHEMA = T.MapType(T.StringType(), T.StringType())

# Event kinds.
KIND_REQUEST = "request"
KIND_LOGIN_OK = "login_ok"
KIND_LOGIN_FAIL = "login_fail"
KIND_REGISTER = "register"
KIND_LOGOUT = "logout"
KIND_CAPTCHA_ISSUED = "captcha_issued"
KIND_CAPTCHA_OK = "captcha_ok"
KIND_CAPTCHA_FAIL = "captcha_fail"
KIND_CSRF_REJECT = "csrf_reject"
KIND_RATE_LIMITED = "rate_limited"
KIND_SESSION_STORE_ERROR = "session_store_error"
KIND_LOGIN_SLOWED = "login_slowed"
KIND_DUPLICATE_SESSION_COOKIE = "duplicate_session_cookie"

KINDS = (
    KIND_REQUEST,
    KIND_LOGIN_OK,
    KIND_LOGIN_FAIL,
    KIND_REGISTER,
    KIND_LOGOUT,
    KIND_CAPTCHA_ISSUED,
    KIND_CAPTCHA_OK,
    KIND_CAPTCHA_FAIL,
    KIND_CSRF_REJECT,
    KIND_RATE_LIMITED,
    KIND_SESSION_STORE_ERROR,
    KIND_LOGIN_SLOWED,
    KIND_DUPLICATE_SESSION_COOKIE,
)

LOGIN_FAIL_REASONS = ("bad_credentials", "captcha", "invalid_form")
CAPTCHA_MODES = ("latin", "digits", "zh")
CAPTCHA_FAIL_REASONS = ("wrong", "expired", "missing")
CSRF_REASONS = (
    "missing",
    "malformed",
    "expired",
    "foreign",
    "cross_site",
    "bad_origin",
    "bad_referer",
    "cookie_missing",
    "cookie_invalid",
    "cookie_expired",
)
RATE_LIMIT_SCOPES = (
    "login_ip",
    "login_account_ip",
    "register_ip",
    "captcha_session",
    "captcha_ip",
)

# Causes of bad lines, in the order they are checked: a line gets the first
# cause that applies.
BAD_UNPARSABLE = "unparsable_json"  # not a JSON object (truncated, garbage, array, ...)
BAD_MISSING_VERSION = "missing_version"  # a JSON object without "v"
BAD_UNKNOWN_VERSION = "unknown_version"  # "v" is present but not 1
BAD_FIELD_TYPE = "bad_field_type"  # version 1, but some field has the wrong JSON type
BAD_MISSING_KIND = "missing_kind"  # no "kind", or an empty one
BAD_MISSING_TIME = "missing_time"  # no "time", or one that is not an RFC 3339 timestamp

BAD_CAUSES = (
    BAD_UNPARSABLE,
    BAD_MISSING_VERSION,
    BAD_UNKNOWN_VERSION,
    BAD_FIELD_TYPE,
    BAD_MISSING_KIND,
    BAD_MISSING_TIME,
)
