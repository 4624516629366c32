// The guarded pool's logic on a fake pool and a VirtualClock: checkout abandonment, cancel
// fallbacks, retry and breaker classification. The real-PostgreSQL behaviour is in guarded-postgres.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { TimeoutError } from '../core/errors.js';
import { seededRandom } from '../core/random.js';
import { cancelRequestPacket } from './pg-cancel.js';
import { guardPool, type PgClientLike } from './guarded-postgres.js';
import { isPostgresFailure, isPostgresTransient, sqlStateOf } from './postgres-errors.js';

function pgError(code: string, message = `error ${code}`): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR' });
}

/** A pg-like client whose statements are scripted; `release(true)` fails the running one, as pg does. */
class FakeClient implements PgClientLike {
  processID = 4242;
  secretKey = 77;
  releases: Array<boolean | Error | undefined> = [];
  statements: string[] = [];
  #fail: ((error: Error) => void) | undefined;
  constructor(readonly answer: (text: string) => Promise<any>) {}

  query(text: any): Promise<any> {
    this.statements.push(String(text));
    return new Promise((resolve, reject) => {
      this.#fail = reject;
      this.answer(String(text)).then(resolve, reject);
    });
  }

  release(destroy?: boolean | Error): void {
    this.releases.push(destroy);
    if (destroy) this.#fail?.(new Error('Connection terminated'));
  }
}

function fakePool(answer: (text: string) => Promise<any>, options: { max?: number; connectDelayMs?: number; clock?: VirtualClock } = {}) {
  const clients: FakeClient[] = [];
  return {
    clients,
    options: { max: options.max ?? 4 },
    connect(): Promise<FakeClient> {
      const client = new FakeClient(answer);
      clients.push(client);
      if (!options.connectDelayMs) return Promise.resolve(client);
      return new Promise((resolve) => options.clock!.setTimeout(() => resolve(client), options.connectDelayMs!));
    },
  };
}

const never = (): Promise<never> => new Promise(() => {});

test('classification: the database being unwell vs the statement being wrong', () => {
  const failures = ['08006', '08001', '53300', '53200', '57P01', '57P03', '57014', '58030', 'XX000'];
  const notFailures = ['23505', '23503', '42601', '42P01', '22P02', '40001', '40P01', '25P02', '28P01'];
  for (const code of failures) assert.equal(isPostgresFailure(pgError(code)), true, code);
  for (const code of notFailures) assert.equal(isPostgresFailure(pgError(code)), false, code);
  assert.equal(isPostgresFailure(new TimeoutError(100)), true);
  assert.equal(isPostgresFailure(new TimeoutError(100, false, pgError('57014'))), true);
  assert.equal(isPostgresFailure(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), true);
  assert.equal(isPostgresFailure(new Error('Connection terminated unexpectedly')), true);
  assert.equal(isPostgresFailure(new Error('timeout exceeded when trying to connect')), true);
  assert.equal(isPostgresFailure(new Error('insufficient funds')), false, 'your own exception is not the database\'s failure');

  const transient = ['40001', '40P01', '55P03', '57P01', '57P03', '53300', '08006', '57014'];
  const permanent = ['23505', '42601', '42P01', '22P02', '28P01', '53100', 'XX000'];
  for (const code of transient) assert.equal(isPostgresTransient(pgError(code)), true, code);
  for (const code of permanent) assert.equal(isPostgresTransient(pgError(code)), false, code);
  assert.equal(isPostgresTransient(new TimeoutError(100)), true);
  assert.equal(isPostgresTransient(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), true);
  assert.equal(isPostgresTransient(new Error('Connection terminated unexpectedly')), true);
  assert.equal(isPostgresTransient(new TypeError('x is not a function')), false);

  assert.equal(sqlStateOf(pgError('23505')), '23505');
  assert.equal(sqlStateOf(Object.assign(new Error('x'), { code: 'EPIPE' })), undefined, 'Node codes are not SQLSTATEs');
  assert.equal(sqlStateOf(new TimeoutError(5, false, pgError('57014'))), '57014');
});

test('only safe calls are retried, and only after transient errors', async () => {
  const clock = new VirtualClock();
  let calls = 0;
  const pool = fakePool(async () => {
    calls++;
    if (calls % 2 === 1) throw pgError('40001', 'could not serialize access');
    return { rows: [{ ok: true }] };
  });
  const db = guardPool(pool, { clock, random: seededRandom(3), retry: { backoff: { kind: 'constant', baseDelayMs: 10, jitter: 'none' } } });
  const safe = db.query('SELECT 1', [], { safe: true });
  await clock.advance(10);
  assert.deepEqual((await safe).rows, [{ ok: true }]);
  assert.equal(calls, 2);

  await assert.rejects(db.query('UPDATE t SET x = 1'), { code: '40001' });
  assert.equal(calls, 3, 'unmarked statements are never retried');

  const dup = fakePool(async () => { throw pgError('23505'); });
  const db2 = guardPool(dup, { clock });
  await assert.rejects(db2.query('INSERT', [], { safe: true }), { code: '23505' });
  assert.equal(dup.clients.length, 1, 'a constraint violation is not retried even when safe');
  assert.equal(db.breaker.stats().failures, 0, 'serialization failures are not held against the database');
});

test('a checkout that outlives the timeout is abandoned on time and its connection returned when it arrives', async () => {
  const clock = new VirtualClock();
  const pool = fakePool(async () => ({ rows: [] }), { connectDelayMs: 1000, clock });
  const db = guardPool(pool, { clock, timeoutMs: 100 });
  let rejectedAt = -1;
  const call = db.query('SELECT 1').catch((error) => { rejectedAt = clock.now(); throw error; });
  const outcome = assert.rejects(call, (e: any) => e.code === 'TIMEOUT' && e.abandoned === false);
  await clock.advance(100);
  await outcome;
  assert.equal(rejectedAt, 100, 'no grace wait: nothing ran on the database yet');
  assert.equal(db.bulkhead.active, 0);
  await clock.advance(900);
  assert.equal(pool.clients.length, 1);
  assert.deepEqual(pool.clients[0]!.releases, [undefined], 'returned to the pool unused');
  assert.deepEqual(pool.clients[0]!.statements, []);
});

test('a cancel that cannot be delivered closes the connection, which ends the statement', async () => {
  const clock = new VirtualClock();
  const pool = fakePool(never);
  const events: any[] = [];
  const db = guardPool(pool, { clock, timeoutMs: 100, cancel: async () => { throw new Error('no route to host'); } });
  db.onCancel((e) => events.push(e));
  const outcome = assert.rejects(db.query('SELECT pg_sleep(60)'), (e: any) => e.code === 'TIMEOUT' && e.abandoned === false && /Connection terminated/.test(e.cause.message));
  await clock.advance(100);
  await outcome;
  assert.deepEqual(pool.clients[0]!.releases, [true]);
  assert.equal(events.length, 1);
  assert.equal(events[0].ok, false);
  assert.equal(events[0].method, 'custom');
  assert.equal(events[0].pid, 4242);
  assert.deepEqual(db.stats().cancels, { requested: 1, failed: 1 });
  assert.equal(db.stats().connectionsDiscarded, 1);
  assert.equal(clock.pendingTimers, 0, 'no timer left behind');
});

test('a statement still running cancelTimeoutMs after a delivered cancel loses its connection (backstop)', async () => {
  const clock = new VirtualClock();
  const pool = fakePool(never);
  let cancelled = 0;
  const db = guardPool(pool, { clock, timeoutMs: 100, cancelTimeoutMs: 300, cancel: async () => { cancelled++; } });
  let rejectedAt = -1;
  const call = db.query('SELECT pg_sleep(60)').catch((e) => { rejectedAt = clock.now(); throw e; });
  const outcome = assert.rejects(call, (e: any) => e.code === 'TIMEOUT' && e.abandoned === false);
  await clock.advance(399);
  assert.equal(rejectedAt, -1, 'still waiting for the statement to end');
  assert.deepEqual(pool.clients[0]!.releases, []);
  await clock.advance(1);
  await outcome;
  assert.equal(rejectedAt, 400);
  assert.equal(cancelled, 1);
  assert.deepEqual(pool.clients[0]!.releases, [true]);
  assert.equal(db.bulkhead.active, 0);
});

test('cancel: "destroy" closes the connection at once; clients without a cancel key fall back to it', async () => {
  const clock = new VirtualClock();
  const pool = fakePool(never);
  const db = guardPool(pool, { clock, timeoutMs: 50, cancel: 'destroy' });
  const outcome = assert.rejects(db.query('SELECT 1'), { code: 'TIMEOUT' });
  await clock.advance(50);
  await outcome;
  assert.deepEqual(pool.clients[0]!.releases, [true]);

  const keyless = fakePool(never);
  const original = keyless.connect.bind(keyless);
  keyless.connect = async () => Object.assign(await original(), { processID: undefined }) as FakeClient;
  const db2 = guardPool(keyless, { clock, timeoutMs: 50 });
  const events: any[] = [];
  db2.onCancel((e) => events.push(e));
  const outcome2 = assert.rejects(db2.query('SELECT 1'), { code: 'TIMEOUT' });
  await clock.advance(50);
  await outcome2;
  assert.equal(events[0].method, 'destroy');
  assert.deepEqual(keyless.clients[0]!.releases, [true]);
});

test('an expired deadline fails before any checkout; bad input is a clear error', async () => {
  const clock = new VirtualClock(1000);
  const pool = fakePool(async () => ({ rows: [] }));
  const db = guardPool(pool, { clock });
  await assert.rejects(db.query('SELECT 1', [], { deadline: 999 }), { code: 'DEADLINE_EXCEEDED' });
  await assert.rejects(db.query('SELECT 1', [], { timeoutMs: -1 }), { code: 'INVALID_INPUT' });
  await assert.rejects(db.withClient(undefined as any), { code: 'INVALID_INPUT' });
  await assert.rejects(db.transaction(undefined as any), { code: 'INVALID_INPUT' });
  assert.equal(pool.clients.length, 0);

  assert.throws(() => guardPool({} as any), { code: 'INVALID_OPTIONS' });
  assert.throws(() => guardPool(pool, { timeoutMs: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => guardPool(pool, { cancel: 'kill' as any }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => guardPool(pool, { cancelTimeoutMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => guardPool(pool, { retry: 3 as any }), { code: 'INVALID_OPTIONS' });
});

test('zero is a legal queue setting (no queue, never wait) and describe() shows the whole guard', async () => {
  const clock = new VirtualClock();
  const pool = fakePool(never, { max: 1 });
  const db = guardPool(pool, { clock, name: 'orders-db', timeoutMs: 200, bulkhead: { maxQueue: 0 }, retry: { maxAttempts: 2 }, cancel: 'destroy' });
  assert.equal(db.bulkhead.maxQueue, 0);
  const first = db.query('SELECT 1').catch((e) => e);
  await assert.rejects(db.query('SELECT 2'), { code: 'BULKHEAD_FULL' });
  await clock.advance(200);
  assert.equal((await first).code, 'TIMEOUT');

  const description = db.describe();
  assert.equal(description.kind, 'guarded-postgres');
  assert.equal(description.name, 'orders-db');
  assert.deepEqual(description.policies!.map((p) => p.kind), ['retry', 'circuit-breaker', 'bulkhead', 'timeout']);
  assert.equal(description.options.cancel, 'destroy');
  assert.equal(guardPool(pool).describe().options.cancel, 'request');
  assert.equal(description.options.poolMax, 1);
  const noRetry = guardPool(pool, { clock, retry: false });
  assert.equal(noRetry.retry, undefined);
  assert.deepEqual(noRetry.describe().policies!.map((p) => p.kind), ['circuit-breaker', 'bulkhead', 'timeout']);
});

test('the hot path creates no AbortController and no abort listener; a timeout cancels only the attempt that timed out', async () => {
  const clock = new VirtualClock();
  const pool = fakePool((text) => (text === 'slow' ? never() : Promise.resolve({ rows: [text] })));
  const cancelled: unknown[] = [];
  const db = guardPool(pool, { clock, timeoutMs: 100, cancelTimeoutMs: 0, cancel: async (client) => { cancelled.push(client); } });
  const Original = globalThis.AbortController;
  let created = 0;
  globalThis.AbortController = class extends Original {
    constructor() {
      super();
      created++;
    }
  };
  try {
    for (let i = 0; i < 10; i++) assert.deepEqual((await db.query(`q${i}`)).rows, [`q${i}`]);
  } finally {
    globalThis.AbortController = Original;
  }
  assert.equal(created, 0);

  const slow = db.query('slow');
  const fast = db.query('fast');
  const outcome = assert.rejects(slow, { code: 'TIMEOUT' });
  assert.deepEqual((await fast).rows, ['fast']);
  await clock.advance(100);
  await outcome;
  assert.equal(cancelled.length, 1);
  assert.equal(cancelled[0], pool.clients[10], 'the slow attempt\'s client, nobody else\'s');
});

test('a caller abort while waiting for a connection rejects at once; the connection goes back unused', async () => {
  const clock = new VirtualClock();
  const pool = fakePool(async () => ({ rows: [] }), { connectDelayMs: 500, clock });
  const db = guardPool(pool, { clock, timeoutMs: 1000 });
  const caller = new AbortController();
  const call = db.query('SELECT 1', [], { signal: caller.signal });
  await clock.advance(10);
  caller.abort(new Error('client gone'));
  await assert.rejects(call, /client gone/);
  assert.equal(clock.now(), 10);
  await clock.advance(490);
  assert.deepEqual(pool.clients[0]!.releases, [undefined]);
  assert.deepEqual(pool.clients[0]!.statements, []);
  assert.equal(db.breaker.stats().failures, 0);
});

test('the CancelRequest packet: length, code 80877102, process id, secret key (4-byte or protocol 3.2 variable length)', () => {
  const packet = cancelRequestPacket(4242, -5);
  assert.equal(packet.length, 16);
  assert.equal(packet.readInt32BE(0), 16);
  assert.equal(packet.readInt32BE(4), 80877102);
  assert.equal(packet.readInt32BE(8), 4242);
  assert.equal(packet.readInt32BE(12), -5);
  const long = cancelRequestPacket(7, Uint8Array.from({ length: 32 }, (_, i) => i));
  assert.equal(long.length, 44);
  assert.equal(long.readInt32BE(0), 44);
  assert.deepEqual([...long.subarray(12)], Array.from({ length: 32 }, (_, i) => i));
});

test('a connection whose session is gone (57P01, 08xxx, a broken socket) is discarded, not returned to the pool', async () => {
  const errors: Record<string, Error> = {
    admin: pgError('57P01', 'terminating connection due to administrator command'),
    link: pgError('08006'),
    socket: new Error('Connection terminated unexpectedly'),
    duplicate: pgError('23505'),
    syntax: pgError('42601'),
  };
  const pool = fakePool(async (text) => { throw errors[text]!; });
  const db = guardPool(pool, { retry: false });
  for (const text of Object.keys(errors)) await assert.rejects(db.query(text));
  assert.deepEqual(pool.clients.map((c) => [c.statements[0], c.releases]), [
    ['admin', [true]],
    ['link', [true]],
    ['socket', [true]],
    ['duplicate', [undefined]],
    ['syntax', [undefined]],
  ]);
});
