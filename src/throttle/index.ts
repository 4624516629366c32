export { AdaptiveThrottlePolicy, adaptiveThrottle, type AdaptiveThrottleOptions, type AdaptiveThrottleStats, type ThrottledEvent, type ThrottleSnapshot } from './throttle.js';
export { CountWindow } from './window.js';
