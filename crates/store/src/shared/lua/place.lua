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
-- KEYS[1] board   KEYS[2] seq   KEYS[3] epoch   KEYS[4] clock   KEYS[5] stream
-- then per placement i (from 0): KEYS[6 + 2i] the user's cooldown key,
--                                KEYS[7 + 2i] the address's rate key
-- ARGV[1] bitfield type (u4 or u8)   ARGV[2] cooldown ms   ARGV[3] rate period µs (0: no
-- limit)   ARGV[4] rate burst tolerance µs   ARGV[5] unused (was the stream cap, see the
-- XADD below)   ARGV[6] channel
-- then per placement i: ARGV[7 + 6i ..] pixel index, color, x, y, user (signed decimal),
--                       "1" to bypass the cooldown and the rate limit
--
-- Returns {3} when the state is missing (Redis restarted empty or was flushed): then
-- nothing may be placed until it is rebuilt from PostgreSQL, or the seq would start again
-- from 0. Otherwise {epoch, now_ms, then per placement a pair}: {0, seq} accepted (next
-- allowed at now + cooldown), {1, next_at_ms} cooldown, {2, retry_after_ms} rate limit.
-- Accepted placements are published as one message: 'P <epoch> <first seq> <rec>;<rec>…'
-- with consecutive seqs, each rec 'x y color user at'.

local epoch = redis.call('GET', KEYS[3])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq or redis.call('EXISTS', KEYS[1]) == 0 then
  return {3}
end
seq = tonumber(seq)

-- Redis's clock, so that every instance agrees; never behind the last placement.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local clock = tonumber(redis.call('GET', KEYS[4]) or '0')
if now < clock then
  now = clock
end
local now_s = string.format('%.0f', now)

local bitfield = ARGV[1]
local cooldown = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local n = (#ARGV - 6) / 6

local reply = {tonumber(epoch), now}
local recs = {}
local first = nil
for i = 0, n - 1 do
  local a = 7 + 6 * i
  local cooldown_key = KEYS[6 + 2 * i]
  local rate_key = KEYS[7 + 2 * i]
  local code, value = 0, 0
  local tat = nil
  if ARGV[a + 5] ~= '1' then
    if period > 0 then
      -- GCRA: the theoretical arrival time may run ahead of now by at most the tolerance.
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
    if code == 0 and cooldown > 0 then
      local last = redis.call('GET', cooldown_key)
      if last and now < tonumber(last) + cooldown then
        code, value = 1, tonumber(last) + cooldown
      end
    end
  end
  if code == 0 then
    seq = seq + 1
    local rec = ARGV[a + 2] .. ' ' .. ARGV[a + 3] .. ' ' .. ARGV[a + 1] .. ' ' .. ARGV[a + 4] .. ' ' .. now_s
    -- No MAXLEN: trimming here could drop placements not yet in PostgreSQL, which a durable
    -- Redis holds while PostgreSQL is away. The reconciler trims instead, never past the
    -- history's watermark (backlog.rs).
    redis.call('XADD', KEYS[5], string.format('%d-0', seq), 'p', rec)
    redis.call('BITFIELD', KEYS[1], 'SET', bitfield, '#' .. ARGV[a], ARGV[a + 1])
    if tat then
      redis.call('SET', rate_key, string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000) + 1)
    end
    if cooldown > 0 then
      redis.call('SET', cooldown_key, now_s, 'PX', cooldown)
    end
    first = first or seq
    recs[#recs + 1] = rec
    value = seq
  end
  reply[#reply + 1] = code
  reply[#reply + 1] = value
end

if first then
  redis.call('SET', KEYS[2], string.format('%d', seq))
  redis.call('SET', KEYS[4], now_s)
  redis.call('PUBLISH', ARGV[6], 'P ' .. epoch .. ' ' .. string.format('%d', first) .. ' ' .. table.concat(recs, ';'))
end
return reply
