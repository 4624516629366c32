export * from './fallback.js';
