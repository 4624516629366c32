export * from './hedge.js';
export * from './errors.js';
export { LatencyTracker, type LatencyTrackerOptions } from './latency-tracker.js';
