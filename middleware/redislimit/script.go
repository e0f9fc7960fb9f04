package redislimit

import "github.com/redis/go-redis/v9"

// formatVersion is the version of the bucket hashes this package writes (field "v").
// A bucket written by a newer version is refused, not misread.
const formatVersion = 1

// takeScript refills a tenant's token bucket by Redis's clock and grants up to the
// tokens asked for.
//
//	KEYS[1]  the tenant's bucket: a hash of tokens (a float), ts (ms) and v (format)
//	ARGV[1]  rate, tokens per second (> 0)
//	ARGV[2]  burst, the bucket's size (>= 1)
//	ARGV[3]  tokens wanted (>= 1)
//	ARGV[4]  the caller's format version
//
// It returns the tokens granted, or an error reply starting with NEWERFORMAT when the
// bucket was written by a newer format (HMGET's WRONGTYPE when the key is not a hash).
//
// A token bucket rather than GCRA or a sliding-window counter: GCRA admits exactly
// what this bucket admits for the same rate and burst (it keeps the bucket as one
// theoretical arrival time instead of a token count), but a lease takes many tokens
// at once, and "grant up to want of what is there" is one subtraction on a count. A
// sliding-window counter only approximates the rate (it weights the previous window's
// count) and has no burst to size a lease against.
var takeScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'v')
local ver = tonumber(ARGV[4])
if v[3] and tonumber(v[3]) and tonumber(v[3]) > ver then
  return redis.error_reply('NEWERFORMAT bucket format ' .. v[3] .. ' is newer than ' .. ver)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, ts = tonumber(v[1]), tonumber(v[2])
if tokens == nil or ts == nil then
  tokens, ts = burst, now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
local grant = math.min(want, math.floor(tokens))
if grant < 0 then grant = 0 end
tokens = tokens - grant
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts), 'v', ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
return grant
`)

// heartbeatScript records the replica as live and counts the live replicas.
//
//	KEYS[1]  the sorted set of replicas, scored by their last heartbeat (ms, Redis time)
//	ARGV[1]  this replica's identity
//	ARGV[2]  how long a replica stays live after its heartbeat (ms)
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
`)
