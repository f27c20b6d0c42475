-- A batch of placements, each all or nothing, decided in order as if placed one by one:
-- a user's second placement in the batch sees the cooldown of their first. One call per
-- batch instead of one per placement saves Redis a script call, the state reads and a
-- PUBLISH per placement, and every instance a Pub/Sub message per placement.
--
-- Each placement's checks run before any of its writes, and the only write that could
-- fail (XADD, if the stream were ahead of the seq) is the first write of the batch's
-- first accepted placement: later ones get higher ids. So an error leaves nothing
-- half-applied.
--
-- The rules are the domain's (crates/domain/src/policy.rs, `decide`), executed here with
-- the same parameters and the same arithmetic, and checked against the same test vectors
-- (crates/store/tests/policy_vectors.rs): the ban, the protected area, the one-time
-- proof, the user rule (the fixed cooldown, or in the charges model a per-user GCRA: a
-- pool of charges), then the per-address GCRA (the account rate for accounts); every
-- check runs before any write, so a refused placement spends nothing.
--
-- Idempotency: a placement may name a key (`<prefix>idem:<user>:<idempotency key>`). If
-- it exists, the placement is a repeat: nothing is decided or written, and the stored
-- outcome of the first accepted attempt is returned. An accepted placement with a key
-- stores its outcome there ('seq at next_at', expiring with the idempotency window) in
-- this same script, so two attempts with one key can never both place.
--
-- Moderation state (written by shared/moderation.rs, reloaded from PostgreSQL by the
-- rebuild): a hash per banned user (`ban:u:<user>`) and per banned network
-- (`ban:n:<net key>`, the domain's `net_key`), each ban id -> end (unix ms, 0: never);
-- a hash of the network lengths in use (`ban:lens`, '4/24' -> how many bans), so that
-- an address is looked up once per length in use (none: no work); protected rectangles
-- by tile (`protected:tiles`, 'tx ty' -> 'id x y w h;...' for every rectangle that
-- overlaps the tile of ARGV[12] pixels square), so that a placement looks up one field
-- however many areas there are. Network keys are built here from the address, so they
-- are not in KEYS: with Redis Cluster, the prefix's hash tag keeps them in the slot.
--
-- The canvas lives in tiles (shared/keys.rs): a placement writes its tile's pixels
-- (BITFIELD at the tile-local index) and its tile's version (the placement's seq), and
-- nothing else of the canvas, so a batch costs one tile key per placement and no key is
-- board-sized.
--
-- The canvas lives in tiles written as lua/tile.lua's `paint` says: here on one
-- redis-server, in the tiles' own slots on a Redis Cluster (then KEYS[13 + 7i] and
-- KEYS[14 + 7i] both name the core slot's `tiles:last`, see tile.lua).
--
-- KEYS[1] the size (unused; was the board)   KEYS[2] seq   KEYS[3] epoch   KEYS[4] clock
-- KEYS[5] stream   KEYS[6] ban lengths   KEYS[7] protected areas by tile
-- then per placement i (from 0): KEYS[8 + 7i] the user's key: the last placement's time
--                                             (unix ms) in the fixed model, the pool's
--                                             arrival time (unix ms) in the charges model,
--                                KEYS[9 + 7i] the address key's rate key,
--                                KEYS[10 + 7i] the idempotency key's key (used only if
--                                             ARGV says so)
--                                KEYS[11 + 7i] the one-time proof's key (used only if
--                                             ARGV says so)
--                                KEYS[12 + 7i] the user's ban key
--                                KEYS[13 + 7i] the pixels of the placement's tile
--                                KEYS[14 + 7i] the version of the placement's tile
-- ARGV[1] bitfield type (u4 or u8)   ARGV[2] cooldown ms   ARGV[3] rate period us (0: no
-- limit)   ARGV[4] rate burst tolerance us   ARGV[5] '1' on a Redis Cluster (tile.lua)
-- ARGV[6] channel
-- ARGV[7] idempotency window ms
-- ARGV[8] account rate period us   ARGV[9] account rate tolerance us
-- ARGV[10] how long a spent proof is remembered, ms (the domain's ONCE_TTL_MS)
-- ARGV[11] the prefix of network ban keys   ARGV[12] the protected areas' tile size
-- ARGV[13] ms to regain a charge (0: the fixed model)   ARGV[14] the pool's tolerance ms
-- ((charges - 1) * ARGV[13]); in the charges model ARGV[2] is 0
-- then per placement i: ARGV[15 + 11i ..] tile-local pixel index, color, x, y, user
--                       (signed decimal),
--                       "1" to bypass every rule (the exempt path),
--                       "1" if it carries an idempotency key,
--                       "1" if it carries a one-time proof,
--                       "1" for a moderator, "1" for an account,
--                       the address as the domain's `hex_addr` ('4:cb007109')
--
-- Returns {3} when the state is missing (Redis restarted empty or was flushed): then
-- nothing may be placed until it is rebuilt from PostgreSQL, or the seq would start again
-- from 0. Otherwise {epoch, now_ms, then per placement five numbers}:
-- {0, seq, at_ms, next_at_ms, pool arrival time (0: none or the fixed model)} accepted,
-- {1, next_at_ms, 0, 0, 0} cooldown (or an empty pool), {2, retry_after_ms, 0, 0, 0} rate
-- limit, {4, seq, at_ms, next_at_ms, 0} a repeat of a key (the first attempt's outcome;
-- nothing was placed now), {5, ban id, until ms (-1: never), 0, 0} banned,
-- {6, 0, 0, 0, 0} protected, {7, 0, 0, 0, 0} the proof was spent. On a Redis Cluster the
-- outcomes are followed by one number per accepted placement, in order: the seq of the
-- placement before it on its tile (0: none), see tile.lua.
-- Accepted placements are published as one message: 'P <epoch> <first seq> <rec>;<rec>…'
-- with consecutive seqs, each rec 'x y color user at'.

local epoch = redis.call('GET', KEYS[3])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq then
  return {3}
end
seq = tonumber(seq)

-- Redis's clock, so that every instance agrees; never behind the last placement
-- (the domain's Now::not_before_ms).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local clock = tonumber(redis.call('GET', KEYS[4]) or '0')
if now_us < clock * 1000 then
  now_us = clock * 1000
end
local now = math.floor(now_us / 1000)
local now_s = string.format('%.0f', now)

local cooldown = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local window = ARGV[7]
local account_period = tonumber(ARGV[8])
local account_tolerance = tonumber(ARGV[9])
local once_ttl = tonumber(ARGV[10])
local net_prefix = ARGV[11]
local tile = tonumber(ARGV[12])
local charge_every = tonumber(ARGV[13])
local charge_tolerance = tonumber(ARGV[14])
local n = (#ARGV - 14) / 11

-- The domain's `applying_ban` over a hash's flat {id, until, ...}: of the bans that still
-- apply, one without end, else the one that ends last; the lowest id on a tie.
local function pick(best, flat)
  for j = 1, #flat, 2 do
    local id, untl = tonumber(flat[j]), tonumber(flat[j + 1])
    if untl == 0 or now < untl then
      local rank = untl == 0 and math.huge or untl
      if not best or rank > best[3] or (rank == best[3] and id < best[1]) then
        best = {id, untl, rank}
      end
    end
  end
  return best
end

-- The domain's `net_key`: keep bits/4 hex digits, mask the next one, pad with zeros.
local function net_key(addr, bits)
  local hex = string.sub(addr, 3)
  local full = math.floor(bits / 4)
  local out = string.sub(hex, 1, full)
  local rem = bits % 4
  if rem > 0 then
    local d = tonumber(string.sub(hex, full + 1, full + 1), 16)
    d = d - d % (2 ^ (4 - rem))
    out = out .. string.format('%x', d)
  end
  return string.sub(addr, 1, 2) .. out .. string.rep('0', #hex - #out) .. '/' .. bits
end

-- Read once per batch: empty (one lookup) unless moderators banned networks.
local lens = {}
for _, tag in ipairs(redis.call('HKEYS', KEYS[6])) do
  local fam, bits = string.match(tag, '^(%d)/(%d+)$')
  lens[#lens + 1] = {fam, tonumber(bits)}
end
-- The rectangles overlapping each tile this batch touches, parsed once per tile.
local tiles = {}
local function protected(x, y)
  local field = math.floor(x / tile) .. ' ' .. math.floor(y / tile)
  local rects = tiles[field]
  if not rects then
    rects = {}
    local v = redis.call('HGET', KEYS[7], field)
    if v then
      for rx, ry, rw, rh in string.gmatch(v, '%d+ (%d+) (%d+) (%d+) (%d+)') do
        rects[#rects + 1] = {tonumber(rx), tonumber(ry), tonumber(rw), tonumber(rh)}
      end
    end
    tiles[field] = rects
  end
  for _, r in ipairs(rects) do
    if x >= r[1] and x < r[1] + r[3] and y >= r[2] and y < r[2] + r[4] then
      return true
    end
  end
  return false
end

local reply = {tonumber(epoch), now}
local recs = {}
local first = nil
for i = 0, n - 1 do
  local a = 15 + 11 * i
  local cooldown_key = KEYS[8 + 7 * i]
  local rate_key = KEYS[9 + 7 * i]
  local idem_key = KEYS[10 + 7 * i]
  local once_key = KEYS[11 + 7 * i]
  local ban_key = KEYS[12 + 7 * i]
  local tile_key = KEYS[13 + 7 * i]
  local version_key = KEYS[14 + 7 * i]
  local keyed = ARGV[a + 6] == '1'
  local exempt = ARGV[a + 5] == '1'
  local once = ARGV[a + 7] == '1' and not exempt
  local account = ARGV[a + 9] == '1'
  local stored = nil
  if keyed then
    stored = redis.call('GET', idem_key)
  end
  if stored then
    local s, at, next_at = string.match(stored, '^(%d+) (%d+) (%d+)$')
    reply[#reply + 1] = 4
    reply[#reply + 1] = tonumber(s)
    reply[#reply + 1] = tonumber(at)
    reply[#reply + 1] = tonumber(next_at)
    reply[#reply + 1] = 0
  else
    local code, value, value2 = 0, 0, 0
    -- nil: the rate key is left as it is.
    local tat = nil
    -- The pool's arrival time as it stands (read for the reply even on the exempt path,
    -- which neither checks nor spends it); `pool_spent` once this placement moved it.
    local pool = nil
    local pool_spent = false
    if charge_every > 0 then
      pool = tonumber(redis.call('GET', cooldown_key) or '0')
    end
    if not exempt then
      -- Rule 1, the ban: the user's, then those of every network length in use.
      local ban = pick(nil, redis.call('HGETALL', ban_key))
      local addr = ARGV[a + 10]
      for _, l in ipairs(lens) do
        if l[1] == string.sub(addr, 1, 1) then
          ban = pick(ban, redis.call('HGETALL', net_prefix .. net_key(addr, l[2])))
        end
      end
      if ban then
        code, value, value2 = 5, ban[1], ban[2] == 0 and -1 or ban[2]
      end
      -- Rule 2, the protected area, for all but moderators.
      if code == 0 and ARGV[a + 8] ~= '1' and protected(tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])) then
        code = 6
      end
      -- Rule 3, the one-time proof.
      if code == 0 and once then
        local spent = redis.call('GET', once_key)
        if spent and now < tonumber(spent) then
          code = 7
        end
      end
      -- Rule 4, the cooldown.
      if code == 0 and cooldown > 0 then
        local last = redis.call('GET', cooldown_key)
        if last and now < tonumber(last) + cooldown then
          code, value = 1, tonumber(last) + cooldown
        end
      end
      -- Rule 4 in the charges model, the domain's `Charges::spend`: the arrival time (from
      -- now if it is past) may run ahead of now by at most the tolerance.
      if code == 0 and charge_every > 0 then
        if pool < now then
          pool = now
        end
        if pool - charge_tolerance > now then
          code, value = 1, pool - charge_tolerance
        else
          pool = pool + charge_every
          pool_spent = true
        end
      end
      -- Rule 5, GCRA: the theoretical arrival time may run ahead of now by at most the
      -- tolerance.
      local period, tolerance = period, tolerance
      if account then
        period, tolerance = account_period, account_tolerance
      end
      if code == 0 and period > 0 then
        tat = tonumber(redis.call('GET', rate_key) or '0')
        if tat < now_us then
          tat = now_us
        end
        local wait = tat - tolerance - now_us
        if wait > 0 then
          code, value = 2, math.max(1, math.ceil(wait / 1000))
        else
          tat = tat + period
        end
      end
    end
    if code == 0 then
      seq = seq + 1
      local rec = ARGV[a + 2] .. ' ' .. ARGV[a + 3] .. ' ' .. ARGV[a + 1] .. ' ' .. ARGV[a + 4] .. ' ' .. now_s
      -- No MAXLEN: trimming here could drop placements not yet in PostgreSQL, which a
      -- durable Redis holds while PostgreSQL is away. The reconciler trims instead, never
      -- past the history's watermark (backlog.rs).
      redis.call('XADD', KEYS[5], string.format('%d-0', seq), 'p', rec)
      paint(tile_key, version_key, ARGV[a], ARGV[a + 1], seq, ARGV[a + 2], ARGV[a + 3])
      if tat then
        redis.call('SET', rate_key, string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000) + 1)
      end
      if cooldown > 0 then
        redis.call('SET', cooldown_key, now_s, 'PX', cooldown)
      end
      -- Expires when the pool is full again: no state is a full pool.
      if pool_spent then
        redis.call('SET', cooldown_key, string.format('%.0f', pool), 'PX', pool - now)
      end
      if once then
        redis.call('SET', once_key, string.format('%.0f', now + once_ttl), 'PX', once_ttl)
      end
      local next_at = now + cooldown
      if pool and pool - charge_tolerance > next_at then
        next_at = pool - charge_tolerance
      end
      if keyed then
        redis.call('SET', idem_key, string.format('%d %s %.0f', seq, now_s, next_at), 'PX', window)
      end
      first = first or seq
      recs[#recs + 1] = rec
      reply[#reply + 1] = 0
      reply[#reply + 1] = seq
      reply[#reply + 1] = now
      reply[#reply + 1] = next_at
      reply[#reply + 1] = pool or 0
    else
      reply[#reply + 1] = code
      reply[#reply + 1] = value
      reply[#reply + 1] = value2
      reply[#reply + 1] = 0
      reply[#reply + 1] = 0
    end
  end
end

painted()
if first then
  redis.call('SET', KEYS[2], string.format('%d', seq))
  redis.call('SET', KEYS[4], now_s)
  redis.call('PUBLISH', ARGV[6], 'P ' .. epoch .. ' ' .. string.format('%d', first) .. ' ' .. table.concat(recs, ';'))
end
-- On a cluster, after the outcomes: the predecessor of every accepted placement.
for _, p in ipairs(prevs) do
  reply[#reply + 1] = p
end
return reply
