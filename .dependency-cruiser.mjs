// The architecture as rules (docs/adr/0001-architecture.md); test/architecture.test.ts fails on
// any violation. Run by hand: npx depcruise src --config .dependency-cruiser.mjs
//
// Layers, bottom up: core → policies → building blocks (Redis script client, rate limiting,
// idempotency) → integrations (guarded clients, fetch, HTTP server) → entry points (src/*.ts).
// Tests and test harnesses are not shipped (tsconfig.build.json leaves them out) and may import
// anything, but take part in the cycle check.

/** Files that are not part of the published package. */
export const NOT_SHIPPED = ['\\.test\\.ts$', '/test/', '/testing/', '^src/idempotency/lease-trials\\.ts$'];

/**
 * The only shipped files that import a third-party package, and which one: the integrations
 * whose client library is an optional peer dependency. The Redis and PostgreSQL stores and
 * clients take a client the caller built and describe it structurally, so they import none.
 */
export const THIRD_PARTY = {
  'src/clients/guarded-postgres.ts': ['pg'],
  'src/clients/replica-router.ts': ['pg'],
  'src/idempotency/stores/sqlite-store.ts': ['better-sqlite3'],
  'src/http/express.ts': ['express'],
  'src/http/fastify.ts': ['fastify'],
  'src/fetch/body.ts': ['undici'],
  'src/fetch/client.ts': ['undici'],
  'src/fetch/dependency.ts': ['undici'],
};

/**
 * What each folder may import besides core and itself: a folder path ends in `/`, anything
 * else names one file. A folder missing here may import only core.
 */
export const MAY_IMPORT = {
  // Policies stand alone on core; cross-policy ideas (budgets, deadlines) are core interfaces.
  timeout: [],
  retry: [],
  breaker: [],
  bulkhead: [],
  fallback: [],
  throttle: [],
  fault: [],
  concurrency: [],
  shedding: [],
  backpressure: [],
  coalesce: [],
  // A hedge is sent only for what a retry would retry: one definition of a transient failure.
  hedge: ['retry/classify.ts'],
  // A stale cache refreshes each key once, however many callers ask: that is coalescing.
  cache: ['coalesce/'],
  // Building blocks: the Redis script client bounds each call with a timeout; the Redis rate
  // limiter and the idempotency stores put a breaker (and timeout) in front of their store; the
  // PostgreSQL store shares query cancellation and error classification with the guarded client;
  // the engine retries a failed completion write with the library's own retry.
  'redis-client': ['timeout/'],
  ratelimit: ['breaker/', 'redis-client/'],
  idempotency: ['breaker/', 'timeout/', 'retry/', 'redis-client/', 'clients/pg-cancel.ts', 'clients/postgres-errors.ts'],
  // Integrations compose policies into a ready pipeline for one kind of dependency or server.
  clients: ['retry/', 'breaker/', 'bulkhead/', 'timeout/', 'redis-client/'],
  fetch: ['retry/', 'breaker/', 'bulkhead/', 'timeout/', 'hedge/', 'coalesce/', 'cache/'],
  http: ['shedding/', 'ratelimit/', 'idempotency/', 'retry/classify.ts'],
};

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const exactly = (file) => `^${escape(file)}$`;
const allowed = (entry) => `^src/${escape(entry)}${entry.endsWith('/') ? '' : '$'}`;
const folders = ['core', ...Object.keys(MAY_IMPORT)].map(escape).join('|');

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: 'core-stands-alone',
      comment: 'src/core is what every policy shares: it imports only itself and node: builtins.',
      severity: 'error',
      from: { path: '^src/core/', pathNot: NOT_SHIPPED },
      to: { pathNot: '^src/core/', dependencyTypesNot: ['core'] },
    },
    {
      name: 'no-cycles',
      comment: 'No import cycles, type-only imports included: a shared type goes to a leaf file.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'resolvable',
      comment: 'Every import resolves (an unresolved one would escape the other rules).',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    {
      name: 'third-party-only-in-adapters',
      comment: 'Only the listed integration files import a package, so the core entry needs none.',
      severity: 'error',
      from: { path: '^src/', pathNot: [...NOT_SHIPPED, ...Object.keys(THIRD_PARTY).map(exactly)] },
      to: { path: 'node_modules/' },
    },
    ...Object.entries(THIRD_PARTY).map(([file, packages]) => ({
      name: 'adapter-imports-its-own-library',
      comment: `${file} imports only ${packages.join(', ')}.`,
      severity: 'error',
      from: { path: exactly(file) },
      to: { path: 'node_modules/', pathNot: packages.map((p) => `node_modules/(@types/)?${escape(p)}/`) },
    })),
    ...Object.entries(MAY_IMPORT).map(([folder, entries]) => ({
      name: 'folder-imports-what-it-may',
      comment: `src/${folder} imports core${entries.length > 0 ? `, ${entries.join(', ')}` : ''} and itself.`,
      severity: 'error',
      from: { path: `^src/${escape(folder)}/`, pathNot: NOT_SHIPPED },
      to: { path: '^src/', pathNot: ['^src/core/', `^src/${escape(folder)}/`, ...entries.map(allowed)] },
    })),
    {
      name: 'folder-imports-what-it-may',
      comment: 'A folder not listed in MAY_IMPORT is a policy: it imports core and itself.',
      severity: 'error',
      from: { path: '^src/([^/]+)/', pathNot: [...NOT_SHIPPED, `^src/(${folders})/`] },
      to: { path: '^src/', pathNot: ['^src/core/', '^src/$1/'] },
    },
    {
      name: 'http-core-is-framework-neutral',
      comment: 'src/http/core never imports the node:http, Express or Fastify adapters built on it.',
      severity: 'error',
      from: { path: '^src/http/core/', pathNot: NOT_SHIPPED },
      to: { path: '^src/http/[^/]+\\.ts$' },
    },
  ],
  options: {
    // Type-only imports count: a cycle through types is still a cycle between modules.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
  },
};
