-- On a Redis Cluster: writes placements to one tile in the tile's own slot, after
-- place.lua or place_many.lua decided them in the core slot and chained each to the
-- placement before it on its tile (tile.lua's `paint`). Prefixed with tile.lua.
--
-- Instances write their placements concurrently, so a tile's writes may arrive out of
-- order. Each write names its predecessor: it is applied when the tile's version (the seq
-- of the last write applied) has reached the predecessor, and waits in the pending hash
-- (predecessor -> 'seq index color') otherwise, until the write it follows arrives. A
-- write at or below the version is a repeat and is skipped. So a tile's pixels are always
-- its placements up to its version, in seq order, however the writes interleave.
--
-- A write that never arrives (its instance died between the two scripts) leaves the
-- tile behind the core slot's `tiles:last`: the repair (shared/cluster.rs) rebuilds the
-- tile at that seq from PostgreSQL and installs it here with ARGV[2] and ARGV[3], which
-- also applies what waits after it.
--
-- KEYS[1] the tile's pixels   KEYS[2] its version   KEYS[3] its pending writes
-- ARGV[1] bitfield type   ARGV[2] a repair's version (0: none)   ARGV[3] the repair's
-- pixels, the whole tile   ARGV[4] unused   ARGV[5] '0' (tile.lua)
-- then per write, in seq order: ARGV[6 + 4j ..] predecessor, seq, tile-local index, color
--
-- Returns {version, how many writes still wait}.

local v = tonumber(redis.call('GET', KEYS[2]) or '0')
local v0 = v

local function apply(seq, index, color)
  ensure_tile(KEYS[1])
  redis.call('BITFIELD', KEYS[1], 'SET', ARGV[1], '#' .. index, color)
  v = seq
end

-- Applies the writes that waited for the version, in chain order.
local function drain()
  while true do
    local at = string.format('%d', v)
    local w = redis.call('HGET', KEYS[3], at)
    if not w then
      return
    end
    redis.call('HDEL', KEYS[3], at)
    local s, i, c = string.match(w, '^(%d+) (%d+) (%d+)$')
    if tonumber(s) > v then
      apply(tonumber(s), i, c)
    end
  end
end

local base = tonumber(ARGV[2])
if base > v then
  redis.call('SET', KEYS[1], ARGV[3])
  v = base
  -- What waits and is older than the repair is in its pixels already.
  local flat = redis.call('HGETALL', KEYS[3])
  for j = 1, #flat, 2 do
    local s = tonumber(string.match(flat[j + 1], '^(%d+) '))
    if s <= v then
      redis.call('HDEL', KEYS[3], flat[j])
    end
  end
  drain()
end

for j = 6, #ARGV, 4 do
  local prev, seq = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  if seq > v then
    if prev <= v then
      apply(seq, ARGV[j + 2], ARGV[j + 3])
      drain()
    else
      redis.call('HSET', KEYS[3], ARGV[j], ARGV[j + 1] .. ' ' .. ARGV[j + 2] .. ' ' .. ARGV[j + 3])
    end
  end
end

if v ~= v0 then
  redis.call('SET', KEYS[2], string.format('%d', v))
end
return {v, redis.call('HLEN', KEYS[3])}
