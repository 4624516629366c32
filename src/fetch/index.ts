// `bulwark/fetch`: a fetch-compatible HTTP client on undici with a resilience pipeline per
// dependency. undici is imported only from this folder (a separate entry point), never from
// the core entry.
export {
  createFetch,
  type BulwarkFetch,
  type BulwarkRequestInit,
  type FetchClientStats,
  type FetchDependencyHandle,
} from './client.js';
export { FetchDependency, STALE_HEADER, type FetchBreakerStateChange, type FetchDependencyStats } from './dependency.js';
export {
  FETCH_DEFAULTS,
  DEFAULT_DEPENDENCY,
  type CreateFetchOptions,
  type DependencyOptions,
  type FetchRetryOptions,
  type FetchBreakerOptions,
  type FetchAnswer,
  type FetchBulkheadOptions,
  type FetchHedgeOptions,
  type FetchCacheOptions,
  type FetchKeyInput,
} from './options.js';
export {
  IDEMPOTENT_METHODS,
  DEFAULT_KEY_HEADERS,
  type BulwarkCallOptions,
  type DeadlineSource,
  type FetchInput,
  type RequestLike,
  type HeadersLike,
} from './request.js';
export { SharedResponse, DRAIN_LIMIT_BYTES } from './body.js';
// The don't-retry header servers add to shed responses, and the deadline header the client sends.
export { NO_RETRY_HEADER } from '../retry/classify.js';
export { TIMEOUT_HEADER } from '../core/deadline-headers.js';
