-- wrk script: PUT /api/pixel on the bench path, spreading pixels, colors and users.
-- Needs the server's --bench-token in RPLACE_BENCH_TOKEN.
--   wrk -t2 -c100 -d15 -s crates/bench/wrk/put.lua http://127.0.0.1:18080/
local token = os.getenv("RPLACE_BENCH_TOKEN") or error("set RPLACE_BENCH_TOKEN")
local n = 0
request = function()
  n = n + 1
  local x = (n * 7919) % 1000
  local y = (n * 104729) % 1000
  local body = string.format('{"x":%d,"y":%d,"color":%d}', x, y, n % 16)
  local hdr = {}
  hdr["Authorization"] = "Bearer " .. token
  hdr["X-Rplace-User"] = string.format("%016x", (n % 100000) * 2 + 1)
  hdr["Content-Type"] = "application/json"
  return wrk.format("PUT", "/api/pixel", hdr, body)
end
