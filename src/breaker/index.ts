export * from './breaker.js';
export * from './strategies.js';
export * from './keyed.js';
export { isDependencyFailure } from './classify.js';
export { InvalidSnapshotError, parseSnapshot, type BreakerSnapshot, type CircuitState, type CircuitStateKind, type SnapshotState } from './snapshot.js';
