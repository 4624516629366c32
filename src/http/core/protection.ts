import type { HttpResponse } from './problem.js';
import type { RequestContext } from './request-context.js';

/**
 * A step in the request pipeline that may answer instead of the handler: a rate limiter, an
 * idempotency layer, admission control. Return `undefined` to let the request continue (after
 * `request.setHeader(...)` / `request.onEnd(...)` as needed) or a response to send instead.
 * Steps run in order after the deadline checks; sync steps cost no promise.
 */
export interface Protection {
  readonly name: string;
  check(request: RequestContext): ProtectionVerdict | PromiseLike<ProtectionVerdict>;
  /**
   * Defined by steps that need the request body (idempotency fingerprints it): they run after
   * the other steps, once the adapter has the body, and only for requests where this is true
   * (so other requests are never buffered).
   */
  needsBody?(request: RequestContext): boolean;
  /**
   * `false` promises that this step never calls `request.captureResponse()`. When every step
   * promises it, adapters skip their response-recording hook, which otherwise runs on every
   * request. Default: the step may capture.
   */
  readonly capturesResponses?: boolean;
}

export type ProtectionVerdict = HttpResponse | undefined | void;
