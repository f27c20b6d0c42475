#!/usr/bin/env bash
# Side-by-side runs of two server binaries under one `rplace-bench` scenario, alternating
# which goes first each round, a fresh data dir for every run (BENCHMARKS.md, issue 8).
#
#   BEFORE=/path/to/old/rplace AFTER=/path/to/new/rplace BENCH=/path/to/rplace-bench \
#     crates/bench/ab/ab.sh NAME "live --addr 127.0.0.1:18080 -c 15000 -p 1000 -d 30" 2
#
# AFTER_ARGS (default: no per-address caps, since every bench client comes from 127.0.0.x)
# are added to the AFTER server only; EXTRA_ARGS to both. JSON results: NAME-WHO-ROUND.json.
set -u
NAME=$1; SCENARIO=$2; ROUNDS=${3:-2}
: "${BEFORE:?set BEFORE to the old rplace binary}" "${AFTER:?set AFTER to the new one}"
BENCH=${BENCH:-rplace-bench}
AFTER_ARGS=${AFTER_ARGS:---max-connections-per-ip 0 --max-websockets-per-ip 0}
EXTRA_ARGS=${EXTRA_ARGS:-}
export RPLACE_BENCH_TOKEN=${RPLACE_BENCH_TOKEN:-bench-token-0123456789abcdef}
ulimit -n 20000 2>/dev/null || true
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for who in $order; do
    if [ "$who" = before ]; then bin=$BEFORE; xs=""; else bin=$AFTER; xs=$AFTER_ARGS; fi
    dir=$(mktemp -d)
    # shellcheck disable=SC2086
    "$bin" --listen 127.0.0.1:18080 --data-dir "$dir" --cooldown 0 --ip-rate 0 \
      --bench-token "$RPLACE_BENCH_TOKEN" --sync full $xs $EXTRA_ARGS >"$NAME-$who-$r.server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf 127.0.0.1:18080/readyz >/dev/null && break; sleep 0.1; done
    echo "== $NAME $who round $r"
    # shellcheck disable=SC2086
    "$BENCH" --json "$NAME-$who-$r.json" $SCENARIO --server-pid "$pid" 2>&1 | tail -1
    kill "$pid"; wait "$pid" 2>/dev/null
    rm -rf "$dir"
  done
done
