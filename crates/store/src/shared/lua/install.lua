-- Installs a state rebuilt from PostgreSQL, if the caller still holds the rebuild lock.
-- The stream is dropped: its entries belong to the state being replaced.
--
-- KEYS[1] rebuild lock   KEYS[2] board   KEYS[3] seq   KEYS[4] epoch   KEYS[5] clock
-- KEYS[6] stream
-- ARGV[1] lock token   ARGV[2] board bytes   ARGV[3] seq   ARGV[4] epoch   ARGV[5] clock ms
-- ARGV[6] channel
--
-- Returns 1 when installed, 0 when the lock was lost (nothing changed).

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[6])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('SET', KEYS[5], ARGV[5])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[6], 'R ' .. ARGV[4] .. ' ' .. ARGV[3])
return 1
