export * from './limits/index.js';
export { SampleWindow, type SampleWindowOptions, type WindowAggregate } from './sample-window.js';
export * from './limiter.js';
