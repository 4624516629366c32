/**
 * Kill trials (see test/kill-trials.ts): a trial server process per adapter and store, SIGKILLed
 * at seeded random points while clients retry their keys; duplicates and lost answers counted
 * from the effects table (in PostgreSQL, or the SQLite file) and the clients' logs. The counting
 * itself is checked on made-up logs in kill-trials.test.ts.
 *
 * `npm test` runs a short matrix (each adapter once, each store once, one kill each). The long
 * run, every adapter with every store, N kills each (longer than the test script's timeout):
 *   IDEMPOTENCY_TRIALS=20 node --import tsx --test --test-timeout=0 src/idempotency/kill-trials.integration.test.ts
 * A failure names its seed: IDEMPOTENCY_SEED=<seed> replays the same kill points;
 * IDEMPOTENCY_SEED=random draws a new one.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeKillTrial, runKillTrial, type KillTrialOptions, type KillTrialReport } from './test/kill-trials.js';
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
