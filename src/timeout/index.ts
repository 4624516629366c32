export * from './timeout.js';
export { DeadlineQueue, DeadlineEntry } from '../core/deadline-queue.js';
