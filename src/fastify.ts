// Entry point `bulwark/fastify`: the Fastify 5 plugin, and the pieces of bulwark/http its options
// name, so that a Fastify app needs no second import.

// The plugin (also the default export) and the error handler (`app.setErrorHandler(...)`).
export {
  fastifyBulwark, fastifyBulwark as default, fastifyErrorHandler,
  type BulwarkFastifyOptions, type BulwarkFastifyErrorHandlerOptions,
} from './http/fastify.js';

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
