-- Installs a state rebuilt from PostgreSQL, if the caller still holds the rebuild lock.
-- The tiles were written before (they are many keys, written in pages while the seq and
-- epoch are missing, so nothing can place meanwhile); this makes the state whole again.
-- The stream is dropped: its entries belong to the state being replaced.
--
-- KEYS[1] rebuild lock   KEYS[2] seq   KEYS[3] epoch   KEYS[4] clock   KEYS[5] stream
-- KEYS[6] dims
-- ARGV[1] lock token   ARGV[2] seq   ARGV[3] epoch   ARGV[4] clock ms   ARGV[5] channel
-- ARGV[6] width   ARGV[7] height
--
-- Returns 1 when installed, 0 when the lock was lost (nothing changed).

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[5])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SET', KEYS[4], ARGV[4])
-- Never smaller than a size an instance grew Redis to meanwhile.
local w, h = tonumber(ARGV[6]), tonumber(ARGV[7])
local cur = redis.call('GET', KEYS[6])
if cur then
  local cw, ch = string.match(cur, '^(%d+) (%d+)$')
  if cw then
    w = math.max(w, tonumber(cw))
    h = math.max(h, tonumber(ch))
  end
end
redis.call('SET', KEYS[6], string.format('%d %d', w, h))
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[5], 'R ' .. ARGV[3] .. ' ' .. ARGV[2])
return 1
