/**
 * Kill trials (see test/kill-trials.ts): a trial server process per adapter and store, SIGKILLed
 * at seeded random points while clients retry their keys; duplicates and lost answers counted
 * from the effects table and the clients' logs.
 *
 * `npm test` runs a short matrix (each adapter once, each store once, one kill each). The long
 * run, every adapter with every store, N kills each (longer than the test script's timeout):
 *   IDEMPOTENCY_TRIALS=20 node --import tsx --test --test-timeout=0 src/idempotency/kill-trials.test.ts
 * A failure names its seed: IDEMPOTENCY_SEED=<seed> replays the same kill points;
 * IDEMPOTENCY_SEED=random draws a new one.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  analyseKillTrial, describeKillTrial, runKillTrial, type Answer, type KillTrialLog, type KillTrialOptions, type KillTrialReport, type ServerEvents,
} from './test/kill-trials.js';
import type { TrialAdapter, TrialStore } from './test/trial-server.js';

const LONG = process.env.IDEMPOTENCY_TRIALS === undefined ? undefined : Number(process.env.IDEMPOTENCY_TRIALS);
if (LONG !== undefined && !(Number.isInteger(LONG) && LONG > 0)) throw new Error(`IDEMPOTENCY_TRIALS must be a positive integer (kills per trial), got ${process.env.IDEMPOTENCY_TRIALS}`);
const SEED_ENV = process.env.IDEMPOTENCY_SEED;
const SEED = SEED_ENV === undefined ? 20_261_206 : SEED_ENV === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(SEED_ENV);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const ADAPTERS: readonly TrialAdapter[] = ['fastify', 'express', 'node'];
const STORES: readonly TrialStore[] = ['postgres', 'sqlite', 'redis', 'memory'];
// Short: every store once, every adapter at least once. Long: the whole matrix.
const MATRIX: readonly [TrialAdapter, TrialStore][] = LONG === undefined
  ? [['fastify', 'postgres'], ['express', 'sqlite'], ['node', 'redis'], ['fastify', 'memory']]
  : ADAPTERS.flatMap((a) => STORES.map((s): [TrialAdapter, TrialStore] => [a, s]));

function trial(adapter: TrialAdapter, store: TrialStore, index: number): Promise<KillTrialReport> {
  const options: KillTrialOptions = {
    adapter, store, seed: (SEED + index) >>> 0,
    clients: LONG === undefined ? 4 : 8,
    kills: LONG ?? 1,
    keysPerClient: LONG === undefined ? 4 : 10,
    requestsBetweenKills: LONG === undefined ? 12 : 40,
    thinkMs: LONG === undefined ? 60 : 5,
    workMs: 20,
    killDelayMs: 30,
    leaseMs: 2_000,
    databaseUrl: DATABASE_URL,
    redisUrl: REDIS_URL,
  };
  return runKillTrial(options);
}

describe('kill trials: the counting', () => {
  const options = { adapter: 'node', store: 'redis', seed: 1, clients: 1 } as const;
  const ok = (effect: number, run: string, answeredBy = run): Answer => ({ status: 201, body: { key: 'k', run, effect }, run: answeredBy });
  const events = (stored: Record<string, string[]>): Map<string, ServerEvents> => new Map(['0', '1', '2'].map((run) => [run, {
    effects: new Map(), stored: new Map((stored[run] ?? []).map((key) => [key, 0])),
  }]));
  const log = (over: Partial<KillTrialLog>): KillTrialLog => ({
    rows: [], answers: new Map(), events: events({}), kills: [{ run: '0', point: 'in-handler', inFlight: 1 }], finalRun: '1', requests: 0, connectionErrors: 0, retryLater: 0, ...over,
  });

  test('a kill between the effect and the completion explains one duplicate, and nothing is lost', () => {
    const r = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '1' }],
      answers: new Map([['k', [ok(2, '1'), ok(2, '1', '2')]]]),
      events: events({ 1: ['k'] }),
    }));
    assert.equal(r.duplicateEffects, 1);
    assert.deepEqual(r.unexplainedDuplicates, []);
    assert.equal(r.keysInWindowAtKills, 1);
    assert.deepEqual(r.lost, []);
  });

  test('a 2xx contradicted later is lost; a duplicate after a stored completion is unexplained', () => {
    const r = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '1' }],
      answers: new Map([['k', [ok(1, '0'), ok(2, '1')]]]),
      events: events({ 0: ['k'], 1: ['k'] }),
    }));
    assert.equal(r.lost.length, 1);
    assert.equal(r.unexplainedDuplicates.length, 1);
    assert.equal(r.forgottenAcrossRestart, 1);
    assert.equal(r.checksAcrossRestart, 1);
  });

  test('a 2xx followed by another run of the effect is lost even if no later answer differs; one run answering two ways is flagged', () => {
    const ranAgain = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '1' }],
      answers: new Map([['k', [ok(1, '0')]]]),
    }));
    assert.match(ranAgain.lost[0] ?? '', /ran again/);
    const twoWays = analyseKillTrial(options, log({
      rows: [{ id: 1, key: 'k', run: '0' }, { id: 2, key: 'k', run: '0' }],
      answers: new Map([['k', [ok(1, '0'), ok(2, '0')]]]),
    }));
    assert.equal(twoWays.sameRunMismatches.length, 1);
    assert.equal(twoWays.sameRunDuplicates.length, 1);
  });
});

const seedHint = (r: KillTrialReport) => `(replay with IDEMPOTENCY_SEED=${r.seed - MATRIX.findIndex(([a, s]) => a === r.adapter && s === r.store)})`;

describe('kill trials: a trial server SIGKILLed at random points while clients retry', { concurrency: LONG === undefined ? 4 : 2 }, () => {
  MATRIX.forEach(([adapter, store], index) => {
    test(`${adapter} + ${store}`, async () => {
      const r = await trial(adapter, store, index);
      console.log(`# ${describeKillTrial(r)}`);
      assert.ok(r.kills >= 1 && r.keys >= 1, 'the trial killed the server and answered keys');
      assert.deepEqual(r.sameRunMismatches, [], `one server incarnation answered one key two ways ${seedHint(r)}`);
      if (store === 'postgres' || store === 'sqlite') {
        // Transactional path: the effect and the completion commit together.
        assert.equal(r.duplicateEffects, 0, `duplicate effects ${seedHint(r)}`);
        assert.deepEqual(r.lost, [], `lost completed responses ${seedHint(r)}`);
      } else if (store === 'redis') {
        // Plain path: the effect commits, then the completion. The server dying in between is
        // the only way to run the effect twice, and at most once per key in that window per kill.
        assert.deepEqual(r.lost, [], `lost completed responses ${seedHint(r)}`);
        assert.deepEqual(r.sameRunDuplicates, [], `two effects of one key in one incarnation ${seedHint(r)}`);
        assert.deepEqual(r.unexplainedDuplicates, [], `duplicates with no kill between effect and completion ${seedHint(r)}`);
        assert.ok(r.duplicateEffects <= r.keysInWindowAtKills, `${r.duplicateEffects} duplicates > ${r.keysInWindowAtKills} keys in the window at the kills`);
        assert.ok(r.keysInWindowAtKills <= r.kills * r.clients, 'a kill catches at most one key per client (each has one in flight)');
      } else {
        // Memory: forgets everything on restart, by design. Within one incarnation it replays;
        // after a restart a retry runs the handler again.
        assert.deepEqual(r.sameRunDuplicates, [], `two effects of one key in one incarnation ${seedHint(r)}`);
        assert.ok(r.checksAcrossRestart >= r.keys, 'every key was asked for again after a restart');
        assert.equal(r.forgottenAcrossRestart, r.checksAcrossRestart, 'after a restart every retry ran the handler again');
      }
    });
  });
});
