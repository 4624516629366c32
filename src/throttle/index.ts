export { AdaptiveThrottlePolicy, adaptiveThrottle, type AdaptiveThrottleOptions, type ThrottledEvent, type ThrottleSnapshot } from './throttle.js';
export { CountWindow } from './window.js';
