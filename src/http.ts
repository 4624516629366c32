// Entry point `bulwark/http`: the framework-neutral HTTP server core (deadlines, client IP,
// protections, health, problem responses) and the node:http adapter. The Fastify and Express
// adapters have entry points of their own (bulwark/fastify, bulwark/express).

// The node:http adapter.
export {
  bulwarkHandler, bulwarkContext, readBody, readJson,
  type BulwarkNodeHandler, type BulwarkNodeOptions, type ReadBodyOptions,
} from './http/node.js';

// The guard every adapter runs: the steps of the request pipeline, in order.
export {
  httpGuard, HttpGuard,
  type HttpGuardOptions, type HttpGuardStats, type GuardDecision, type RequestView,
  type DeadlineHeaderOptions, type DeadlineEvent, type RejectEvent, type RejectReason,
} from './http/core/http-guard.js';
export type { Protection, ProtectionVerdict } from './http/core/protection.js';
export { admissionControl, AdmissionControl, type AdmissionOptions, type AdmissionShedEvent, type AdmissionShedder } from './http/core/admission.js';
export {
  rateLimitProtection, RateLimitProtection,
  type RateLimitProtectionOptions, type HttpLimit, type HttpLimitKey, type RateLimitedEvent,
} from './http/core/rate-limit.js';
export {
  idempotencyProtection, IdempotencyProtection,
  type IdempotencyProtectionOptions, type IdempotencyOutcomeEvent, type IdempotencyOutcomeKind, type IdempotentRun,
} from './http/core/idempotency.js';

// One request as a handler sees it, and how an adapter answers it.
export {
  RequestContext, RequestDeadlineExceededError, ClientDisconnectedError,
  type RequestContextInit, type RequestEndListener, type RequestOutcome, type ResponseChannel, type RequestHeaders, type ProducedResponse, type ResponseHold,
} from './http/core/request-context.js';
export type { RouteConfig, RouteTable, RouteFilter, ResolvedRoute, RouteResolver } from './http/core/routes.js';
export { clientIpResolver, type ClientIpResolver, type TrustProxy } from './http/core/client-ip.js';
export {
  nodeResponseChannel, nodeRequestView, sendNodeResponse, contextOf, holdNodeResponse, HeldResponse,
} from './http/core/node-io.js';

// Deadlines across services: reading them from a request, passing them on to the next call.
export { deadlineHeaders, DEADLINE_HEADER, TIMEOUT_HEADER, type DeadlineHeadersOptions, type DeadlineCarrier } from './core/deadline-headers.js';
export {
  resolveDeadline,
  type DeadlineOrigin, type DeadlineCombine, type DeadlineInput, type ParsedDeadline, type HeaderValue,
} from './http/core/deadline.js';

// Health endpoints.
export {
  healthChecks, HealthChecks,
  type HealthOptions, type HealthCheckDefinition, type HealthProbe, type HealthReport, type CheckResult, type CheckStatus,
} from './http/core/health.js';

// Problem responses (RFC 9457), the degraded-answer marker and rate-limit headers.
export {
  problemForError, problemResponse, overloadedResponse, rateLimitedResponse, InvalidRequestError, PROBLEM_CONTENT_TYPE,
  RETRY_HINT_HEADER, RETRY_HINT_NO, BUSY_RETRY_AFTER_MS,
  type HttpResponse, type ProblemDetails, type ProblemInput,
} from './http/core/problem.js';
export { degradedHeaders, DEGRADED_HEADER } from './http/core/degraded-headers.js';
export {
  rateLimitHeaders, rateLimitedHeaders, type RateLimitHeaderFormat, type RateLimitInfo,
} from './http/core/rate-limit-headers.js';
