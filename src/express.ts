// Entry point `bulwark/express`: the Express 5 / Connect middleware and error handler, and the
// pieces of bulwark/http their options name, so that an Express app needs no second import.

// The middleware (mount first) and the error handler (mount last).
export {
  bulwarkMiddleware, bulwarkErrorHandler, type BulwarkExpressOptions, type BulwarkErrorHandlerOptions,
} from './http/express.js';
export { bulwarkContext } from './http/node.js';

// Shared with bulwark/http.
export { healthChecks, HealthChecks, type HealthOptions, type HealthCheckDefinition } from './http/core/health.js';
export { deadlineHeaders, type DeadlineHeadersOptions } from './core/deadline-headers.js';
export { HttpGuard, httpGuard, type HttpGuardOptions, type HttpGuardStats } from './http/core/http-guard.js';
export type { Protection, ProtectionVerdict } from './http/core/protection.js';
export { admissionControl, AdmissionControl, type AdmissionOptions, type AdmissionShedEvent } from './http/core/admission.js';
export {
  rateLimitProtection, RateLimitProtection,
  type RateLimitProtectionOptions, type HttpLimit, type HttpLimitKey, type RateLimitedEvent,
} from './http/core/rate-limit.js';
export {
  idempotencyProtection, IdempotencyProtection,
  type IdempotencyProtectionOptions, type IdempotencyOutcomeEvent, type IdempotentRun,
} from './http/core/idempotency.js';
export { RequestContext, type RequestOutcome } from './http/core/request-context.js';
export { problemForError } from './http/core/problem.js';
export { degradedHeaders, DEGRADED_HEADER } from './http/core/degraded-headers.js';
export type { RouteConfig, RouteTable } from './http/core/routes.js';
export type { TrustProxy } from './http/core/client-ip.js';
