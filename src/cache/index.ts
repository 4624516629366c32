export { StaleCachePolicy, staleCache, type StaleCacheOptions, type StaleServedEvent, type RevalidateErrorEvent, type CachePeek } from './stale-cache.js';
