export { DEFAULT_SHED_THRESHOLDS, priorityAdmits, redDropProbability } from './priority.js';
export { StandingQueueDetector } from './codel.js';
export { eventLoopDelayMonitor, type DelaySource, type EventLoopDelayOptions } from './signals.js';
export { InvalidAdmissionError } from './errors.js';
export * from './shedder.js';
export * from './reservation.js';
