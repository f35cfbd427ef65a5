#!/usr/bin/env bash
# Runs the end-to-end browser test of the reference site.
#
# Installs what is missing (Debian's Chromium, the npm packages), builds the site if there is no
# binary yet, starts it on a free loopback port with a fresh data folder and the captcha in test
# mode, runs `node --test`, and stops the site however the run ends.
#
# Environment:
#   PORTICO_BIN            the site binary to test (default: target/debug/portico, built if missing)
#   PORTICO_E2E_ARTIFACTS  where screenshots and the site's log go (default: artifacts/e2e)
#
# Extra arguments go to `node --test`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
e2e="$root/e2e"
artifacts="${PORTICO_E2E_ARTIFACTS:-$root/artifacts/e2e}"
export PORTICO_E2E_ARTIFACTS="$artifacts"

say() { printf 'e2e: %s\n' "$*" >&2; }

# --- Tools -----------------------------------------------------------------------------------

# Debian's Chromium; Playwright's own browser download is never used.
if [[ ! -x /usr/bin/chromium ]]; then
  say "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists are refreshed only when the install cannot find the packages without it.
  if ! apt-get install -y -q chromium chromium-driver >/dev/null; then
    apt-get update -q >/dev/null
    apt-get install -y -q chromium chromium-driver >/dev/null
  fi
fi

if ! command -v node >/dev/null; then
  say "node is not installed (Node.js 20 or newer is needed)"
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  say "Node.js $(node --version) is too old: playwright-core needs 20 or newer"
  exit 1
fi

if [[ ! -d "$e2e/node_modules/playwright-core" ]]; then
  say "installing the npm packages"
  (cd "$e2e" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

# --- The site --------------------------------------------------------------------------------

bin="${PORTICO_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/portico}"
if [[ -z "${PORTICO_BIN:-}" && ! -x "$bin" ]]; then
  say "building the site"
  (cd "$root" && cargo build -p portico-site)
fi
if [[ ! -x "$bin" ]]; then
  say "no site binary at $bin"
  exit 1
fi

mkdir -p "$artifacts"
rm -f "$artifacts"/*.png
data_dir="$(mktemp -d "${TMPDIR:-/tmp}/portico-e2e.XXXXXX")"
site_out="$data_dir/stdout"
site_log="$artifacts/site.log"
site_pid=""

stop_site() {
  if [[ -n "$site_pid" ]] && kill -0 "$site_pid" 2>/dev/null; then
    kill -TERM "$site_pid" 2>/dev/null || true
    # A graceful stop takes well under a second; do not hang the run if it does not come.
    for _ in $(seq 50); do
      kill -0 "$site_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$site_pid" 2>/dev/null || true
    wait "$site_pid" 2>/dev/null || true
  fi
  rm -rf "$data_dir"
}
trap stop_site EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Port 0: the site picks a free port and prints it. The captcha test answer is accepted only on
# a loopback address, which this is.
NO_COLOR=1 PORTICO_CAPTCHA_TEST_ANSWER=test-captcha PORTICO_ALLOWED_HOSTS=127.0.0.1,localhost \
  "$bin" serve --bind 127.0.0.1:0 --data-dir "$data_dir" >"$site_out" 2>"$site_log" &
site_pid=$!

site_url=""
for _ in $(seq 300); do
  site_url="$(sed -n 's/^listening on \(http:\/\/[^ ]*\)$/\1/p' "$site_out" | head -n1)"
  [[ -n "$site_url" ]] && break
  if ! kill -0 "$site_pid" 2>/dev/null; then
    say "the site stopped before listening; its log:"
    tail -n 40 "$site_log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$site_url" ]]; then
  say "the site did not print its address within 30 s; its log:"
  tail -n 40 "$site_log" >&2
  exit 1
fi
say "site at $site_url (log: $site_log)"

# --- The test --------------------------------------------------------------------------------

status=0
(
  cd "$e2e"
  PORTICO_URL="$site_url" PORTICO_CAPTCHA_TEST_ANSWER=test-captcha \
    node --test --test-reporter=spec "$@" site.test.mjs
) || status=$?

if (( status != 0 )); then
  say "FAILED; screenshots and the site's log are in $artifacts"
else
  say "screenshots in $artifacts"
fi
exit "$status"
