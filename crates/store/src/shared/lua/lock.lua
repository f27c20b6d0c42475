-- Extends (ARGV[2] > 0, by that many ms) or releases (ARGV[2] = 0) the lock KEYS[1] if it
-- is still held with token ARGV[1]. Returns 1 if it was held, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
