#!/usr/bin/env bash
# BENCHMARKS.md "g. The three-instance topology" at design load, side by side: the same
# three instances behind HAProxy on one redis-server and on a three-master Redis Cluster
# (`rplace-topology --redis-cluster`), alternating which goes first each round, a fresh
# topology (Redis, PostgreSQL, data dirs) for every run.
#
#   ROUNDS=2 CS="1000 2000" OUT=/tmp/bench/g-cluster crates/bench/cluster/topology.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
cargo build --release -p rplace -p rplace-bench -p rplace-testsupport 2>&1 | tail -1
R=$CARGO_TARGET_DIR/release
export RPLACE_BENCH_TOKEN=${RPLACE_BENCH_TOKEN:-bench-token-0123456789abcdef}
ROUNDS=${ROUNDS:-2}; CS=${CS:-"1000 2000"}; P=${P:-1000}; D=${D:-30}
OUT=${OUT:-/tmp/bench/g-cluster}; mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || true

# run NAME C ROUND [rplace-topology flags]
run() {
  local name=$1 c=$2 r=$3; shift 3
  local log=$OUT/$name-c$c-$r.topology.log
  "$R/rplace-topology" "$@" -- --cooldown 0 --ip-rate 0 --bench-token "$RPLACE_BENCH_TOKEN" \
    --sync full --max-frame-rate 15000 >"$log" 2>&1 &
  local top=$!
  for _ in $(seq 1 900); do
    grep -q '^ready' "$log" && break
    kill -0 "$top" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  grep -q '^ready' "$log" || { echo "topology not ready: $log"; exit 1; }
  local lb pids
  lb=$(awk '$1=="haproxy" {sub("http://", "", $2); print $2}' "$log")
  # CPU of every instance, every redis-server and HAProxy (per pid in the JSON; the
  # topology log says which pid is which).
  pids=$(awk '$1=="instance" || $1=="haproxy" {print "--server-pid", $4}
              $1=="redis-pid" {print "--server-pid", $2}' "$log")
  echo "== g $name C=$c round $r (haproxy $lb)"
  # shellcheck disable=SC2086
  "$R/rplace-bench" --json "$OUT/$name-c$c-$r.json" live --addr "$lb" -c "$c" -p "$P" -d "$D" \
    $pids 2>&1 | tee "$OUT/$name-c$c-$r.bench.log" | tail -4
  # TERM, not INT: a script's background jobs ignore SIGINT.
  kill -TERM "$top"; wait "$top" 2>/dev/null || true
  sleep 3   # the watchdogs stop Redis, PostgreSQL, the instances and HAProxy
}

for c in $CS; do
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="single cluster"; else order="cluster single"; fi
    for who in $order; do
      if [ "$who" = cluster ]; then run cluster "$c" "$r" --redis-cluster; else run single "$c" "$r"; fi
    done
  done
done
