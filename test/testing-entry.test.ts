/**
 * The `bulwark/testing` entry as a third-party store author uses it: everything is imported from
 * the package's own entry files, never from the modules behind them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryIdempotencyStore, type CompleteInput } from '../src/idempotency.js';
import { idempotencyStoreContract, VirtualClock, type ContractRunner, type IdempotencyStoreHarness } from '../src/testing.js';

/** The harness a store author writes: a store on a virtual clock, so leases and TTLs pass instantly. */
function memoryHarness(store: (clock: VirtualClock) => MemoryIdempotencyStore): () => Promise<IdempotencyStoreHarness> {
  return async () => {
    const clock = new VirtualClock(1_700_000_000_000);
    return { store: store(clock), clock, leaseMs: 30_000, elapse: (ms) => clock.advance(ms), close: async () => {} };
  };
}

// With node:test, the default runner: the contract's tests are reported here as this file's own.
idempotencyStoreContract('memory store, through bulwark/testing', memoryHarness((clock) => new MemoryIdempotencyStore({ clock })));

/** A runner of our own, standing for vitest/jest/mocha: collects the suite, then runs it in order. */
function collectingRunner(): { runner: ContractRunner; suites: string[]; run(): Promise<{ passed: string[]; failed: string[] }> } {
  const suites: string[] = [];
  const tests: { name: string; body: () => Promise<void> }[] = [];
  const befores: (() => Promise<void>)[] = [];
  const afters: (() => Promise<void>)[] = [];
  return {
    suites,
    runner: {
      describe: (name, body) => { suites.push(name); body(); },
      test: (name, body) => { tests.push({ name, body }); },
      before: (hook) => { befores.push(hook); },
      after: (hook) => { afters.push(hook); },
    },
    async run() {
      const passed: string[] = [];
      const failed: string[] = [];
      for (const hook of befores) await hook();
      for (const { name, body } of tests) {
        try { await body(); passed.push(name); } catch { failed.push(name); }
      }
      for (const hook of afters) await hook();
      return { passed, failed };
    },
  };
}

/** A store with a bug the contract must catch: anyone may complete, fenced off or not. */
class TrustingStore extends MemoryIdempotencyStore {
  override async complete(input: CompleteInput): Promise<boolean> {
    await super.complete(input);
    return true;
  }
}

test('the contract runs on a runner passed in, and every test passes for a correct store', async () => {
  const { runner, suites, run } = collectingRunner();
  idempotencyStoreContract('memory', memoryHarness((clock) => new MemoryIdempotencyStore({ clock })), runner);
  assert.deepEqual(suites, ['idempotency store contract: memory']);
  const { passed, failed } = await run();
  assert.deepEqual(failed, []);
  assert.ok(passed.length >= 15, `only ${passed.length} contract tests ran`);
});

test('the contract fails a store that lets a fenced-off owner complete', async () => {
  const { runner, run } = collectingRunner();
  idempotencyStoreContract('trusting', memoryHarness((clock) => new TrustingStore({ clock })), runner);
  const { passed, failed } = await run();
  assert.ok(failed.includes('complete stores the response for replay; only the owner may complete, idempotently'), `failed: ${failed.join(' | ')}`);
  assert.ok(failed.includes('one lease expiry: busy until it passes, then taken over; the old owner is fenced off'), `failed: ${failed.join(' | ')}`);
  assert.ok(passed.includes('50 concurrent claims of one key: exactly one acquires'), 'the rest of the contract still runs and passes');
});
