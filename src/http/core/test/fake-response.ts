// What the guard's tests stand in for an adapter: a response object and the channel the guard
// writes to it through.
import type { HttpResponse } from '../problem.js';
import type { RequestContext, ResponseChannel } from '../request-context.js';

/** A stand-in for an adapter's response object. */
export class FakeResponse {
  started = false;
  sent: HttpResponse | undefined;
  context: RequestContext | undefined;
  capturing = false;
  /** What the adapter would do when the response closes. */
  close(status = this.sent?.status ?? 200, completed = true): void {
    const ctx = this.context!;
    if (!completed) ctx.abort(new Error('client gone'));
    ctx.end({ status, completed, durationMs: ctx.clock.now() - ctx.startedAt });
  }
}

export const channel: ResponseChannel<FakeResponse> = {
  started: (r) => r.started,
  send: (r, response) => { r.started = true; r.sent = response; },
  watch: (r, context) => { r.context = context; },
  capture: (r) => { r.capturing = true; },
  hold: (r) => { r.capturing = true; },
};
