import { RedisScript } from '../redis-client/script-client.js';
import type { AlgorithmKind } from './types.js';

/*
 * One atomic Lua script per algorithm, the twin of the TypeScript kernels in ./algorithms (same
 * arithmetic in the same order, so both give the same answers; a differential test checks it).
 * Each script takes a batch: N entries, each with its keys and an operation, and returns four
 * integers per entry. Time is the Redis server's (`TIME`), so client clocks do not matter.
 *
 * ARGV: limit, intervalMs, capacity, now ('' = server time; tests pass a number), then the
 *       entries: 'u', op, amount (all alike) or 'e' and per entry op, amount, where op is
 *       c = consume, a = adjust (refund > 0 / penalty < 0), p = peek.
 * KEYS: per entry, `keysPerEntry` keys (1, or 2 for the sliding log: the log and its id counter).
 * Reply: per entry allowed (0/1), remaining, retryAfter (µs, -1 = never), resetAfter (µs).
 * State is kept as packed doubles (`struct.pack`: exact and cheap) and written back with a TTL that ends when it becomes equivalent to a fresh key
 * (PEXPIRE for lazy cleanup: no key outlives its usefulness, nothing sweeps).
 */

const PREAMBLE = `
local limit = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local EPS = 1e-9
-- Entries: ARGV[5] = 'u' (uniform: every entry is op ARGV[6] with amount ARGV[7], the common case
-- of a batch of plain consumes, which saves two arguments per decision) or 'e' (each entry i has
-- its op at ARGV[4 + 2i] and its amount at ARGV[5 + 2i]).
local uniform = ARGV[5] == 'u'
local u_op, u_amount = ARGV[6], tonumber(ARGV[7])
local function entry(i)
  if uniform then return u_op, u_amount end
  return ARGV[4 + 2 * i], tonumber(ARGV[5 + 2 * i])
end
local function wait_us(ms)
  if ms <= 0 then return 0 end
  return math.ceil(ms * 1000 - 1e-6)
end
local function whole(units)
  if units <= 0 then return 0 end
  return math.floor(units + EPS)
end
local function ttl(ms)
  return math.max(1, math.ceil(ms) + 1)
end
local function num(x)
  return string.format('%.17g', x)
end
-- State is stored as packed little-endian doubles: exact, and far cheaper than formatting text.
local function load(key, fmt)
  local raw = redis.call('GET', key)
  if raw then return struct.unpack(fmt, raw) end
  return nil
end
local out = {}
`;

const TOKEN_BUCKET = `
for i = 1, #KEYS do
  local key = KEYS[i]
  local op, cost = entry(i)
  local tokens, updated = load(key, '<dd')
  if not tokens then tokens, updated = capacity, now end
  local elapsed = now - updated
  if elapsed > 0 then
    tokens = math.min(capacity, tokens + (elapsed * limit) / interval)
    updated = now
  end
  local allowed, retry = 0, 0
  if op == 'a' then
    tokens = math.min(capacity, math.max(0, tokens + cost))
    allowed = 1
  elseif cost <= tokens + EPS then
    allowed = 1
    tokens = math.max(0, tokens - cost) -- a peek computes the same answer and does not store it
  elseif cost > capacity + EPS then
    retry = -1
  else
    retry = wait_us(((cost - tokens) * interval) / limit)
  end
  local reset_ms = ((capacity - tokens) * interval) / limit
  if op ~= 'p' then
    if tokens >= capacity - EPS then
      redis.call('DEL', key)
    else
      redis.call('SET', key, struct.pack('<dd', tokens, updated), 'PX', ttl(reset_ms))
    end
  end
  out[#out + 1] = allowed
  out[#out + 1] = whole(tokens)
  out[#out + 1] = retry
  out[#out + 1] = wait_us(reset_ms)
end
return out
`;

const GCRA = `
local t = interval / limit
local tau = capacity * t
for i = 1, #KEYS do
  local key = KEYS[i]
  local op, cost = entry(i)
  local tat = load(key, '<d') or now
  tat = math.max(tat, now)
  local allowed, retry, remaining, reset_ms = 0, 0, 0, 0
  if op == 'a' then
    tat = math.min(now + tau, math.max(now, tat - cost * t))
    allowed = 1
    remaining = whole((tau - (tat - now)) / t)
    reset_ms = tat - now
  else
    local nxt = tat + cost * t
    if nxt - now <= tau + EPS * t then
      allowed = 1
      tat = nxt
      remaining = whole((tau - (nxt - now)) / t)
      reset_ms = nxt - now
    else
      if cost > capacity + EPS then retry = -1 else retry = wait_us(nxt - now - tau) end
      remaining = whole((tau - (tat - now)) / t)
      reset_ms = tat - now
    end
  end
  if op ~= 'p' then
    if tat <= now then
      redis.call('DEL', key)
    else
      redis.call('SET', key, struct.pack('<d', tat), 'PX', ttl(tat - now))
    end
  end
  out[#out + 1] = allowed
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = wait_us(reset_ms)
end
return out
`;

const FIXED_WINDOW = `
for i = 1, #KEYS do
  local key = KEYS[i]
  local op, cost = entry(i)
  local start = math.floor(now / interval) * interval
  local count = 0
  local stored, stored_count = load(key, '<dd')
  if stored == start then count = stored_count end
  local finish = start + interval
  local allowed, retry = 0, 0
  if op == 'a' then
    count = math.min(limit, math.max(0, count - cost))
    allowed = 1
  elseif count + cost <= limit + EPS then
    allowed = 1
    count = count + cost
  elseif cost > limit + EPS then
    retry = -1
  else
    retry = wait_us(finish - now)
  end
  if op ~= 'p' then
    if count <= 0 then
      redis.call('DEL', key)
    else
      redis.call('SET', key, struct.pack('<dd', start, count), 'PX', ttl(finish - now))
    end
  end
  local remaining = whole(limit - count)
  local reset_us = 0
  if count > 0 then reset_us = wait_us(finish - now) end
  out[#out + 1] = allowed
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = reset_us
end
return out
`;

const SLIDING_WINDOW_COUNTER = `
for i = 1, #KEYS do
  local key = KEYS[i]
  local op, cost = entry(i)
  local start = math.floor(now / interval) * interval
  local curr, prev = 0, 0
  local old, old_curr, old_prev = load(key, '<ddd')
  if old == start then
    curr, prev = old_curr, old_prev
  elseif old and start - old == interval then
    prev = old_curr
  end
  local elapsed = math.max(0, now - start)
  local weight = (interval - elapsed) / interval
  local estimate = prev * weight + curr
  local allowed, retry, remaining = 0, 0, 0
  if op == 'a' then
    curr = math.min(limit, math.max(0, curr - cost))
    allowed = 1
    remaining = whole(limit - (prev * weight + curr))
  elseif estimate + cost <= limit + EPS then
    allowed = 1
    curr = curr + cost
    remaining = whole(limit - (estimate + cost))
  else
    remaining = whole(limit - estimate)
    if cost > limit + EPS then
      retry = -1
    else
      local room = limit - cost
      local at
      if curr <= room + EPS then
        at = start + interval - ((room - curr) * interval) / prev
      else
        at = start + interval + math.max(0, interval - (room * interval) / curr)
      end
      retry = wait_us(at - now)
    end
  end
  local reset_ms = 0
  if curr > 0 then reset_ms = start + 2 * interval - now elseif prev > 0 then reset_ms = start + interval - now end
  if op ~= 'p' then
    if reset_ms <= 0 then
      redis.call('DEL', key)
    else
      redis.call('SET', key, struct.pack('<ddd', start, curr, prev), 'PX', ttl(reset_ms))
    end
  end
  out[#out + 1] = allowed
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = reset_ms > 0 and wait_us(reset_ms) or 0
end
return out
`;

// The log is a sorted set of unit entries scored by time; a counter key makes members unique.
const SLIDING_WINDOW_LOG = `
for i = 1, #KEYS / 2 do
  local key = KEYS[2 * i - 1]
  local seq = KEYS[2 * i]
  local op, cost = entry(i)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', num(now - interval))
  local count = redis.call('ZCARD', key)
  local function push(units)
    local last = redis.call('INCRBY', seq, units)
    local args = {}
    for j = 1, units do
      args[#args + 1] = num(now)
      args[#args + 1] = tostring(last - units + j)
    end
    redis.call('ZADD', key, unpack(args))
  end
  local allowed, retry = 0, 0
  if op == 'a' then
    allowed = 1
    if cost > 0 then
      if count > 0 then redis.call('ZREMRANGEBYRANK', key, -math.min(cost, count), -1) end
      count = math.max(0, count - cost)
    elseif cost < 0 then
      push(-cost)
      count = count - cost
      if count > limit then
        redis.call('ZREMRANGEBYRANK', key, 0, count - limit - 1)
        count = limit
      end
    end
  elseif count + cost <= limit then
    allowed = 1
    if op == 'c' and cost > 0 then
      push(cost)
      count = count + cost
    end
  elseif cost > limit then
    retry = -1
  else
    local k = count + cost - limit - 1
    local ts = tonumber(redis.call('ZRANGE', key, k, k, 'WITHSCORES')[2])
    retry = wait_us(ts + interval - now)
  end
  local reset_us = 0
  if op == 'p' and allowed == 1 and cost > 0 then
    count = count + cost -- as if admitted now: the newest entry would be now
    reset_us = wait_us(interval)
  elseif count > 0 then
    local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
    reset_us = wait_us(newest + interval - now)
    redis.call('PEXPIRE', key, ttl(newest + interval - now))
    redis.call('PEXPIRE', seq, ttl(newest + interval - now))
  elseif op ~= 'p' then
    redis.call('DEL', key, seq)
  end
  local remaining = limit - count
  out[#out + 1] = allowed
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = reset_us
end
return out
`;

export const RATE_LIMIT_SCRIPTS: Readonly<Record<AlgorithmKind, RedisScript>> = {
  'token-bucket': new RedisScript(PREAMBLE + TOKEN_BUCKET),
  gcra: new RedisScript(PREAMBLE + GCRA),
  'fixed-window': new RedisScript(PREAMBLE + FIXED_WINDOW),
  'sliding-window-counter': new RedisScript(PREAMBLE + SLIDING_WINDOW_COUNTER),
  'sliding-window-log': new RedisScript(PREAMBLE + SLIDING_WINDOW_LOG),
};

/** Keys per entry: the sliding log keeps its id counter beside the log, in the same hash slot. */
export function keysPerEntry(algorithm: AlgorithmKind): number {
  return algorithm === 'sliding-window-log' ? 2 : 1;
}

/**
 * The hybrid limiter's reconcile script (token-bucket semantics): per key, refill the global
 * bucket, charge what this instance admitted locally since its last sync, and return the new
 * balance. The balance may go below zero (down to −capacity): that is overshoot already
 * admitted, recorded as debt so the fleet repays it from the refill instead of forgetting it.
 * It also records which instances sync the key (a small hash of instance id → last sync time,
 * in the same hash slot) and returns how many synced within the last 3 sync intervals: the
 * instances sharing the key now, each of which takes that fraction of the balance.
 *
 * KEYS: per key, the balance key and its sharers hash. ARGV: limit, intervalMs, capacity, now
 * ('' = server time), syncIntervalMs, instance id, then per key the amount charged.
 * Reply: per key the balance (string, fractional) and the sharer count.
 */
export const HYBRID_SYNC_SCRIPT = new RedisScript(PREAMBLE + `
local window = tonumber(ARGV[5])
local instance = ARGV[6]
local horizon = now - 3 * window
for i = 1, #KEYS / 2 do
  local key = KEYS[2 * i - 1]
  local members = KEYS[2 * i]
  local used = tonumber(ARGV[6 + i])
  local tokens, updated = load(key, '<dd')
  if not tokens then tokens, updated = capacity, now end
  local elapsed = now - updated
  if elapsed > 0 then
    tokens = math.min(capacity, tokens + (elapsed * limit) / interval)
    updated = now
  end
  tokens = math.max(-capacity, tokens - used)
  redis.call('HSET', members, instance, num(now))
  local seen = redis.call('HGETALL', members)
  local sharers = 0
  for j = 1, #seen, 2 do
    if tonumber(seen[j + 1]) > horizon then sharers = sharers + 1 else redis.call('HDEL', members, seen[j]) end
  end
  local keep = math.max(((capacity - tokens) * interval) / limit, 3 * window)
  redis.call('SET', key, struct.pack('<dd', tokens, updated), 'PX', ttl(keep))
  redis.call('PEXPIRE', members, ttl(3 * window))
  out[#out + 1] = num(tokens)
  out[#out + 1] = math.max(1, sharers)
end
return out
`);

/** Forgets keys (any algorithm). */
export const DELETE_SCRIPT = new RedisScript(`return redis.call('DEL', unpack(KEYS))`);
