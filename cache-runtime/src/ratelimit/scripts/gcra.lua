-- GCRA (generic cell rate algorithm), one atomic decision on the server clock.
-- KEYS[1]  the subject's key; holds the theoretical arrival time (TAT) in microseconds
-- ARGV[1]  emission interval in microseconds (period / count, may be fractional)
-- ARGV[2]  burst: how many requests may arrive at once
-- ARGV[3]  n: how many requests this call asks for
-- ARGV[4]  "1" to record the request when allowed, "0" to only look (peek)
-- Returns {allowed, limit, remaining, retry_after_us, reset_after_us}.
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local commit = ARGV[4] == '1'

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', key)) or now
if tat < now then tat = now end

local capacity = interval * burst
local new_tat = tat + n * interval
local allow_at = new_tat - capacity
local allowed, retry_after, state
if allow_at <= now then
  allowed, retry_after, state = 1, 0, new_tat
  if commit and n > 0 then
    redis.call('SET', key, string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
  end
else
  allowed, retry_after, state = 0, allow_at - now, tat
end
if not commit then state = tat end
local remaining = math.floor((capacity - (state - now)) / interval + 1e-6)
if remaining < 0 then remaining = 0 end
return {allowed, burst, remaining, math.ceil(retry_after), math.ceil(state - now)}
