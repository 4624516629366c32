// The framework-neutral HTTP server core (no framework imports). Adapters: ../node.ts,
// ../fastify.ts, ../express.ts.
export * from './problem.js';
export * from './rate-limit-headers.js';
export * from './deadline.js';
export * from '../../core/deadline-headers.js';
export * from './client-ip.js';
export * from './routes.js';
export {
  RequestContext, RequestDeadlineExceededError, ClientDisconnectedError,
  type RequestOutcome, type ResponseChannel, type RequestHeaders, type ProducedResponse, type ResponseHold,
} from './request-context.js';
export * from './admission.js';
export * from './rate-limit.js';
export * from './idempotency.js';
export * from './protection.js';
export * from './http-guard.js';
export * from './health.js';
