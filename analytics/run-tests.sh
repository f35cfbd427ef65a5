#!/usr/bin/env bash
# Run the analytics test suite in its own virtualenv, analytics/.venv.
#
# Needs only python3 (with venv and pip), Java 17 and access to PyPI. Extra
# arguments go to pytest, e.g. ./run-tests.sh -k captcha
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

cd "$here"
exec "$venv/bin/python" -m pytest "$@"
