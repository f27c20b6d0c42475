#!/bin/bash
# Runs wrk with put.lua against URL and prints, for each PID, its CPU time per request
# (utime + stime from /proc, in µs). For the per-placement CPU figures in BENCHMARKS.md.
#   crates/bench/wrk/put-cpu.sh http://127.0.0.1:18080/ SERVER_PID [REDIS_PID PG_POSTMASTER_PID ...]
# A PID's children are counted with it (PostgreSQL's backends). wrk runs -t2 -c100 -d15.
set -euo pipefail
url=$1; shift
here=$(dirname "$0")
ticks() { # CPU ticks of a pid and its children
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
declare -A before
for p in "$@"; do before[$p]=$(ticks "$p"); done
out=$(wrk -t2 -c100 -d15 -s "$here/put.lua" "$url")
echo "$out" | grep -E "Requests/sec|Non-2xx" || true
n=$(echo "$out" | awk '/requests in/ {print $1}')
hz=$(getconf CLK_TCK)
for p in "$@"; do
  d=$(( $(ticks "$p") - before[$p] ))
  echo "pid $p ($(cat /proc/$p/comm)): $(echo "scale=1; $d * 1000000 / $hz / $n" | bc) us CPU per request"
done
