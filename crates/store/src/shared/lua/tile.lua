-- Prepended to the scripts that paint tiles (place.lua, place_many.lua; see
-- `shared::live::with_tile_prelude`), whose ARGV[1] is the bitfield type and whose ARGV[5]
-- is '1' on a Redis Cluster.
--
-- A tile's pixels are created whole: one SET of the tile's bytes, all color 0
-- (TILE_SIZE² = 65,536 pixels, crates/domain/src/tile.rs). Grown by BITFIELD instead,
-- Redis preallocates the string at twice its length, so a tile took twice its 32 KiB
-- (MEMORY USAGE 65,608 bytes for a 32,063-byte tile; BENCHMARKS.md).
local tile_bytes = ARGV[1] == 'u4' and 32768 or 65536
local blank = nil
local made = {}
local function ensure_tile(key)
  if made[key] then
    return
  end
  made[key] = true
  if redis.call('EXISTS', key) == 0 then
    blank = blank or string.rep('\0', tile_bytes)
    redis.call('SET', key, blank)
  end
end

-- How a script paints pixel `index` (tile-local) of the tile holding (x, y) with `color`
-- as placement `seq`: `paint(tile_key, version_key, ...)` for each, then `painted()` once.
--
-- On one redis-server the script writes the tile itself: its pixels, and its version (the
-- seq of its last placement, written once per tile in `painted`).
--
-- On a Redis Cluster the tile is in a slot of its own, which this script may not touch:
-- both keys are then the core slot's hash of each tile's last seq (`tiles:last`). The
-- script records the placement there and returns, per painted pixel in order, the seq of
-- the placement before it on its tile (`prevs`): the caller then writes the tile in its
-- slot with lua/tile_apply.lua, which applies a tile's placements in this chain's order
-- whatever order they arrive in.
local clustered = ARGV[5] == '1'
local versions = {}
local lasts = {}
local lasts_key = nil
local prevs = {}
local function paint(tile_key, version_key, index, color, seq, x, y)
  if clustered then
    -- TILE_SIZE (crates/domain/src/tile.rs) pixels a side.
    local field = math.floor(tonumber(x) / 256) .. ',' .. math.floor(tonumber(y) / 256)
    local prev = lasts[field] or tonumber(redis.call('HGET', tile_key, field) or '0')
    lasts[field] = seq
    lasts_key = tile_key
    prevs[#prevs + 1] = prev
  else
    ensure_tile(tile_key)
    redis.call('BITFIELD', tile_key, 'SET', ARGV[1], '#' .. index, color)
    -- Written once per tile the batch touches (a hot spot puts many placements of a batch
    -- on one tile).
    versions[version_key] = seq
  end
end
local function painted()
  for key, v in pairs(versions) do
    redis.call('SET', key, string.format('%d', v))
  end
  for field, v in pairs(lasts) do
    redis.call('HSET', lasts_key, field, string.format('%d', v))
  end
end
