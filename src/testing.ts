// `bulwark/testing` entry: the tools our own tests use, for testing code built on Bulwark and for
// checking a third-party store. Nothing in the core entry imports this one.
export { VirtualClock, flushPromises } from './core/clock.js';
export { seededRandom } from './core/random.js';
export { idempotencyStoreContract, type IdempotencyStoreHarness, type ContractRunner } from './idempotency/contract.js';
export { memoryHybridRemote } from './ratelimit/hybrid.js';
