-- Sliding window log: one sorted-set member per request, scored by its server
-- time in microseconds. Exact: never more than `limit` requests in any window.
-- KEYS[1]  the subject's key (a sorted set)
-- ARGV[1]  limit per window
-- ARGV[2]  window length in microseconds
-- ARGV[3]  n: how many requests this call asks for
-- ARGV[4]  "1" to record the request when allowed, "0" to only look (peek)
-- Returns {allowed, limit, remaining, retry_after_us, reset_after_us}.
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local commit = ARGV[4] == '1'

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - window))
local count = redis.call('ZCARD', key)

local allowed, retry_after = 1, 0
if count + n <= limit then
  if commit and n > 0 then
    local score = string.format('%d', now)
    local args = {}
    for i = 1, n do
      args[#args + 1] = score
      args[#args + 1] = score .. ':' .. (count + i)
      if #args >= 1000 or i == n then
        redis.call('ZADD', key, unpack(args))
        args = {}
      end
    end
    redis.call('PEXPIRE', key, math.ceil(window / 1000))
    count = count + n
  end
else
  -- Wait until enough of the oldest requests leave the window.
  allowed = 0
  local oldest = redis.call('ZRANGE', key, count + n - limit - 1, count + n - limit - 1, 'WITHSCORES')
  retry_after = tonumber(oldest[2]) + window - now
end
local reset_after = 0
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if newest[2] then reset_after = tonumber(newest[2]) + window - now end
return {allowed, limit, math.max(0, limit - count), math.max(0, retry_after), math.max(0, reset_after)}
