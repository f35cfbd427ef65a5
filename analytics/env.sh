# Sourced by run-tests.sh and bench.sh: makes analytics/.venv with this
# package installed (as a user would: pip install ./analytics[test]) and sets
# JAVA_HOME for Spark. Needs only python3 (with venv and pip), Java 17 and
# access to PyPI. Sets $venv.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    python3 -m venv "$venv"
fi

# Spark needs a JVM; find one when JAVA_HOME is unset or points nowhere.
if [ -z "${JAVA_HOME:-}" ] || [ ! -x "$JAVA_HOME/bin/java" ]; then
    if ! command -v java >/dev/null 2>&1; then
        echo "$(basename "$0"): java not found; install Java 17 (e.g. openjdk-17-jre-headless)" >&2
        exit 1
    fi
    java_bin="$(readlink -f "$(command -v java)")"
    JAVA_HOME="$(dirname "$(dirname "$java_bin")")"
    export JAVA_HOME
fi

(cd "$here/.." && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./analytics[test]")
