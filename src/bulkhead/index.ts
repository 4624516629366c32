export * from './bulkhead.js';
