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
-- (crates/store/tests/policy_vectors.rs): first the cooldown, then the per-address GCRA;
-- every check runs before any write, so a refused placement spends nothing.
--
-- Idempotency: a placement may name a key (`<prefix>idem:<user>:<idempotency key>`). If
-- it exists, the placement is a repeat: nothing is decided or written, and the stored
-- outcome of the first accepted attempt is returned. An accepted placement with a key
-- stores its outcome there ('seq at next_at', expiring with the idempotency window) in
-- this same script, so two attempts with one key can never both place.
--
-- KEYS[1] board   KEYS[2] seq   KEYS[3] epoch   KEYS[4] clock   KEYS[5] stream
-- then per placement i (from 0): KEYS[6 + 3i] the user's cooldown key,
--                                KEYS[7 + 3i] the address key's rate key,
--                                KEYS[8 + 3i] the idempotency key's key (used only if
--                                             ARGV says so)
-- ARGV[1] bitfield type (u4 or u8)   ARGV[2] cooldown ms   ARGV[3] rate period us (0: no
-- limit)   ARGV[4] rate burst tolerance us   ARGV[5] unused (was the stream cap, see the XADD below)
-- ARGV[6] channel
-- ARGV[7] idempotency window ms
-- then per placement i: ARGV[8 + 7i ..] pixel index, color, x, y, user (signed decimal),
--                       "1" to bypass the cooldown and the rate limit,
--                       "1" if it carries an idempotency key
--
-- Returns {3} when the state is missing (Redis restarted empty or was flushed): then
-- nothing may be placed until it is rebuilt from PostgreSQL, or the seq would start again
-- from 0. Otherwise {epoch, now_ms, then per placement four numbers}:
-- {0, seq, at_ms, next_at_ms} accepted, {1, next_at_ms, 0, 0} cooldown,
-- {2, retry_after_ms, 0, 0} rate limit, {4, seq, at_ms, next_at_ms} a repeat of a key
-- (the first attempt's outcome; nothing was placed now).
-- Accepted placements are published as one message: 'P <epoch> <first seq> <rec>;<rec>…'
-- with consecutive seqs, each rec 'x y color user at'.

local epoch = redis.call('GET', KEYS[3])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq or redis.call('EXISTS', KEYS[1]) == 0 then
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

local bitfield = ARGV[1]
local cooldown = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local window = ARGV[7]
local n = (#ARGV - 7) / 7

local reply = {tonumber(epoch), now}
local recs = {}
local first = nil
for i = 0, n - 1 do
  local a = 8 + 7 * i
  local cooldown_key = KEYS[6 + 3 * i]
  local rate_key = KEYS[7 + 3 * i]
  local idem_key = KEYS[8 + 3 * i]
  local keyed = ARGV[a + 6] == '1'
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
  else
    local code, value = 0, 0
    -- nil: the rate key is left as it is.
    local tat = nil
    if ARGV[a + 5] ~= '1' then
      -- Rule 1, the cooldown.
      if cooldown > 0 then
        local last = redis.call('GET', cooldown_key)
        if last and now < tonumber(last) + cooldown then
          code, value = 1, tonumber(last) + cooldown
        end
      end
      -- Rule 2, GCRA: the theoretical arrival time may run ahead of now by at most the
      -- tolerance.
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
      redis.call('BITFIELD', KEYS[1], 'SET', bitfield, '#' .. ARGV[a], ARGV[a + 1])
      if tat then
        redis.call('SET', rate_key, string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000) + 1)
      end
      if cooldown > 0 then
        redis.call('SET', cooldown_key, now_s, 'PX', cooldown)
      end
      local next_at = now + cooldown
      if keyed then
        redis.call('SET', idem_key, string.format('%d %s %.0f', seq, now_s, next_at), 'PX', window)
      end
      first = first or seq
      recs[#recs + 1] = rec
      reply[#reply + 1] = 0
      reply[#reply + 1] = seq
      reply[#reply + 1] = now
      reply[#reply + 1] = next_at
    else
      reply[#reply + 1] = code
      reply[#reply + 1] = value
      reply[#reply + 1] = 0
      reply[#reply + 1] = 0
    end
  end
end

if first then
  redis.call('SET', KEYS[2], string.format('%d', seq))
  redis.call('SET', KEYS[4], now_s)
  redis.call('PUBLISH', ARGV[6], 'P ' .. epoch .. ' ' .. string.format('%d', first) .. ' ' .. table.concat(recs, ';'))
end
return reply
