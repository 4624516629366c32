import { rejectAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { InvalidOptionsError, ShedError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import { REQUIRED, fn, nonNegative, positive } from '../core/validate.js';
import { InvalidAdmissionError } from './errors.js';

/**
 * Capacity reservation per class: each class owns a share of the capacity that the others cannot
 * take, and whatever is not shared out is headroom that nobody uses (it absorbs spikes and retry
 * storms). In failure mode (a host down, a dependency degraded) lenders hand their share to
 * borrowers, e.g. batch work pauses and gives its 10% to critical requests.
 *
 *   1000 total, critical 20% / normal 60% / batch 10% (headroom the remaining 10%)
 *   normal mode:  critical 200, normal 600, batch 100, headroom 100
 *   failure mode: critical 300, normal 600, batch 0,   headroom 100   (batch → critical)
 *
 * Critical does not also draw on normal's pool (a `critical + normal` limit would make normal's
 * reservation a fiction), usage is per class, and the units are whatever `total` counts (the
 * enforcing gate counts concurrent requests).
 */
export interface LendingRule {
  /** The class that gives up capacity in failure mode. */
  from: string;
  /** The class that receives it. */
  to: string;
  /** Fraction of the lender's normal allocation that moves. Default 1 (all of it). */
  fraction?: number;
}

export interface ReservationPlan {
  /** Total capacity (requests in flight for the gate; QPS or anything else for planning). */
  total: number;
  /** Share of `total` per class, 0..1; they may sum to at most 1; the rest is headroom. */
  shares: Readonly<Record<string, number>>;
  /** Who lends to whom in failure mode. */
  lending?: readonly LendingRule[];
}

export interface CapacityAllocation {
  /** Capacity per class (floored to whole units). */
  classes: Record<string, number>;
  /** total − Σ classes: never allocated. */
  headroom: number;
  failureMode: boolean;
}

const EPSILON = 1e-9;

/** Validates a plan; throws INVALID_OPTIONS with the first problem found. */
export function validateReservationPlan(plan: ReservationPlan): void {
  if (!plan || typeof plan !== 'object') throw new InvalidOptionsError('a reservation plan needs { total, shares }');
  positive('reservation.total', plan.total, REQUIRED);
  const names = Object.keys(plan.shares ?? {});
  if (names.length === 0) throw new InvalidOptionsError('reservation.shares must name at least one class');
  let sum = 0;
  for (const name of names) {
    const share = plan.shares[name];
    if (typeof share !== 'number' || !(share >= 0 && share <= 1)) throw new InvalidOptionsError(`reservation.shares.${name} must be between 0 and 1, got ${String(share)}`);
    sum += share;
  }
  if (sum > 1 + EPSILON) throw new InvalidOptionsError(`reservation.shares sum to ${sum}; they may not exceed 1`);
  const lent = new Map<string, number>();
  for (const rule of plan.lending ?? []) {
    if (!names.includes(rule.from) || !names.includes(rule.to)) throw new InvalidOptionsError(`reservation.lending ${rule.from} → ${rule.to}: both classes must be in shares`);
    if (rule.from === rule.to) throw new InvalidOptionsError(`reservation.lending: ${rule.from} cannot lend to itself`);
    const fraction = rule.fraction ?? 1;
    if (typeof fraction !== 'number' || !(fraction > 0 && fraction <= 1)) throw new InvalidOptionsError(`reservation.lending ${rule.from} → ${rule.to}: fraction must be in (0, 1], got ${String(rule.fraction)}`);
    const total = (lent.get(rule.from) ?? 0) + fraction;
    if (total > 1 + EPSILON) throw new InvalidOptionsError(`reservation.lending: ${rule.from} lends more than all of its share (${total})`);
    lent.set(rule.from, total);
  }
}

/**
 * The allocation, as a pure function of the plan and the mode. Each class gets ⌊total × share⌋;
 * in failure mode each lender gives ⌊its allocation × fraction⌋ to its borrower. Rounding
 * leftovers go to headroom, so Σ classes + headroom = total always.
 */
export function allocateCapacity(plan: ReservationPlan, failureMode = false): CapacityAllocation {
  validateReservationPlan(plan);
  const base: Record<string, number> = {};
  for (const [name, share] of Object.entries(plan.shares)) base[name] = Math.floor(plan.total * share + EPSILON);
  const classes = { ...base };
  if (failureMode) {
    for (const rule of plan.lending ?? []) {
      const amount = Math.floor(base[rule.from]! * (rule.fraction ?? 1) + EPSILON);
      classes[rule.from]! -= amount;
      classes[rule.to]! += amount;
    }
  }
  let used = 0;
  for (const value of Object.values(classes)) used += value;
  return { classes, headroom: plan.total - used, failureMode };
}

export interface ReservationGateOptions extends ReservationPlan {
  /** Policy form: which class a call belongs to. Default `context.tags.class`, else its priority. */
  classify?: (context: CallContext) => string;
  /** Retry-After hint on rejection. Default 1000 ms. */
  retryAfterMs?: number;
  clock?: Clock;
  name?: string;
}

export interface ReservationRejection {
  readonly acquired: false;
  readonly reason: 'reservation';
  readonly className: string;
  /** The class's usable capacity at the time. */
  readonly limit: number;
  readonly inflight: number;
  readonly retryAfterMs: number;
}

export interface ReservationModeEvent {
  failureMode: boolean;
  allocation: CapacityAllocation;
}

export interface ReservationStats {
  failureMode: boolean;
  classes: Record<string, { allocation: number; limit: number; inflight: number; rejected: number }>;
}

const RELEASE = Symbol('release');

interface ClassState {
  readonly name: string;
  allocation: number;
  inflight: number;
  rejected: number;
  /** Classes it lends to or borrows from: their excess over allocation is charged to it. */
  readonly partners: ClassState[];
}

/** One admitted request of a class; `release()` when it ends (idempotent). */
export class ReservationPermit {
  readonly acquired = true as const;
  #gate: ReservationGate | undefined;
  #state: ClassState;

  /** @internal Permits come from the gate. */
  constructor(gate: ReservationGate, state: ClassState) {
    this.#gate = gate;
    this.#state = state;
  }

  get className(): string {
    return this.#state.name;
  }

  release(): void {
    const gate = this.#gate;
    if (gate === undefined) return;
    this.#gate = undefined;
    gate[RELEASE](this.#state);
  }
}

export type ReservationDecision = ReservationPermit | ReservationRejection;

/**
 * Enforces a reservation plan on concurrent requests: a class is admitted while its in-flight
 * count is below its usable limit.
 *
 * Lending rules, precisely:
 * - Normal mode: each class may use its own allocation, never another's (isolation).
 * - Failure mode (`setFailureMode(true)`): lenders' allocations shrink and borrowers' grow by the
 *   lent amount. Nothing is preempted: requests a lender already has in flight finish.
 * - Borrowed capacity becomes usable as it actually frees up: a class's usable limit is its
 *   allocation minus every lending partner's in-flight excess over that partner's allocation.
 *   So while batch still has 40 requests draining, critical can use 300 − 40 = 260; and after
 *   failure mode ends, batch gets its slots back only as critical's extra requests finish. The
 *   total in flight therefore never exceeds total − headroom.
 * - Headroom is never admitted.
 */
export class ReservationGate extends BasePolicy {
  readonly kind = 'reservation';
  readonly plan: ReservationPlan;
  readonly #classes = new Map<string, ClassState>();
  readonly #classify: (context: CallContext) => string;
  readonly #retryAfterMs: number;
  #failureMode = false;
  #allocation: CapacityAllocation;
  readonly #onModeChange = new EventEmitter<ReservationModeEvent>();
  /** Fires when failure mode is switched on or off. */
  readonly onModeChange = this.#onModeChange.event;

  constructor(options: ReservationGateOptions) {
    super(options?.clock, options);
    validateReservationPlan(options);
    this.plan = { total: options.total, shares: { ...options.shares }, lending: [...(options.lending ?? [])] };
    this.#retryAfterMs = nonNegative('reservation.retryAfterMs', options.retryAfterMs, 1000);
    this.#classify = fn('reservation.classify', options.classify, defaultClassify);
    this.#allocation = allocateCapacity(this.plan, false);
    for (const name of Object.keys(this.plan.shares)) {
      this.#classes.set(name, { name, allocation: this.#allocation.classes[name]!, inflight: 0, rejected: 0, partners: [] });
    }
    for (const rule of this.plan.lending!) {
      const from = this.#classes.get(rule.from)!;
      const to = this.#classes.get(rule.to)!;
      if (!from.partners.includes(to)) from.partners.push(to);
      if (!to.partners.includes(from)) to.partners.push(from);
    }
  }

  get failureMode(): boolean {
    return this.#failureMode;
  }

  /** Current allocation (a copy). */
  allocation(): CapacityAllocation {
    return { ...this.#allocation, classes: { ...this.#allocation.classes } };
  }

  /** Switches failure mode (lenders give their share to borrowers) on or off. */
  setFailureMode(on: boolean): void {
    if (on === this.#failureMode) return;
    this.#failureMode = on;
    this.#allocation = allocateCapacity(this.plan, on);
    for (const state of this.#classes.values()) state.allocation = this.#allocation.classes[state.name]!;
    if (this.#onModeChange.active) this.#onModeChange.emit({ failureMode: on, allocation: this.allocation() });
  }

  /** The usable limit of `className` now: its allocation less its lending partners' in-flight excess. */
  limitFor(className: string): number {
    return usableLimit(this.#state(className));
  }

  stats(): ReservationStats {
    const classes: ReservationStats['classes'] = {};
    for (const s of this.#classes.values()) classes[s.name] = { allocation: s.allocation, limit: usableLimit(s), inflight: s.inflight, rejected: s.rejected };
    return { failureMode: this.#failureMode, classes };
  }

  /** Admits one request of `className` if its usable capacity allows. Throws only on an unknown class. */
  tryAcquire(className: string): ReservationDecision {
    const state = this.#state(className);
    const limit = usableLimit(state);
    if (state.inflight >= limit) {
      state.rejected++;
      return { acquired: false, reason: 'reservation', className, limit, inflight: state.inflight, retryAfterMs: this.#retryAfterMs };
    }
    state.inflight++;
    return new ReservationPermit(this, state);
  }

  /** @internal */
  [RELEASE](state: ClassState): void {
    state.inflight--;
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context); // before taking a slot
    let decision: ReservationDecision;
    try {
      decision = this.tryAcquire(this.#classify(context));
    } catch (error) {
      return Promise.reject(error);
    }
    if (!decision.acquired) return Promise.reject(new ShedError('reservation', decision.retryAfterMs));
    const permit = decision;
    let work: Promise<T>;
    try {
      work = next(context);
    } catch (error) {
      permit.release();
      return Promise.reject(error);
    }
    return work.then(
      (value) => {
        permit.release();
        return value;
      },
      (error: unknown) => {
        permit.release();
        throw error;
      },
    );
  }

  #state(className: string): ClassState {
    const state = this.#classes.get(className);
    if (state === undefined) throw new InvalidAdmissionError(`unknown reservation class ${JSON.stringify(className)}; expected one of ${[...this.#classes.keys()].join(', ')}`);
    return state;
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: { total: this.plan.total, shares: { ...this.plan.shares }, lending: this.plan.lending, failureMode: this.#failureMode },
    };
  }
}

function usableLimit(state: ClassState): number {
  let limit = state.allocation;
  for (const partner of state.partners) {
    const excess = partner.inflight - partner.allocation;
    if (excess > 0) limit -= excess;
  }
  return limit > 0 ? limit : 0;
}

function defaultClassify(context: CallContext): string {
  const tagged = context.tags['class'];
  return typeof tagged === 'string' ? tagged : context.priority;
}

export function reservationGate(options: ReservationGateOptions): ReservationGate {
  return new ReservationGate(options);
}
