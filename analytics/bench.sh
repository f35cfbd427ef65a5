#!/usr/bin/env bash
# Time the job over a generated log on a local standalone cluster and on
# local[*]; see tests/bench.py. Arguments go to it, e.g.
#   analytics/bench.sh --events-count 1000000
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

exec "$venv/bin/python" "$here/tests/bench.py" "$@"
