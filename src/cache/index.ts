export { StaleCachePolicy, staleCache, type StaleCacheOptions, type StaleCacheStats, type StaleServedEvent, type RevalidateErrorEvent, type CachePeek } from './stale-cache.js';
