import { PRIORITIES, type Priority } from '../../core/context.js';
import { InvalidOptionsError } from '../../core/errors.js';
import { EventEmitter } from '../../core/events.js';
import { fn } from '../../core/validate.js';
import type { LoadShedder, ShedReason, ShedRejection } from '../../shedding/shedder.js';
import type { Protection, ProtectionVerdict } from './protection.js';
import { overloadedResponse, problemResponse, type HttpResponse } from './problem.js';
import type { RequestContext } from './request-context.js';

/** What admission control needs from a shedder: `loadShedder(...)` from `bulwark` fits. */
export type AdmissionShedder = Pick<LoadShedder, 'tryAdmit' | 'admit' | 'describe'>;

export interface AdmissionOptions {
  /** The load shedder that decides (capacity, thresholds per priority, optional queue). */
  shedder: AdmissionShedder;
  /**
   * A request header that sets the priority (e.g. `x-priority: low` from a batch client).
   * Unknown values are ignored (the route's priority applies): never a crash, never a 400.
   * `critical` from a header is always ignored: a client cannot make itself unsheddable.
   */
  priorityHeader?: string;
  /**
   * May the header raise a request above its route's priority? Default false: it can only lower
   * it (a batch job marking itself `low`). Turn on only behind a gateway that sets the header.
   */
  headerMayRaise?: boolean;
  /**
   * Builds the answer to a shed request (default: a 503 problem+json with `Retry-After` and
   * `Bulwark-Retry: no`; a request shed for its deadline gets 504 `DEADLINE_EXCEEDED`).
   */
  respond?: (rejection: ShedRejection, request: RequestContext) => HttpResponse;
  name?: string;
}

export interface AdmissionShedEvent {
  route: string;
  priority: Priority;
  reason: ShedReason;
  retryAfterMs: number;
}

/** Rank of each priority: lower is more important. */
const RANK: Readonly<Record<Priority, number>> = Object.freeze({ critical: 0, high: 1, normal: 2, low: 3, 'best-effort': 4 });

/**
 * Admission control (load shedding) as a step of the request pipeline: each request asks the
 * shedder for a slot with its priority and deadline; the slot is released when the response
 * ends (or the client leaves). Shed requests get 503 + `Retry-After` + `Bulwark-Retry: no`
 * (retries happen at one layer only: retrying at every tier multiplies the load). Critical routes (`critical: true` or priority
 * `critical`: health, auth) are never shed; they still count towards utilisation.
 *
 * Synchronous (no promise) when the shedder has no wait queue.
 */
export class AdmissionControl implements Protection {
  readonly name: string;
  readonly capturesResponses = false;
  readonly shedder: AdmissionShedder;
  readonly #header: string | undefined;
  readonly #mayRaise: boolean;
  readonly #respond: ((rejection: ShedRejection, request: RequestContext) => HttpResponse) | undefined;
  readonly #queued: boolean;
  readonly #onShed = new EventEmitter<AdmissionShedEvent>();
  /** Fires for every shed request. */
  readonly onShed = this.#onShed.event;

  constructor(options: AdmissionOptions) {
    const shedder = options?.shedder;
    if (!shedder || typeof shedder.tryAdmit !== 'function' || typeof shedder.admit !== 'function') {
      throw new InvalidOptionsError('admission: a shedder is required (loadShedder({ capacity, ... }))');
    }
    this.shedder = shedder;
    if (options.priorityHeader !== undefined && (typeof options.priorityHeader !== 'string' || options.priorityHeader.length === 0)) {
      throw new InvalidOptionsError('admission.priorityHeader must be a header name');
    }
    this.#header = options.priorityHeader?.toLowerCase();
    this.#mayRaise = options.headerMayRaise ?? false;
    this.#respond = fn('admission.respond', options.respond);
    this.name = options.name ?? 'admission';
    // Without a wait queue a decision is immediate: use the synchronous path (no promise per request).
    const description = typeof shedder.describe === 'function' ? shedder.describe() : undefined;
    this.#queued = description?.options?.['queue'] !== undefined;
  }

  /** The priority a request is admitted with: route settings, optionally adjusted by the header. */
  priorityOf(request: RequestContext): Priority {
    const route: Priority = request.critical ? 'critical' : request.priority;
    if (this.#header === undefined || route === 'critical') return route;
    const raw = request.headers[this.#header];
    const value = typeof raw === 'string' ? raw.trim().toLowerCase() : undefined;
    if (value === undefined || value === 'critical' || !(PRIORITIES as readonly string[]).includes(value)) return route;
    const asked = value as Priority;
    return this.#mayRaise || RANK[asked] >= RANK[route] ? asked : route;
  }

  check(request: RequestContext): ProtectionVerdict | Promise<ProtectionVerdict> {
    const priority = this.priorityOf(request);
    const deadline = request.deadline === Infinity ? undefined : request.deadline;
    if (!this.#queued || priority === 'critical') return this.#settle(this.shedder.tryAdmit(priority, deadline), request);
    return this.shedder.admit(priority, deadline, request.signal).then((admission) => this.#settle(admission, request));
  }

  #settle(admission: ReturnType<AdmissionShedder['tryAdmit']>, request: RequestContext): ProtectionVerdict {
    if (admission.admitted) {
      // A request that ended while it waited for its slot gives it straight back.
      if (request.ended) admission.release();
      else request.onEnd(() => admission.release());
      return undefined;
    }
    if (this.#onShed.active) {
      this.#onShed.emit({ route: request.route.name, priority: admission.priority, reason: admission.reason, retryAfterMs: admission.retryAfterMs });
    }
    if (this.#respond !== undefined) return this.#respond(admission, request);
    if (admission.reason === 'deadline') {
      // Not overload: the request's own deadline leaves too little time. 504, as the guard
      // answers a deadline that passed before the request arrived; no Retry-After, since the
      // same request cannot succeed later.
      return problemResponse({
        status: 504,
        title: 'Deadline exceeded',
        detail: `The request's deadline left too little time to serve it (budget ${Math.round(request.budgetMs)} ms); the handler was not run.`,
        code: 'DEADLINE_EXCEEDED',
      });
    }
    return overloadedResponse(admission.retryAfterMs, `The server is overloaded and shed this ${admission.priority}-priority request (${admission.reason}).`);
  }
}

export function admissionControl(options: AdmissionOptions): AdmissionControl {
  return new AdmissionControl(options);
}
