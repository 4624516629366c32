// Entry point `bulwark/fetch`: a fetch-compatible HTTP client on undici with a resilience
// pipeline per dependency. undici is imported only behind this entry point, never from the core.

// The client and its dependencies.
export {
  createFetch, type BulwarkFetch, type BulwarkRequestInit, type FetchClientStats, type FetchDependencyHandle,
} from './fetch/client.js';
export { type FetchDependency, STALE_HEADER, type FetchBreakerStateChange, type FetchDependencyStats } from './fetch/dependency.js';
export {
  FETCH_DEFAULTS, DEFAULT_DEPENDENCY,
  type CreateFetchOptions, type DependencyOptions, type FetchRetryOptions, type FetchBreakerOptions, type FetchAnswer,
  type FetchBulkheadOptions, type FetchHedgeOptions, type FetchCacheOptions, type FetchKeyInput,
} from './fetch/options.js';

// One call: its options, and the request shapes the client accepts.
export {
  IDEMPOTENT_METHODS, DEFAULT_KEY_HEADERS,
  type BulwarkCallOptions, type FetchInput, type RequestLike, type HeadersLike,
} from './fetch/request.js';
export type { CallContextSource } from './core/context.js';
export { SharedResponse, DRAIN_LIMIT_BYTES } from './fetch/body.js';

// The don't-retry header servers add to shed responses, and the deadline header the client sends.
export { NO_RETRY_HEADER } from './retry/classify.js';
export { TIMEOUT_HEADER } from './core/deadline-headers.js';
