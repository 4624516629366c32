export * from './timeout.js';
export { DeadlineQueue, DeadlineEntry } from './deadline-queue.js';
