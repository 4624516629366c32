/**
 * The samples of docs/guides/custom-policy.md, as a user writes them (imports from the package's
 * entry files): the pacer policy line for line, its composition in a pipeline (plus the `clock`
 * option, so it runs on virtual time) and the guide's own test. The last test checks that every
 * line of every `ts` block of the guide is still here, so the guide shows code that compiles and
 * runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  AbortedError, BasePolicy, DeadlineExceededError, InvalidOptionsError, PolicyRegistry, pipeline, retry, timeout,
  type CallContext, type Clock, type Next, type PolicyDescription, type PolicyEvent, type PolicyIdentity,
} from '../src/index.js';
import { VirtualClock } from '../src/testing.js';

// ---------------------------------------------------------------------------- the guide's policy

export interface PacerOptions extends PolicyIdentity {
  /** Least time between the starts of two calls, in ms. */
  intervalMs: number;
  clock?: Clock;
}

/** A call waited for its turn, then ran. */
export interface PacedEvent {
  waitedMs: number;
}

/** A call was refused: its turn would have come after its deadline. */
export interface PacerRefusedEvent {
  waitMs: number;
}

export interface PacerStats {
  /** Calls run through the pacer. */
  calls: number;
  /** Calls that waited for their turn. */
  paced: number;
  /** Calls refused because their turn came after their deadline. */
  refused: number;
}

/** Starts calls at least `intervalMs` apart, for a dependency that dislikes bursts. */
export class PacerPolicy extends BasePolicy {
  readonly kind = 'pacer';
  readonly intervalMs: number;
  #nextStart = -Infinity;
  #calls = 0;
  #paced = 0;
  #refused = 0;

  readonly #onPaced = this.telemetry.emitter<PacedEvent>('paced', (e) => ({ durationMs: e.waitedMs }));
  readonly #onRefused = this.telemetry.emitter<PacerRefusedEvent>('reject', (e) => ({
    outcome: 'rejected',
    attributes: { reason: 'deadline', waitMs: e.waitMs },
  }));
  /** A call waited for its turn, then ran. */
  readonly onPaced = this.#onPaced.event;
  /** A call was refused: its turn would have come after its deadline. */
  readonly onRefused = this.#onRefused.event;

  constructor(options: PacerOptions) {
    super(options.clock, options);
    if (!(options.intervalMs >= 0)) throw new InvalidOptionsError(`pacer.intervalMs must be >= 0, got ${options.intervalMs}`);
    this.intervalMs = options.intervalMs;
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return Promise.reject(new AbortedError(context.abortReason));
    this.#calls++;
    const now = this.clock.now();
    const startAt = Math.max(now, this.#nextStart);
    if (startAt >= context.deadline) {
      // Its turn comes too late for the caller: refuse now rather than wait for nothing.
      this.#refused++;
      if (this.#onRefused.active) this.#onRefused.emit({ waitMs: startAt - now });
      return Promise.reject(new DeadlineExceededError(context.deadline));
    }
    this.#nextStart = startAt + this.intervalMs;
    if (startAt === now) return next(context);
    const waitMs = startAt - now;
    return this.#wait(waitMs, context).then(() => {
      this.#paced++;
      if (this.#onPaced.active) this.#onPaced.emit({ waitedMs: waitMs });
      return next(context);
    });
  }

  /** Waits on the policy's clock; an abort of the call ends the wait at once. */
  #wait(ms: number, context: CallContext): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        stopListening();
        resolve();
      }, ms);
      const stopListening = context.onAbort((reason) => {
        this.clock.clearTimeout(timer);
        reject(new AbortedError(reason));
      });
    });
  }

  describe(): PolicyDescription {
    return { kind: this.kind, ...(this.name !== undefined ? { name: this.name } : {}), options: { intervalMs: this.intervalMs } };
  }

  stats(): PacerStats {
    return { calls: this.#calls, paced: this.#paced, refused: this.#refused };
  }
}

export function pacer(options: PacerOptions): PacerPolicy {
  return new PacerPolicy(options);
}

// ------------------------------------------------------------------------------------- the tests

/** A search index on the clock: each query takes 30 ms, and stops when its signal aborts. */
function searchIndex(clock: VirtualClock) {
  const startedAt: number[] = [];
  const query = (text: string, signal: AbortSignal): Promise<string[]> => {
    startedAt.push(clock.now());
    return new Promise((resolve, reject) => {
      const timer = clock.setTimeout(() => resolve([`${text}: 1 hit`]), 30);
      signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(signal.reason); }, { once: true });
    });
  };
  return { query, startedAt };
}

test('calls start at least 100 ms apart', async () => {
  const clock = new VirtualClock();
  const policy = pacer({ name: 'search-pacer', intervalMs: 100, clock });
  const events: PolicyEvent[] = [];
  policy.onEvent((event) => events.push(event));
  const startedAt: number[] = [];
  const calls = [1, 2, 3].map(() => policy.execute(() => { startedAt.push(clock.now()); return 'ok'; }));
  await clock.advance(200);
  await Promise.all(calls);
  assert.deepEqual(startedAt, [0, 100, 200]);
  assert.deepEqual(policy.stats(), { calls: 3, paced: 2, refused: 0 });
  assert.deepEqual(events.map((e) => [e.event, e.durationMs]), [['paced', 100], ['paced', 200]]);
});

test('guide: in a named pipeline, the pacer spaces the calls, refuses one its deadline cannot wait for, and the pipeline reports it all', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const { query, startedAt } = searchIndex(clock);
  const text = 'bulwark';

  const search = pipeline(
    { name: 'search', registry },
    retry({ maxAttempts: 3, clock }),
    pacer({ name: 'search-pacer', intervalMs: 100, registry, clock }),
    timeout({ ms: 500, clock }),
  );
  const events: PolicyEvent[] = [];
  search.onEvent((event) => events.push(event));

  const first = search.execute(({ signal }) => query(text, signal), { timeoutMs: 1000 });
  const second = search.execute(({ signal }) => query(text, signal), { timeoutMs: 1000 });
  const late = search.execute(({ signal }) => query(text, signal), { timeoutMs: 150 }); // its turn is at 200 ms
  await assert.rejects(late, { code: 'DEADLINE_EXCEEDED' });
  await clock.advance(130);
  assert.deepEqual(await Promise.all([first, second]), [['bulwark: 1 hit'], ['bulwark: 1 hit']]);

  assert.deepEqual(startedAt, [0, 100]);
  assert.deepEqual(events.map((e) => `${e.kind}/${e.name} ${e.event} ${e.outcome ?? ''}`), [
    'pacer/search-pacer reject rejected',
    'pipeline/search call rejected',
    'retry/retry success success',
    'pipeline/search call success',
    'pacer/search-pacer paced ',
    'retry/retry success success',
    'pipeline/search call success',
  ]);
  assert.deepEqual(events[0]!.attributes, { reason: 'deadline', waitMs: 200 });
  assert.deepEqual(search.stats().policies.map((p) => p.stats), [
    { calls: 3, attempts: 3, retries: 0, successes: 2, giveUps: 0, budgetDenials: 0 },
    { calls: 3, paced: 1, refused: 1 },
    { calls: 2, timeouts: 0, abandoned: 0, deadlineExceeded: 0, inFlight: 0 },
  ]);
  assert.deepEqual(search.describe().policies![1], { kind: 'pacer', name: 'search-pacer', options: { intervalMs: 100 } });
  assert.deepEqual(registry.policies().map((p) => p.name), ['search-pacer', 'search']);
});

test('guide: an abort ends the wait for a turn at once; a bad interval is INVALID_OPTIONS', async () => {
  const clock = new VirtualClock();
  const policy = pacer({ intervalMs: 100, clock });
  const controller = new AbortController();
  const first = policy.execute(() => 'first');
  const waiting = policy.execute(() => 'never', { signal: controller.signal });
  controller.abort(new Error('the user left'));
  await assert.rejects(waiting, { code: 'ABORTED' });
  assert.equal(await first, 'first');
  assert.equal(clock.pendingTimers, 0, 'the wait cleared its timer');
  assert.deepEqual(policy.stats(), { calls: 2, paced: 0, refused: 0 });
  assert.throws(() => pacer({ intervalMs: -1 }), { code: 'INVALID_OPTIONS' });
});

function normalize(line: string): string {
  return line.trim().replace(/\s+/g, ' ');
}

test('every line of the guide\'s ts samples is in this file, so the guide shows code that runs', () => {
  const guide = readFileSync(new URL('../docs/guides/custom-policy.md', import.meta.url), 'utf8');
  // Each line as it is, and without the options only a test needs (its clock, its own registry).
  const here = new Set(readFileSync(new URL(import.meta.url), 'utf8')
    .split('\n')
    .flatMap((line) => [line, line.replace(/, (registry, )?clock(?= \})/g, '').replace(/, registry(?= \})/g, '')])
    .map(normalize));
  const blocks = [...guide.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!.replace(/^import [\s\S]*? from '[^']+';$/gm, ''));
  assert.ok(blocks.length >= 3, `only ${blocks.length} ts samples found in the guide`);
  const missing = blocks
    .flatMap((block) => block.split('\n'))
    .map(normalize)
    .filter((line) => line !== '' && !here.has(line));
  assert.deepEqual(missing, [], 'guide lines with no counterpart in this test');
});
