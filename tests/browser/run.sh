#!/usr/bin/env bash
# Browser tests of the rplace page (crates/web/static) against the real server binary,
# plus the page's unit tests. Assumes the binary is built:
#   cargo build --release -p rplace        (or set RPLACE_BIN / CARGO_TARGET_DIR)
# Usage: tests/browser/run.sh [test files...]   (default: every *.test.mjs here)
set -euo pipefail
cd "$(dirname "$0")"

# Debian's Chromium; on a fresh machine (CI) install it when we can.
if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "run.sh: installing chromium (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi

if [ "$#" -eq 0 ]; then
  set -- *.test.mjs
fi
exec node --test "$@"
