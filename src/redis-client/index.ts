export * from './script-client.js';
