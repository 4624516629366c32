import { createHash } from 'node:crypto';
import { InvalidOptionsError } from '../../core/errors.js';
import { RedisScript, clusterKey, toRedisScriptClient, type RedisScriptClient } from '../../redis-client/script-client.js';
import type {
  ClaimInput, ClaimResult, CompleteInput, IdempotencyStore, OwnerInput, RenewInput, StepInput, StoredRecord,
} from '../types.js';

/**
 * One round trip per operation. A claim is first tried as one plain command,
 * `SET key <in-progress header> NX PX <record ttl> GET` (Redis >= 7.0): it creates the record
 * (a new claim) or returns the existing one unchanged, and a completed record (replay) or a
 * fingerprint mismatch is decided from that value alone. Only when it returns an in-progress
 * record (busy, or a takeover) does the claim run the CLAIM script, which decides on the server
 * clock. Every write that needs ownership (complete, release, renew, steps, takeover) is a Lua
 * script fenced by the owner token. Lease times come from the Redis server, so worker clocks
 * never decide whether a lease has expired, and the lease expiry stored in the record is the
 * only one (the key's own TTL is the record TTL, always at least the lease). The completion
 * time, which is only ever reported, is the completing worker's estimate of the server clock.
 * A first request costs 2 round trips (claim, complete), a replay 1, a busy claim 2. The
 * completion is COMPLETE_UNCHANGED when the record is still as the claim wrote it (the claim's
 * `version`), else COMPLETE (a renewed or stepped lease goes straight there; a stale version
 * costs one more round trip).
 * Requires Redis >= 6.0; before 7.0 (or with a custom client without `setIfAbsentGet`) every
 * claim is the CLAIM script.
 *
 * Layout (both keys share the `{record id}` hash tag, so a record lives in one Cluster slot):
 * - `<prefix>:{<id>}` — a string: a header of six newline-terminated fields
 *   `state fence time steps owner fingerprint` (state p = in progress, time = lease expiry; state
 *   c = completed, time = completion time; steps 0/1), followed by the response when completed.
 *   A record created by the plain SET has no clock reading, so its lease expiry is written
 *   relative to the key's own expiry (also server time): `~<offset>` means the lease ends
 *   `offset` ms before the key expires (offset = record ttl - lease). Every later header write
 *   either keeps the TTL (KEEPTTL) or writes an absolute time.
 *   A string, not a hash: creating and completing a record are one GET + one SET each, which
 *   measured faster per first request than HMGET/HSET/PEXPIRE (docs/benchmarks.md).
 * - `<prefix>:{<id>}:steps` — a hash of saved step results, only for multi-step operations.
 *
 * Durability is Redis's: with the default snapshotting a crash or restart can lose recent
 * records (a retry then runs again). Run Redis with `appendonly yes` and
 * `appendfsync always` (or `everysec` and accept up to a second) where that matters.
 *
 * The store is not `cancellable`: a command cannot be taken back once sent, and on a
 * multiplexed connection an abandoned one holds no connection of its own, so the engine passes
 * it no signal. A call the engine gave up on may therefore still run; a claim that lands that
 * way is released by the engine as soon as its reply arrives (fenced by its owner token), and
 * any other late write is fenced like every write.
 */

/** Shared prelude: server time (read only where a decision needs it) and the header parser. */
const PRELUDE = `local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function parse(v)
  local f = {}
  local pos = 1
  for i = 1, 6 do
    local nl = string.find(v, '\\n', pos, true)
    f[i] = string.sub(v, pos, nl - 1)
    pos = nl + 1
  end
  return f, pos
end
-- The lease expiry of an in-progress header: absolute, or '~offset' before the key's expiry.
local function leaseEnd(t, now)
  if string.sub(t, 1, 1) ~= '~' then return tonumber(t) end
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then return 0 end
  return now + ttl - tonumber(string.sub(t, 2))
end
local function header(state, fence, time, steps, owner, fp)
  return state .. '\\n' .. fence .. '\\n' .. time .. '\\n' .. steps .. '\\n' .. owner .. '\\n' .. fp .. '\\n'
end
`;

/** Reply: {1, fence, leaseExpiresAt, takeover, stepName, stepValue, ...} | {2, retryAfterMs} | {3, response, completedAt} | {4} */
const CLAIM = new RedisScript(`${PRELUDE}
local leaseMs = tonumber(ARGV[3])
local v = redis.call('GET', KEYS[1])
if not v then
  local le = clock() + leaseMs
  redis.call('SET', KEYS[1], header('p', 1, le, 0, ARGV[2], ARGV[1]), 'PX', math.max(tonumber(ARGV[4]), leaseMs))
  return {1, 1, le, 0}
end
local f, pos = parse(v)
if f[6] ~= ARGV[1] then return {4} end
if f[1] == 'c' then return {3, string.sub(v, pos), tonumber(f[3])} end
local now = clock()
local le = leaseEnd(f[3], now)
if le > now then return {2, le - now} end
local fence = tonumber(f[2]) + 1
le = now + leaseMs
redis.call('SET', KEYS[1], header('p', fence, le, f[4], ARGV[2], f[6]), 'KEEPTTL')
local out = {1, fence, le, 1}
if redis.call('PTTL', KEYS[1]) < leaseMs then
  redis.call('PEXPIRE', KEYS[1], leaseMs)
  if f[4] ~= '0' then redis.call('PEXPIRE', KEYS[2], leaseMs) end
end
if f[4] ~= '0' then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all do out[#out + 1] = all[i] end
end
return out`);

/**
 * Completing twice with the same owner is a success (a retried completion whose reply was lost).
 * Reply: 0 = not the owner, 1 = completed (now or already).
 * The hot write of every first request, so it does the least a fenced write can: one GET, the
 * owner compared by position (no parse into fields), one SET. The completion time comes from
 * the caller (ARGV[4]) rather than `TIME`: it is only reported (the replay's original date),
 * never compared, and one redis.call fewer is measurably less Redis CPU per request (docs/benchmarks.md).
 */
const COMPLETE = new RedisScript(`local v = redis.call('GET', KEYS[1])
if not v or ARGV[1] == '' then return 0 end
local p1 = string.find(v, '\\n', 1, true)
local p2 = string.find(v, '\\n', p1 + 1, true)
local p3 = string.find(v, '\\n', p2 + 1, true)
local p4 = string.find(v, '\\n', p3 + 1, true)
local p5 = string.find(v, '\\n', p4 + 1, true)
local p6 = string.find(v, '\\n', p5 + 1, true)
if string.sub(v, p4 + 1, p5 - 1) ~= ARGV[1] then return 0 end
if string.sub(v, 1, p1 - 1) == 'c' then return 1 end
redis.call('SET', KEYS[1], 'c\\n' .. string.sub(v, p1 + 1, p2) .. ARGV[4] .. string.sub(v, p3, p6) .. ARGV[2], 'PX', ARGV[3])
if string.sub(v, p3 + 1, p4 - 1) ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1`);

/**
 * The completion of a record that is still exactly as its claim wrote it (the claim's
 * `version`: no renewal, no steps since), with the completed record built by the worker: one
 * string comparison and one SET. Reply: 1 = completed, 0 = the record is something else now
 * (renewed, completed, taken over, gone): COMPLETE decides. `npm run bench -- redis-instructions`
 * counts a first request at 55,000 server instructions this way against 74,000 with COMPLETE:
 * Redis 7.0 charges for every script key, argument and string operation.
 */
const COMPLETE_UNCHANGED = new RedisScript(`if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`);

const RELEASE = new RedisScript(`${PRELUDE}
local v = redis.call('GET', KEYS[1])
if not v or ARGV[1] == '' then return 0 end
local f = parse(v)
if f[1] ~= 'p' or f[5] ~= ARGV[1] then return 0 end
if f[4] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], header('p', f[2], 0, f[4], '', f[6]), 'KEEPTTL')
end
return 1`);

const RENEW = new RedisScript(`${PRELUDE}
local v = redis.call('GET', KEYS[1])
if not v or ARGV[1] == '' then return 0 end
local f = parse(v)
if f[1] ~= 'p' or f[5] ~= ARGV[1] then return 0 end
local leaseMs = tonumber(ARGV[2])
redis.call('SET', KEYS[1], header('p', f[2], clock() + leaseMs, f[4], f[5], f[6]), 'KEEPTTL')
if redis.call('PTTL', KEYS[1]) < leaseMs then
  redis.call('PEXPIRE', KEYS[1], leaseMs)
  if f[4] ~= '0' then redis.call('PEXPIRE', KEYS[2], leaseMs) end
end
return 1`);

const SAVE_STEP = new RedisScript(`${PRELUDE}
local v = redis.call('GET', KEYS[1])
if not v or ARGV[1] == '' then return 0 end
local f = parse(v)
if f[1] ~= 'p' or f[5] ~= ARGV[1] then return 0 end
if f[4] == '0' then
  -- First step of this record: drop anything left under the steps key (it never outlives the
  -- record, but a hand-deleted record could leave one behind).
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], header('p', f[2], f[3], 1, f[5], f[6]), 'KEEPTTL')
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
return 1`);

/** Reply: {} | {header fields x6, response or '', expiresAt, stepName, stepValue, ...} */
const INSPECT = new RedisScript(`${PRELUDE}
local v = redis.call('GET', KEYS[1])
if not v then return {} end
local f, pos = parse(v)
local now = clock()
if f[1] == 'p' then f[3] = tostring(leaseEnd(f[3], now)) end
local out = {f[1], f[2], f[3], f[4], f[5], f[6], string.sub(v, pos), tostring(now + redis.call('PTTL', KEYS[1]))}
if f[4] ~= '0' then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all do out[#out + 1] = all[i] end
end
return out`);

/**
 * Header fields are newline-separated, so a fingerprint or owner token containing a newline (only
 * possible with a custom fingerprint or token function) is replaced by its hash: still the same
 * value every time, so comparisons keep working.
 */
function safe(value: string): string {
  return value.includes('\n') ? `sha256:${createHash('sha256').update(value).digest('base64url')}` : value;
}

/** A record header, as the scripts' `header()` writes it. */
function header(state: 'p' | 'c', fence: number | string, time: number | string, steps: '0' | '1', owner: string, fingerprint: string): string {
  return `${state}\n${fence}\n${time}\n${steps}\n${owner}\n${fingerprint}\n`;
}

/**
 * The six header fields of a stored value (`state fence time steps owner fingerprint`) and where
 * the response after them starts, as the scripts' `parse()` reads them; undefined if malformed.
 */
function parseHeader(value: string): { fields: string[]; end: number } | undefined {
  const fields: string[] = [];
  let end = 0;
  for (let i = 0; i < 6; i++) {
    const nl = value.indexOf('\n', end);
    if (nl < 0) return undefined;
    fields.push(value.slice(end, nl));
    end = nl + 1;
  }
  return { fields, end };
}

/**
 * The completed record for a claim `version` (an in-progress header without steps, owned by
 * `owner`), as COMPLETE would write it: state c, the completion time in place of the lease
 * expiry, the response after the header. Undefined for any other version.
 */
function completedRecord(version: string | undefined, owner: string, completedAt: number, response: string): string | undefined {
  const parsed = version === undefined ? undefined : parseHeader(version);
  if (parsed === undefined || parsed.end !== version!.length) return undefined;
  const [state, fence, , steps, claimant, fingerprint] = parsed.fields as [string, string, string, string, string, string];
  if (state !== 'p' || steps !== '0' || claimant !== owner) return undefined;
  return header('c', fence, completedAt, '0', owner, fingerprint) + response;
}

export interface RedisIdempotencyStoreOptions {
  /** An ioredis client or Cluster, a node-redis client, or a RedisScriptClient. Not closed by the store. */
  client: unknown;
  /** Key prefix. Default 'bulwark:idem'. Keys are `<prefix>:{<record id>}`. */
  prefix?: string;
}

export class RedisIdempotencyStore implements IdempotencyStore {
  readonly name = 'redis';
  readonly remote = true;
  readonly prefix: string;
  readonly #redis: RedisScriptClient;
  /** False once the server rejected `SET ... NX GET` (Redis < 7.0): claims use the CLAIM script only. */
  #plainClaim = true;
  /**
   * Server clock minus local clock, learned from server times in CLAIM replies. Only used to
   * report times the server did not read (`leaseExpiresAt` of a claim made by the plain SET, the
   * completion time); never to decide anything.
   */
  #skewMs = 0;

  constructor(options: RedisIdempotencyStoreOptions) {
    if (options?.client === undefined || options.client === null) throw new InvalidOptionsError('redisIdempotencyStore: options.client is required');
    try {
      this.#redis = toRedisScriptClient(options.client);
    } catch (error) {
      throw new InvalidOptionsError(`redisIdempotencyStore: ${(error as Error).message}`);
    }
    this.prefix = options.prefix ?? 'bulwark:idem';
    if (typeof this.prefix !== 'string' || /[{}]/.test(this.prefix)) throw new InvalidOptionsError('redisIdempotencyStore.prefix must be a string without braces');
  }

  /** The Redis key of a record (for operators: `GET <key>`); its steps are in `<key>:steps`. */
  keyOf(id: string): string {
    return clusterKey(this.prefix, id);
  }

  #keys(id: string): [string, string] {
    const key = clusterKey(this.prefix, id);
    return [key, `${key}:steps`];
  }

  async claim(input: ClaimInput): Promise<ClaimResult> {
    const fingerprint = safe(input.fingerprint);
    const owner = safe(input.owner);
    const leaseMs = Math.ceil(input.leaseMs);
    const ttlMs = Math.ceil(input.ttlMs);
    const keys = this.#keys(input.id);
    const setIfAbsentGet = this.#plainClaim ? this.#redis.setIfAbsentGet : undefined;
    if (setIfAbsentGet !== undefined) {
      const pxMs = Math.max(ttlMs, leaseMs);
      const version = header('p', 1, `~${pxMs - leaseMs}`, '0', owner, fingerprint);
      let existing: string | null | undefined;
      try {
        existing = await setIfAbsentGet.call(this.#redis, keys[0], version, pxMs);
      } catch (error) {
        // Redis < 7.0 rejects NX together with GET: fall back to the script for good.
        if (!/syntax error/i.test(String((error as Error)?.message))) throw error;
        this.#plainClaim = false;
      }
      if (existing === null) {
        return { kind: 'acquired', fence: 1, leaseExpiresAt: Date.now() + this.#skewMs + leaseMs, takeover: false, steps: {}, version };
      }
      if (existing !== undefined) {
        // The same decisions as CLAIM makes before it reads the clock (mismatch first, then replay).
        const parsed = parseHeader(existing);
        if (parsed !== undefined) {
          const f = parsed.fields;
          if (f[5] !== fingerprint) return { kind: 'mismatch' };
          if (f[0] === 'c') return { kind: 'completed', response: existing.slice(parsed.end), completedAt: Number(f[2]) };
        }
        // In progress: busy or a takeover, decided by the script on the server clock.
      }
    }
    const reply = (await this.#redis.run(CLAIM, keys, [fingerprint, owner, leaseMs, ttlMs])) as unknown[];
    switch (Number(reply[0])) {
      case 1: {
        const steps: Record<string, string> = {};
        for (let i = 4; i + 1 < reply.length; i += 2) steps[String(reply[i])] = String(reply[i + 1]);
        const leaseExpiresAt = Number(reply[2]);
        this.#skewMs = leaseExpiresAt - leaseMs - Date.now();
        const takeover = Number(reply[3]) === 1;
        // A new record's header as CLAIM wrote it (a takeover's carries the old steps flag: no version).
        const version = takeover ? undefined : header('p', 1, leaseExpiresAt, '0', owner, fingerprint);
        return { kind: 'acquired', fence: Number(reply[1]), leaseExpiresAt, takeover, steps, version };
      }
      case 2: return { kind: 'busy', retryAfterMs: Number(reply[1]) };
      case 3: return { kind: 'completed', response: String(reply[1]), completedAt: Number(reply[2]) };
      default: return { kind: 'mismatch' };
    }
  }

  async complete(input: CompleteInput): Promise<boolean> {
    const completedAt = Date.now() + this.#skewMs;
    const owner = safe(input.owner);
    const ttlMs = Math.ceil(input.ttlMs);
    const keys = this.#keys(input.id);
    const record = completedRecord(input.version, owner, completedAt, input.response);
    if (record !== undefined && Number(await this.#redis.run(COMPLETE_UNCHANGED, [keys[0]], [input.version!, record, ttlMs])) === 1) return true;
    return Number(await this.#redis.run(COMPLETE, keys, [owner, input.response, ttlMs, completedAt])) === 1;
  }

  async release(input: OwnerInput): Promise<boolean> {
    return Number(await this.#redis.run(RELEASE, this.#keys(input.id), [safe(input.owner)])) === 1;
  }

  async renew(input: RenewInput): Promise<boolean> {
    return Number(await this.#redis.run(RENEW, this.#keys(input.id), [safe(input.owner), Math.ceil(input.leaseMs)])) === 1;
  }

  async saveStep(input: StepInput): Promise<boolean> {
    return Number(await this.#redis.run(SAVE_STEP, this.#keys(input.id), [safe(input.owner), input.name, input.value])) === 1;
  }

  async inspect(id: string): Promise<StoredRecord | undefined> {
    const reply = ((await this.#redis.run(INSPECT, this.#keys(id), [])) as unknown[]).map(String);
    if (reply.length === 0) return undefined;
    const [state, fence, time, , owner, fingerprint, response, expiresAt] = reply as [string, string, string, string, string, string, string, string];
    const steps: Record<string, string> = {};
    for (let i = 8; i + 1 < reply.length; i += 2) steps[reply[i]!] = reply[i + 1]!;
    const common = { fingerprint, owner, fence: Number(fence), expiresAt: Number(expiresAt), steps };
    return state === 'c'
      ? { state: 'completed', ...common, response, completedAt: Number(time) }
      : { state: 'in_progress', ...common, leaseExpiresAt: Number(time) };
  }
}

export function redisIdempotencyStore(options: RedisIdempotencyStoreOptions): RedisIdempotencyStore {
  return new RedisIdempotencyStore(options);
}
