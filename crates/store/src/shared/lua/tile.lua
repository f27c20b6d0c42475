-- Prepended to the scripts that paint tiles (place.lua, place_many.lua; see
-- `shared::live::with_tile_prelude`), whose ARGV[1] is the bitfield type.
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
