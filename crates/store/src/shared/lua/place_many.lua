-- One chunk of a moderation change (rollback, restore, fill, stamp): ordinary placements
-- by one moderator, exempt from the cooldown and the per-address limit (which are neither
-- checked nor spent), each applied only if nobody placed on its pixel since the plan saw
-- the board (a compare-and-set, see crates/store/src/shared/rewrite.rs).
--
-- The caller knows every pixel placed on up to seq ARGV[4] (the cursor: the plan's seq, then
-- the seq this script returned last time) and leaves those out of the chunk. This script
-- reads the stream entries after the cursor (the placements of others since the previous
-- chunk, a few at a time), skips the chunk's pixels among them, and returns them all, so
-- that the caller leaves them out of later chunks too.
--
-- Placements are written like place.lua writes them (XADD `<seq>-0` with the same record,
-- BITFIELD on the pixel's tile, the tile's version, the seq and clock keys) and published
-- as one message in the same format, so the feed of every instance and the history writer
-- need no special case.
--
-- A pixel is named by `y * 2^22 + x` (the largest canvas's width, so the name does not
-- change when the canvas grows; exact in Lua's doubles).
--
-- KEYS[1] the size (unused; was the board)   KEYS[2] seq   KEYS[3] epoch   KEYS[4] clock
-- KEYS[5] stream   then per pixel i: KEYS[6 + 2i] its tile's pixels, KEYS[7 + 2i] its
-- tile's version
-- ARGV[1] bitfield type (u4 or u8)   ARGV[2] channel   ARGV[3] the epoch the change was
-- planned in   ARGV[4] cursor seq   ARGV[5] '1' on a Redis Cluster (tile.lua: then the tile
-- KEYS name the core slot's `tiles:last`)
-- ARGV[6] user (signed decimal)
-- then per pixel i: ARGV[7 + 4i ..] tile-local pixel index, color, x, y
--
-- Returns {3} when the state is missing, {5} when the epoch is not ARGV[3] (a rebuild
-- replaced the state), {6} when the stream no longer holds every entry after the cursor
-- (nothing can be checked then). Otherwise {epoch, now_ms, first seq (0: none), seq now,
-- how many names follow, then the pixel name of every stream entry after the cursor,
-- then on a cluster each written pixel's predecessor on its tile (tile.lua)}. Nothing is written in the
-- three refusals.

local epoch = redis.call('GET', KEYS[3])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq then
  return {3}
end
if epoch ~= ARGV[3] then
  return {5}
end
seq = tonumber(seq)
local cursor = tonumber(ARGV[4])
local width = 4194304

-- Placements of others after the cursor.
local touched = {}
local reply_touched = {}
if seq > cursor then
  local entries = redis.call('XRANGE', KEYS[5], string.format('%d-0', cursor + 1), '+')
  local expect = cursor + 1
  for _, e in ipairs(entries) do
    local id = tonumber(string.match(e[1], '^(%d+)'))
    if id ~= expect then
      return {6}
    end
    expect = id + 1
    local fields = e[2]
    for f = 1, #fields, 2 do
      if fields[f] == 'p' then
        local x, y = string.match(fields[f + 1], '^(%d+) (%d+) ')
        local idx = tonumber(y) * width + tonumber(x)
        touched[idx] = true
        reply_touched[#reply_touched + 1] = idx
      end
    end
  end
  if expect ~= seq + 1 then
    return {6}
  end
end

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local clock = tonumber(redis.call('GET', KEYS[4]) or '0')
if now_us < clock * 1000 then
  now_us = clock * 1000
end
local now_s = string.format('%.0f', math.floor(now_us / 1000))

local user = ARGV[6]
local n = (#ARGV - 6) / 4
local first = nil
local recs = {}
for i = 0, n - 1 do
  local a = 7 + 4 * i
  local idx = tonumber(ARGV[a + 3]) * width + tonumber(ARGV[a + 2])
  if not touched[idx] then
    seq = seq + 1
    local rec = ARGV[a + 2] .. ' ' .. ARGV[a + 3] .. ' ' .. ARGV[a + 1] .. ' ' .. user .. ' ' .. now_s
    redis.call('XADD', KEYS[5], string.format('%d-0', seq), 'p', rec)
    paint(KEYS[6 + 2 * i], KEYS[7 + 2 * i], ARGV[a], ARGV[a + 1], seq, ARGV[a + 2], ARGV[a + 3])
    first = first or seq
    recs[#recs + 1] = rec
    -- A pixel twice in one chunk: the second is skipped like any pixel placed on since.
    touched[idx] = true
  end
end

painted()
if first then
  redis.call('SET', KEYS[2], string.format('%d', seq))
  redis.call('SET', KEYS[4], now_s)
  redis.call('PUBLISH', ARGV[2], 'P ' .. epoch .. ' ' .. string.format('%d', first) .. ' ' .. table.concat(recs, ';'))
end
local reply = {tonumber(epoch), tonumber(now_s), first or 0, seq, #reply_touched}
for _, idx in ipairs(reply_touched) do
  reply[#reply + 1] = idx
end
-- On a cluster: the predecessor on its tile of every pixel written, in order (tile.lua).
for _, p in ipairs(prevs) do
  reply[#reply + 1] = p
end
return reply
