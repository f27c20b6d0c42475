#!/usr/bin/env bash
# The one test command (README): installs what the tests need when it is missing, then
# checks formatting and lints and runs every test: unit, integration (real server, real
# Redis, PostgreSQL, HAProxy, Varnish), the load generator's smoke run and the browser
# tests (Debian Chromium driven by playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n== %s\n' "$*"; }

# --- system packages -------------------------------------------------------------
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have redis-server || missing+=(redis-server)
have haproxy || missing+=(haproxy)
have varnishd || [ -x /usr/sbin/varnishd ] || missing+=(varnish)
have chromium || [ -x /usr/bin/chromium ] || missing+=(chromium)
have node || missing+=(nodejs)
have npm || missing+=(npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these as services on install; the tests start their own on free ports.
for svc in redis-server haproxy varnish postgresql; do
    (service "$svc" stop >/dev/null 2>&1 || true)
done

# --- the OpenID Connect provider of the login tests (npm oidc-provider) ------------
if [ ! -d tests/oidc/node_modules/oidc-provider ]; then
    log "npm ci in tests/oidc"
    (cd tests/oidc && npm ci --no-audit --no-fund)
fi

# --- Rust -----------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo build --release (the binary the browser tests drive)"
cargo build --release --locked -p rplace
log "cargo test"
cargo test --workspace --locked

# --- browser ---------------------------------------------------------------------
log "browser tests"
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac
RPLACE_BIN="$target/release/rplace" tests/browser/run.sh
log "all tests passed"
