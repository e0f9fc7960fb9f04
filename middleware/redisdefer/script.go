package redisdefer

import "github.com/redis/go-redis/v9"

// The scripts' keys, in order: KEYS[1] the pending list, KEYS[2] the running set
// (score: claim time, ms by Redis's clock), KEYS[3] the expiry set (score: expiry,
// ms by the deferrer's clock), KEYS[4] the meta hash (count, bytes), and, for Put
// and Complete, KEYS[5] the entry's hash. An entry's fields: state (0 pending,
// 1 running, 2 done), tenant, req (while pending, or running under a RunTimeout),
// res and exp (once done), size (what it counts against MaxBytes), kept (its size
// without the request's body and headers) and v (the format).

// Put's answers.
const (
	putOK        = 0
	putFull      = 1
	putDuplicate = 2
)

// putScript stores a new pending request.
//
//	ARGV[1] the request (JSON)  ARGV[2] tenant  ARGV[3] size  ARGV[4] kept size
//	ARGV[5] max requests        ARGV[6] max bytes  ARGV[7] format  ARGV[8] id
var putScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[5]) == 1 then return 2 end
local m = redis.call('HMGET', KEYS[4], 'count', 'bytes')
local count, bytes, size = tonumber(m[1]) or 0, tonumber(m[2]) or 0, tonumber(ARGV[3])
if count >= tonumber(ARGV[5]) or bytes + size > tonumber(ARGV[6]) then return 1 end
redis.call('HSET', KEYS[5], 'state', 0, 'tenant', ARGV[2], 'req', ARGV[1], 'size', size, 'kept', ARGV[4], 'v', ARGV[7])
redis.call('RPUSH', KEYS[1], ARGV[8])
redis.call('HINCRBY', KEYS[4], 'count', 1)
redis.call('HINCRBY', KEYS[4], 'bytes', size)
return 0
`)

// claimScript takes the oldest pending request, marks it running and returns it (nil
// when none is pending). Ids whose entry is gone or not pending are dropped from the
// list. Without a RunTimeout (ARGV[3] "0") the request leaves the entry, and the
// entry counts only its kept size; with one, the request stays for a second offer.
//
//	ARGV[1] the entries' key prefix  ARGV[2] format  ARGV[3] keep the request (0/1)
var claimScript = redis.NewScript(`
while true do
  local id = redis.call('LPOP', KEYS[1])
  if not id then return false end
  local key = ARGV[1] .. id
  local e = redis.call('HMGET', key, 'state', 'req', 'size', 'kept', 'v')
  if e[1] == '0' and e[2] then
    if tonumber(e[5]) and tonumber(e[5]) > tonumber(ARGV[2]) then
      redis.call('LPUSH', KEYS[1], id)
      return redis.error_reply('NEWERFORMAT entry format ' .. e[5] .. ' is newer than ' .. ARGV[2])
    end
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('HSET', key, 'state', 1)
    redis.call('ZADD', KEYS[2], now, id)
    if ARGV[3] == '0' then
      redis.call('HDEL', key, 'req')
      redis.call('HSET', key, 'size', e[4])
      redis.call('HINCRBY', KEYS[4], 'bytes', tonumber(e[4]) - tonumber(e[3]))
    end
    return e[2]
  end
end
`)

// completeScript records a running request's result; 0 when the id is not running.
//
//	ARGV[1] the result (JSON)  ARGV[2] its size  ARGV[3] expiry (ms)  ARGV[4] id
var completeScript = redis.NewScript(`
local e = redis.call('HMGET', KEYS[5], 'state', 'size', 'kept')
if e[1] ~= '1' then return 0 end
local size, new = tonumber(e[2]), tonumber(e[3]) + tonumber(ARGV[2])
redis.call('HSET', KEYS[5], 'state', 2, 'res', ARGV[1], 'exp', ARGV[3], 'size', new)
redis.call('HDEL', KEYS[5], 'req')
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[4], 'bytes', new - size)
return 1
`)

// sweepScript removes up to a batch of results expired at or before now, then, with
// a run timeout, offers again (at the front of the pending list) the requests running
// for longer. It returns {removed, offered again}.
//
//	ARGV[1] the entries' key prefix  ARGV[2] now (ms)  ARGV[3] run timeout (ms, 0 for
//	none)  ARGV[4] batch
var sweepScript = redis.NewScript(`
local removed, again, batch = 0, 0, tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, batch)
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local size = tonumber(redis.call('HGET', key, 'size')) or 0
  if redis.call('DEL', key) == 1 then
    redis.call('HINCRBY', KEYS[4], 'count', -1)
    redis.call('HINCRBY', KEYS[4], 'bytes', -size)
  end
  redis.call('ZREM', KEYS[3], id)
  removed = removed + 1
end
local timeout = tonumber(ARGV[3])
if timeout > 0 and removed < batch then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - timeout, 'LIMIT', 0, batch - removed)
  for _, id in ipairs(stale) do
    local key = ARGV[1] .. id
    redis.call('ZREM', KEYS[2], id)
    if redis.call('HGET', key, 'state') == '1' and redis.call('HEXISTS', key, 'req') == 1 then
      redis.call('HSET', key, 'state', 0)
      redis.call('LPUSH', KEYS[1], id)
      again = again + 1
    end
  end
end
return {removed, again}
`)
