#!/usr/bin/env bash
# The 2^22² world fill (1M placements over 10,000 tiles) on one instance, on one Redis or
# (with --redis-cluster) a three-master Redis Cluster; then each Redis node's used_memory.
#
#   crates/bench/cluster/world.sh single                    # one redis-server
#   crates/bench/cluster/world.sh cluster --redis-cluster   # three masters
# R: the release binaries' folder (rplace-topology, rplace-bench).
set -euo pipefail
R=${R:-target/release}
mkdir -p /tmp/bench
export RPLACE_BENCH_TOKEN=${RPLACE_BENCH_TOKEN:-bench-token-0123456789abcdef}
ulimit -n 20000
log=/tmp/bench/world-$1.log
$R/rplace-topology --instances 1 ${2:-} -- --width 4194304 --height 4194304 --cooldown 0 --ip-rate 0 \
  --bench-token "$RPLACE_BENCH_TOKEN" --max-connections-per-ip 0 --max-websockets-per-ip 0 >"$log" 2>&1 &
top=$!
for _ in $(seq 1 900); do grep -q '^ready' "$log" && break; sleep 0.1; done
inst=$(awk '$1=="instance" {sub("http://", "", $2); print $2}' "$log")
ipid=$(awk '$1=="instance" {print $4}' "$log")
$R/rplace-bench live --addr "$inst" -c 10 --view 1x1 -p 40000 -d 25 --conns 256 --tiles 10000 --server-pid "$ipid" 2>&1 | tail -2
sleep 30
for u in $(awk '$1=="redis" {print $2}' "$log" | tr ',' ' '); do
  hp=${u#redis://}; hp=${hp%/}
  echo "$hp used_memory $(redis-cli -h ${hp%:*} -p ${hp#*:} info memory | grep '^used_memory:' | tr -d '\r' | cut -d: -f2) keys $(redis-cli -h ${hp%:*} -p ${hp#*:} dbsize)"
done
kill -TERM $top; wait $top 2>/dev/null || true
