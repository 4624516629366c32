// Entry point `bulwark/testing`: the tools our own tests use, for testing code built on Bulwark
// and for checking a third-party store. Nothing in the other entry points imports this one.

// Time and randomness under the test's control.
export { VirtualClock, flushPromises } from './core/clock.js';
export { seededRandom } from './core/random.js';

// The contract every idempotency store must pass.
export {
  idempotencyStoreContract, type IdempotencyStoreHarness, type ContractRunner,
} from './idempotency/contract.js';

// A shared rate-limit counter in memory: a fleet of hybrid limiters on one virtual clock.
export { memoryHybridRemote } from './ratelimit/hybrid.js';
