export * from './clock.js';
export * from './random.js';
export * from './errors.js';
export * from './events.js';
export * from './context.js';
export * from './policy.js';
export * from './validate.js';
export * from './budget.js';
