/**
 * Lease trials, in one process: many keys, each with several clients sending the same request
 * concurrently and retrying like real clients (after 409, 503, lost responses), through
 * workers (engines) that are slow (losing their lease to a takeover), give up mid-handler
 * (never completing nor releasing), or lose the response after committing; meanwhile the
 * store restarts. The crashes are simulated; kill-trials.integration.test.ts kills real server processes.
 *
 * After every trial it checks:
 * - one answer: every client that got a result for a key got the same one, and the store
 *   replays exactly that result afterwards (also after store restarts);
 * - transactional kits (PostgreSQL, SQLite) only: exactly one effect row per key, the one
 *   behind that answer (the effect and the completion share a transaction, so fencing decides
 *   which execution's effect commits). Other stores run the effect outside the completion, so
 *   a worker dying in between repeats it: nothing here can count that (see the kill trials);
 * - liveness: every client eventually got the result.
 *
 * Failures report the seed; rerun with it to reproduce the same random decisions.
 */
import type { Clock } from '../core/clock.js';
import { BulwarkError, hasCode } from '../core/errors.js';
import { seededRandom, type Random } from '../core/random.js';
import type { IdempotencyEngine, Lease } from './engine.js';
import type { IdempotencyScope } from './types.js';

export interface TrialKit {
  name: string;
  /** Time for the harness's delays (a VirtualClock for in-process stores, the system clock otherwise). */
  clock: Clock;
  /** Makes virtual time pass while trials run (VirtualClock kits). Omit for real time. */
  advance?(ms: number): Promise<void>;
  /** The engine of worker `n` (0..workers-1): separate engines act like separate processes. After a restart, engines on the new store. */
  engine(worker: number): IdempotencyEngine;
  /**
   * Commits the handler's result. Transactional kits write an effect row and the completion
   * atomically and throw LEASE_LOST when fenced; the others complete only. `crashInside`: die
   * inside the commit (before anything committed).
   */
  commit(engine: IdempotencyEngine, lease: Lease, key: string, body: string, crashInside: boolean): Promise<void>;
  /**
   * Transactional kits (the effect and the completion commit atomically: PostgreSQL, SQLite):
   * the bodies of the effect rows committed for `key`. Omitted by the others, whose effects
   * this harness cannot observe.
   */
  effects?(key: string): Promise<string[]>;
  /** Restarts the store (durable kits). Omit when the store cannot survive a restart. */
  restart?(): Promise<void>;
}

export interface TrialOptions {
  trials: number;
  seed: number;
  /** Trials run at the same time. Default 8. */
  parallel?: number;
  /** Workers (engines) clients are spread over. Default 3. */
  workers?: number;
  /** The lease the kit's engines use; handler times are drawn relative to it. */
  leaseMs: number;
  /** Probability that a handler execution crashes. Default 0.2. */
  crashRate?: number;
  /** Probability that a handler is slower than its lease. Default 0.1. */
  slowRate?: number;
  /** Probability that a committed response never reaches the client. Default 0.1. */
  lostResponseRate?: number;
  /** Mean time between store restarts while trials run (kits with restart()). Default: no restarts. */
  restartEveryMs?: number;
  /** A trial that takes longer than this is a liveness failure. Default 60 000. */
  trialTimeoutMs?: number;
}

export interface TrialReport {
  kit: string;
  seed: number;
  trials: number;
  executions: number;
  crashes: number;
  slow: number;
  lostResponses: number;
  conflicts: number;
  storeErrors: number;
  leaseLost: number;
  restarts: number;
  replays: number;
  violations: string[];
}

interface Counters {
  executions: number; crashes: number; slow: number; lostResponses: number; conflicts: number;
  storeErrors: number; leaseLost: number; restarts: number; replays: number;
}

export async function runIdempotencyTrials(kit: TrialKit, options: TrialOptions): Promise<TrialReport> {
  const random = seededRandom(options.seed);
  const parallel = options.parallel ?? 8;
  const workers = options.workers ?? 3;
  const counters: Counters = { executions: 0, crashes: 0, slow: 0, lostResponses: 0, conflicts: 0, storeErrors: 0, leaseLost: 0, restarts: 0, replays: 0 };
  const violations: string[] = [];
  const sleep = (ms: number) => new Promise<void>((resolve) => kit.clock.setTimeout(resolve, ms));

  let running = true;
  let stopWaiting = (): void => {};
  const background: Promise<void>[] = [];
  const guardLoop = (name: string, loop: () => Promise<void>): Promise<void> => loop().catch((error: unknown) => {
    violations.push(`${name} loop failed: ${error instanceof Error ? error.stack : String(error)}`);
  });
  if (kit.advance) {
    const advance = kit.advance.bind(kit);
    // Virtual time: keep advancing even if a timer callback threw, or every waiter would hang.
    background.push((async () => {
      while (running) {
        try {
          await advance(5);
        } catch (error) {
          violations.push(`a timer callback threw: ${error instanceof Error ? error.stack : String(error)}`);
        }
      }
    })());
  }
  if (kit.restart && options.restartEveryMs !== undefined) {
    const restart = kit.restart.bind(kit);
    const every = options.restartEveryMs;
    const chaos = seededRandom(options.seed ^ 0x5bd1e995);
    background.push(guardLoop('restart', async () => {
      while (running) {
        // Wakes up early when the trials end (otherwise virtual time would stop with this timer pending).
        await new Promise<void>((resolve) => {
          const timer = kit.clock.setTimeout(resolve, every * (0.5 + chaos()));
          stopWaiting = () => { kit.clock.clearTimeout(timer); resolve(); };
        });
        if (!running) break;
        await restart();
        counters.restarts++;
      }
    }));
  }

  let next = 0;
  const lanes = Array.from({ length: Math.min(parallel, options.trials) }, async () => {
    while (next < options.trials) {
      const trial = next++;
      const trialRandom = seededRandom(Math.floor(random() * 2 ** 32) ^ trial);
      try {
        await runTrial(kit, options, trial, trialRandom, workers, counters, violations, sleep);
      } catch (error) {
        violations.push(`trial ${trial}: harness error ${error instanceof Error ? error.stack : String(error)}`);
      }
    }
  });
  try {
    await Promise.all(lanes);
  } finally {
    running = false;
    stopWaiting();
    await Promise.all(background);
  }
  return { kit: kit.name, seed: options.seed, trials: options.trials, ...counters, violations };
}

async function runTrial(
  kit: TrialKit, options: TrialOptions, trial: number, random: Random, workers: number,
  counters: Counters, violations: string[], sleep: (ms: number) => Promise<void>,
): Promise<void> {
  const key = `trial-${options.seed}-${trial}`;
  const scope: IdempotencyScope = { principal: 'trials', method: 'POST', route: '/orders', key };
  const fingerprint = `fp-${key}`;
  const lease = options.leaseMs;
  const clients = 1 + Math.floor(random() * 5);
  const received: string[] = [];
  const deadline = kit.clock.now() + (options.trialTimeoutMs ?? 60_000);
  const crashRate = options.crashRate ?? 0.2;
  const slowRate = options.slowRate ?? 0.1;
  const lostRate = options.lostResponseRate ?? 0.1;
  let execution = 0;

  const client = async (c: number): Promise<void> => {
    await sleep(Math.floor(random() * lease * 0.3));
    for (;;) {
      if (kit.clock.now() > deadline) {
        violations.push(`trial ${trial} (${key}) client ${c}: no result before the trial timeout`);
        return;
      }
      const engine = kit.engine(Math.floor(random() * workers));
      let outcome;
      try {
        outcome = await engine.claim(scope, fingerprint);
      } catch (error) {
        if (!hasCode(error, 'STORE_UNAVAILABLE')) throw error;
        counters.storeErrors++;
        await sleep(10 + random() * lease * 0.3);
        continue;
      }
      if (outcome.kind === 'completed') {
        counters.replays++;
        received.push(String(outcome.response.body));
        return;
      }
      if (outcome.kind === 'mismatch') {
        violations.push(`trial ${trial} (${key}): mismatch for an identical request`);
        return;
      }
      if (outcome.kind === 'in-progress') {
        counters.conflicts++;
        await sleep(10 + random() * Math.min(outcome.retryAfterMs, lease) * 0.5);
        continue;
      }
      // We own the lease: run the "handler".
      counters.executions++;
      const body = `${key}#${++execution}:${outcome.lease.owner}`;
      const crash = random() < crashRate;
      const crashInside = crash && random() < 0.5;
      const slow = !crash && random() < slowRate;
      const work = slow ? lease * (1.1 + random() * 0.5) : random() * lease * 0.4;
      if (slow) counters.slow++;
      await sleep(work);
      if (crash && !crashInside) {
        counters.crashes++; // died mid-handler: no commit, no release; the lease must expire
        await sleep(lease * 0.2);
        continue;
      }
      try {
        await kit.commit(engine, outcome.lease, key, body, crashInside);
      } catch (error) {
        if (error instanceof CrashedInside) {
          counters.crashes++;
          await sleep(lease * 0.2);
          continue;
        }
        if (hasCode(error, 'LEASE_LOST')) counters.leaseLost++;
        else if (hasCode(error, 'STORE_UNAVAILABLE')) counters.storeErrors++;
        else throw error;
        await sleep(10 + random() * lease * 0.3);
        continue;
      }
      if (random() < lostRate) {
        counters.lostResponses++; // committed, but the response never arrives: the client retries
        await sleep(10 + random() * lease * 0.3);
        continue;
      }
      received.push(body);
      return;
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));

  // --- invariants -------------------------------------------------------------------------
  const distinct = [...new Set(received)];
  if (distinct.length > 1) violations.push(`trial ${trial} (${key}): clients received different results: ${distinct.join(' | ')}`);
  if (kit.effects !== undefined) {
    const effects = await kit.effects(key);
    if (effects.length > 1) violations.push(`trial ${trial} (${key}): ${effects.length} effects committed: ${effects.join(' | ')}`);
    if (distinct.length === 1 && effects[0] !== distinct[0]) {
      violations.push(`trial ${trial} (${key}): clients got ${distinct[0]} but the committed effect is ${effects[0] ?? 'none'}`);
    }
  }
  if (distinct.length === 1) {
    const stored = await finalState(kit, scope, fingerprint, sleep);
    if (stored !== distinct[0]) violations.push(`trial ${trial} (${key}): completed response lost: clients got ${distinct[0]}, the store now says ${stored}`);
  }
}

/** The stored result, retried through store restarts. */
async function finalState(kit: TrialKit, scope: IdempotencyScope, fingerprint: string, sleep: (ms: number) => Promise<void>): Promise<string> {
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      const outcome = await kit.engine(0).claim(scope, fingerprint);
      if (outcome.kind === 'completed') return String(outcome.response.body);
      if (outcome.kind === 'new') {
        await outcome.lease.release().catch(() => {});
        return 'nothing (the record is gone)';
      }
      return outcome.kind;
    } catch (error) {
      if (!hasCode(error, 'STORE_UNAVAILABLE')) throw error;
      await sleep(50);
    }
  }
  return 'unreachable store';
}

/** Thrown by a kit's commit to say "the worker died inside the commit" (nothing was committed). */
export class CrashedInside extends BulwarkError {
  constructor() {
    super('FAULT_INJECTED', 'worker crashed inside the commit (simulated)', { captureStack: false });
  }
}

/** Formats a report for logs and assertion messages. */
export function describeTrialReport(report: TrialReport): string {
  const { violations, ...counts } = report;
  return `${JSON.stringify(counts)}${violations.length > 0 ? `\n${violations.slice(0, 20).join('\n')}` : ''}`;
}
