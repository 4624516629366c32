export * from './bounded-queue.js';
export * from './credit-stream.js';
export { QueueFullError, InvalidStreamRequestError } from './errors.js';
