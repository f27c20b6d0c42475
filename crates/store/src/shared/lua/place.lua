-- One placement, all or nothing: the checks run first and return without writing
-- anything; after them, every write happens, in an order where the only command that
-- could still fail (XADD, if the stream were ahead of the seq) comes first.
--
-- KEYS[1] board   KEYS[2] seq   KEYS[3] epoch   KEYS[4] clock   KEYS[5] stream
-- KEYS[6] the user's cooldown key                KEYS[7] the address's rate key
-- ARGV[1] bitfield type (u4 or u8)   ARGV[2] pixel index   ARGV[3] color
-- ARGV[4] x   ARGV[5] y   ARGV[6] user (signed decimal)   ARGV[7] cooldown ms
-- ARGV[8] rate period µs (0: no limit)   ARGV[9] rate burst tolerance µs
-- ARGV[10] "1" to bypass the cooldown and the rate limit   ARGV[11] stream capacity
-- ARGV[12] channel
--
-- Returns {0, seq, at_ms, next_at_ms, epoch} when accepted, {1, next_at_ms} for a
-- cooldown, {2, retry_after_ms} for the rate limit, {3} when the state is missing
-- (Redis restarted empty or was flushed): then nothing may be placed until it is rebuilt
-- from PostgreSQL, or the seq would start again from 0.

local epoch = redis.call('GET', KEYS[3])
local seq = redis.call('GET', KEYS[2])
if not epoch or not seq or redis.call('EXISTS', KEYS[1]) == 0 then
  return {3}
end

-- Redis's clock, so that every instance agrees; never behind the last placement.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local clock = tonumber(redis.call('GET', KEYS[4]) or '0')
if now < clock then
  now = clock
end

local cooldown = tonumber(ARGV[7])
local tat = nil
if ARGV[10] ~= '1' then
  local period = tonumber(ARGV[8])
  if period > 0 then
    -- GCRA: the theoretical arrival time may run ahead of now by at most the tolerance.
    tat = tonumber(redis.call('GET', KEYS[7]) or '0')
    if tat < now_us then
      tat = now_us
    end
    local wait = tat - tonumber(ARGV[9]) - now_us
    if wait > 0 then
      return {2, math.max(1, math.ceil(wait / 1000))}
    end
    tat = tat + period
  end
  if cooldown > 0 then
    local last = redis.call('GET', KEYS[6])
    if last and now < tonumber(last) + cooldown then
      return {1, tonumber(last) + cooldown}
    end
  end
end

seq = tonumber(seq) + 1
local rec = ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. ARGV[3] .. ' ' .. ARGV[6] .. ' ' .. string.format('%.0f', now)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[11], string.format('%d-0', seq), 'p', rec)
redis.call('BITFIELD', KEYS[1], 'SET', ARGV[1], '#' .. ARGV[2], ARGV[3])
redis.call('SET', KEYS[2], string.format('%d', seq))
redis.call('SET', KEYS[4], string.format('%.0f', now))
if tat then
  redis.call('SET', KEYS[7], string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000) + 1)
end
if cooldown > 0 then
  redis.call('SET', KEYS[6], string.format('%.0f', now), 'PX', cooldown)
end
redis.call('PUBLISH', ARGV[12], 'P ' .. epoch .. ' ' .. string.format('%d', seq) .. ' ' .. rec)
return {0, seq, now, now + cooldown, tonumber(epoch)}
