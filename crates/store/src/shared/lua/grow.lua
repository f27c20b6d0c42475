-- Grows the canvas's size in Redis to at least ARGV[1] x ARGV[2] (each axis only grows)
-- and, if it changed, tells every instance's feed: 'G <epoch> <width> <height>'.
--
-- KEYS[1] dims   KEYS[2] epoch
-- ARGV[1] width   ARGV[2] height   ARGV[3] channel
--
-- Returns {width, height} in force now.

local w, h = tonumber(ARGV[1]), tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
local cw, ch = 0, 0
if cur then
  local a, b = string.match(cur, '^(%d+) (%d+)$')
  if a then
    cw, ch = tonumber(a), tonumber(b)
  end
end
local nw, nh = math.max(w, cw), math.max(h, ch)
if nw ~= cw or nh ~= ch then
  redis.call('SET', KEYS[1], string.format('%d %d', nw, nh))
  local epoch = redis.call('GET', KEYS[2]) or '0'
  redis.call('PUBLISH', ARGV[3], 'G ' .. epoch .. ' ' .. string.format('%d %d', nw, nh))
end
return {nw, nh}
