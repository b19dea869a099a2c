-- Fixed window: INCRBY and PEXPIRE in one atomic step. The window starts at the
-- subject's first request and lasts ARGV[2] ms on the server clock (PEXPIRE).
-- KEYS[1]  the subject's key; holds the count of the current window
-- ARGV[1]  limit per window
-- ARGV[2]  window length in milliseconds
-- ARGV[3]  n: how many requests this call asks for
-- ARGV[4]  "1" to record the request when allowed, "0" to only look (peek)
-- Returns {allowed, limit, remaining, retry_after_us, reset_after_us}.
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local commit = ARGV[4] == '1'

local pttl = redis.call('PTTL', key)
local count = 0
local ttl = window
if pttl ~= -2 then
  count = tonumber(redis.call('GET', key)) or 0
  if pttl >= 0 then ttl = pttl end
end
if count + n <= limit then
  if commit and n > 0 then
    count = redis.call('INCRBY', key, n)
    -- A new key, or one that lost its expiry: (re)start the window.
    if pttl < 0 then redis.call('PEXPIRE', key, window) end
  end
  return {1, limit, math.max(0, limit - count), 0, ttl * 1000}
end
return {0, limit, math.max(0, limit - count), ttl * 1000, ttl * 1000}
