import { systemClock, type Clock } from './clock.js';
import { CallContext, type CallOptions, type Operation } from './context.js';
import { BulwarkError, InvalidOptionsError } from './errors.js';
import { meaningOf } from './error-table.js';
import type { Event } from './events.js';
import { PolicyTelemetry, subscribeAll, type PolicyEvent, type PolicyIdentity, type PolicyOutcome } from './telemetry.js';

/** Continues a call inward: the next policy, or finally the caller's operation. */
export type Next<T> = (context: CallContext) => Promise<T>;

/** How a policy describes itself (tests, docs, the dashboard). */
export interface PolicyDescription {
  kind: string;
  name?: string;
  options: Record<string, unknown>;
  policies?: PolicyDescription[];
}

/**
 * A policy. `R` is what it may answer instead of the operation's result (a fallback's value):
 * a call returning `T` resolves to `T | R`. Policies that only pass results through have
 * `R = never`, so their calls resolve to `T`. `In` is what the policy's result predicate
 * (`handleResult`, `isResultFailure`) reads: the operation's result must be one (default: any value).
 */
export interface Policy<R = never, In = unknown> {
  readonly kind: string;
  /** The `name` option: names the policy in its events, stats and the registry. */
  readonly name?: string | undefined;
  readonly clock: Clock;
  /** Every event of this policy in one uniform shape (see PolicyEvent). Free when nobody listens. */
  readonly onEvent: Event<PolicyEvent>;
  /** Counters and gauges since the policy was built. */
  stats(): object;
  /**
   * Type-only, never set at run time: carries `R` so that `pipeline()` can compute the union
   * of its policies' substitutes (a generic method's return type cannot be inferred from).
   * Boxed so that an optional `never` does not read back as `undefined`.
   */
  readonly '~substitute'?: { readonly value: R };
  /** Type-only, never set at run time: carries `In` (a parameter, so that `pipeline()` intersects them). */
  readonly '~accepts'?: (result: In) => void;
  /** Runs `operation` under this policy. */
  execute<T extends In>(operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T | R>;
  /** The composition hook: do this policy's part around `next`. */
  run<T extends In>(context: CallContext, next: Next<T>): Promise<T | R>;
  describe(): PolicyDescription;
}

/** Any policy at all, whatever it substitutes or reads (for lists of policies). */
export type AnyPolicy = Policy<unknown, never>;

/** What a policy (or any member of a union of policies) may answer instead of the operation's result. */
export type SubstituteOf<P> = P extends { readonly '~substitute'?: { readonly value: infer R } } ? R : never;

/** What the operation's result must be for every policy of a union to read it (the intersection of their `In`). */
export type AcceptedBy<P> = [P] extends [{ readonly '~accepts'?: (result: infer In) => void }] ? In : unknown;

/**
 * The synchronous half of a policy whose whole job on the way in is an immediate admission and
 * on the way out is bookkeeping (retry's first attempt, a closed breaker, a bulkhead with a free
 * slot). A pipeline runs adjacent such policies as one layer with a single `then` instead of one
 * promise hop each (a hop is a large share of a call that is admitted and succeeds, which most
 * are; see docs/benchmarks.md). Anything else (queueing, a half-open breaker, later attempts) goes through
 * the policy's own `run`, so both paths share one implementation of every decision.
 */
export interface FusablePolicy {
  /** Admits the call now and returns what the exit needs, or NOT_FUSED to take `run` instead. Never throws. */
  fusedEnter(context: CallContext): unknown;
  /** The work ended with `value` (bookkeeping; a throw turns the call into a failure, as in `run`). */
  fusedExitValue(ticket: unknown, value: unknown): void;
  /**
   * The work failed. Returns undefined to pass the error outward, or the call's outcome when the
   * policy takes over from here (a retry's next attempts, each through `inner`).
   */
  fusedExitError(ticket: unknown, error: unknown, context: CallContext, inner: Next<unknown>): Promise<unknown> | undefined;
}

/** What `fusedEnter` returns when the call cannot be admitted at once. */
export const NOT_FUSED: unique symbol = Symbol('bulwark.notFused');

function isFusable(policy: AnyPolicy): policy is AnyPolicy & FusablePolicy {
  return typeof (policy as Partial<FusablePolicy>).fusedEnter === 'function';
}

/**
 * Two or three adjacent fusable policies as one layer (a longer run is split into several).
 * `layered[k]` is the plain chain from policy k inward (`layered[n]` is what follows the group):
 * a call enters the policies in order until one says NOT_FUSED, runs the rest through `layered`,
 * and exits the entered ones innermost first, as their own `run`s would. Tickets live in three
 * locals and each position has its own call site, so a call allocates only its two handlers.
 */
function fusedLayer(group: readonly FusablePolicy[], layered: readonly Next<unknown>[]): Next<unknown> {
  const [a, b, c] = group as [FusablePolicy, FusablePolicy, FusablePolicy | undefined];
  const exitValue = (i: number, ticket: unknown, value: unknown): void => {
    if (i === 0) a.fusedExitValue(ticket, value);
    else if (i === 1) b.fusedExitValue(ticket, value);
    else c!.fusedExitValue(ticket, value);
  };
  const exitError = (i: number, ticket: unknown, error: unknown, context: CallContext): Promise<unknown> | undefined => {
    if (i === 0) return a.fusedExitError(ticket, error, context, layered[1]!);
    if (i === 1) return b.fusedExitError(ticket, error, context, layered[2]!);
    return c!.fusedExitError(ticket, error, context, layered[3]!);
  };
  const ticketAt = (i: number, t0: unknown, t1: unknown, t2: unknown): unknown => (i === 0 ? t0 : i === 1 ? t1 : t2);

  /** Exits positions `from` down to 0 with a value. */
  const succeed = (context: CallContext, from: number, t0: unknown, t1: unknown, t2: unknown, value: unknown): unknown => {
    for (let i = from; i >= 0; i--) {
      try {
        exitValue(i, ticketAt(i, t0, t1, t2), value);
      } catch (error) {
        return fail(context, i - 1, t0, t1, t2, error);
      }
    }
    return value;
  };

  /** Exits positions `from` down to 0 with an error, until one takes over (a retry). */
  const fail = (context: CallContext, from: number, t0: unknown, t1: unknown, t2: unknown, error: unknown): unknown => {
    for (let i = from; i >= 0; i--) {
      let outcome: Promise<unknown> | undefined;
      try {
        outcome = exitError(i, ticketAt(i, t0, t1, t2), error, context);
      } catch (thrown) {
        error = thrown;
        continue;
      }
      if (outcome === undefined) continue;
      if (i === 0) return outcome;
      return outcome.then(
        (value) => succeed(context, i - 1, t0, t1, t2, value),
        (failure) => fail(context, i - 1, t0, t1, t2, failure),
      );
    }
    throw error;
  };

  return (context) => {
    let entered = 0;
    let t1: unknown;
    let t2: unknown;
    const t0 = a.fusedEnter(context);
    if (t0 !== NOT_FUSED) {
      entered = 1;
      t1 = b.fusedEnter(context);
      if (t1 !== NOT_FUSED) {
        entered = 2;
        if (c !== undefined) {
          t2 = c.fusedEnter(context);
          if (t2 !== NOT_FUSED) entered = 3;
        }
      }
    }
    let work: Promise<unknown>;
    try {
      work = layered[entered]!(context);
    } catch (error) {
      work = Promise.reject(error);
    }
    if (entered === 0) return work;
    const last = entered - 1;
    return work.then(
      (value) => succeed(context, last, t0, t1, t2, value),
      (error) => fail(context, last, t0, t1, t2, error),
    );
  };
}

/** The innermost layer: calls the operation, turning sync throws and values into a promise. */
export const invokeOperation: Next<any> = (context) => {
  try {
    return Promise.resolve(context.operation(context));
  } catch (error) {
    return Promise.reject(error);
  }
};

/** Builds the root context (bad call options become a rejection, never a throw) and starts the chain. */
function startCall<T>(clock: Clock, operation: Operation<T>, options: CallOptions | AbortSignal | undefined, start: Next<T>): Promise<T> {
  let context: CallContext;
  try {
    context = CallContext.root(clock, operation, options);
  } catch (error) {
    return Promise.reject(error);
  }
  return start(context);
}

/** Shared plumbing: `execute` is `run` with a fresh root context and the operation as `next`. */
export abstract class BasePolicy<R = never, In = unknown> implements Policy<R, In> {
  abstract readonly kind: string;
  readonly name: string | undefined;
  readonly clock: Clock;
  /** The uniform event stream; subclasses build their typed emitters with `telemetry.emitter()`. */
  protected readonly telemetry: PolicyTelemetry;
  readonly onEvent: Event<PolicyEvent>;
  declare readonly '~substitute'?: { readonly value: R };
  declare readonly '~accepts'?: (result: In) => void;

  /**
   * `identity` is usually the policy's options object: its `name` and `registry` are read.
   * `telemetry`: report through another policy's stream instead of one of its own, as the
   * breakers of a keyed breaker report as the keyed breaker (one series, never one per key).
   */
  constructor(clock: Clock | undefined, identity?: PolicyIdentity, telemetry?: PolicyTelemetry) {
    this.clock = clock ?? systemClock;
    if (identity?.name !== undefined && (typeof identity.name !== 'string' || identity.name === '')) {
      throw new InvalidOptionsError(`a policy's name must be a non-empty string, got ${String(identity.name)}`);
    }
    this.name = identity?.name;
    this.telemetry = telemetry ?? new PolicyTelemetry(this, identity);
    this.onEvent = this.telemetry.onEvent;
  }

  execute<T extends In>(operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T | R> {
    return startCall<T | R>(this.clock, operation, options, (context) => this.run(context, invokeOperation as Next<T>));
  }

  abstract run<T extends In>(context: CallContext, next: Next<T>): Promise<T | R>;
  abstract describe(): PolicyDescription;

  /** Counters and gauges since the policy was built, each policy's own type. */
  abstract stats(): object;
}

/**
 * Policies composed outermost first: `pipeline(fallback, retry, breaker, bulkhead, timeout)`.
 * The chain of closures is built once here, so a call allocates only its context; adjacent
 * fusable policies (retry, breaker, bulkhead) share one layer (see FusablePolicy).
 */
export class Pipeline<R = never, In = unknown> implements Policy<R, In> {
  readonly kind = 'pipeline';
  readonly name: string | undefined;
  readonly clock: Clock;
  readonly policies: readonly AnyPolicy[];
  readonly #entry: Next<any>;
  readonly #telemetry: PolicyTelemetry;
  declare readonly '~substitute'?: { readonly value: R };
  declare readonly '~accepts'?: (result: In) => void;

  /**
   * The pipeline's own `call` events (one per `execute`, with its outcome and duration) and every
   * event of its policies: one subscription sees the whole stack.
   */
  readonly onEvent: Event<PolicyEvent> = (listener) =>
    subscribeAll([this.#telemetry.onEvent, ...this.policies.map((p) => p.onEvent)], listener);

  constructor(policies: readonly AnyPolicy[], options: PipelineOptions = {}) {
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
      throw new InvalidOptionsError(`pipeline name must be a non-empty string, got ${String(options.name)}`);
    }
    this.name = options.name;
    this.#telemetry = new PolicyTelemetry(this, options);
    this.policies = policies.flatMap((p) => (p instanceof Pipeline ? p.policies : [p]));
    this.clock = options.clock ?? this.policies[0]?.clock ?? systemClock;
    checkOneClock(this.clock, this.policies);
    let next: Next<any> = invokeOperation;
    for (let i = this.policies.length - 1; i >= 0; i--) {
      let first = i;
      while (first > 0 && i - first < 2 && isFusable(this.policies[first]!) && isFusable(this.policies[first - 1]!)) first--;
      if (first === i) {
        next = layer(this.policies[i]!, next);
        continue;
      }
      // policies[first..i] are fusable: one layer, with the plain chains it falls back to.
      const group = this.policies.slice(first, i + 1) as (AnyPolicy & FusablePolicy)[];
      const layered: Next<unknown>[] = [next];
      for (let k = group.length - 1; k >= 0; k--) layered.unshift(layer(group[k]!, layered[0]!));
      next = fusedLayer(group, layered) as Next<any>;
      i = first;
    }
    this.#entry = next;
  }

  execute<T extends In>(operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T | R> {
    if (this.#telemetry.active) return this.#observed(operation, options);
    return startCall<T | R>(this.clock, operation, options, this.#entry);
  }

  /** A call somebody watches: its outcome and duration become a `call` event. */
  #observed<T>(operation: Operation<T>, options: CallOptions | AbortSignal | undefined): Promise<T | R> {
    const started = this.clock.now();
    const report = (outcome: PolicyOutcome, code: string | undefined): void => {
      if (!this.#telemetry.active) return;
      this.#telemetry.emit('call', { outcome, durationMs: this.clock.now() - started, attributes: { code } });
    };
    return startCall<T | R>(this.clock, operation, options, this.#entry).then(
      (value) => {
        report('success', undefined);
        return value;
      },
      (error: unknown) => {
        report(meaningOf(error)?.origin === 'local' ? 'rejected' : 'failure', error instanceof BulwarkError ? error.code : undefined);
        throw error;
      },
    );
  }

  /** Each policy's stats, outermost first. */
  stats(): { policies: { kind: string; name: string | undefined; stats: object }[] } {
    return { policies: this.policies.map((p) => ({ kind: p.kind, name: p.name, stats: p.stats() })) };
  }

  run<T extends In>(context: CallContext, next: Next<T>): Promise<T | R> {
    // Nested in another pipeline: compose on the fly (rare; flattening avoids it at build time).
    let chain: Next<unknown> = next;
    for (let i = this.policies.length - 1; i >= 0; i--) chain = layer(this.policies[i]!, chain);
    return chain(context) as Promise<T | R>;
  }

  describe(): PolicyDescription {
    return { kind: 'pipeline', ...(this.name !== undefined ? { name: this.name } : {}), options: {}, policies: this.policies.map((p) => p.describe()) };
  }
}

/**
 * A pipeline runs on one clock: its call's deadline, each policy's timers and each policy's
 * measurements must share one time line. With a virtual clock in one policy and the system clock
 * in another, a test would advance time that half the pipeline never sees (and in production two
 * clocks would disagree on deadlines), so a mix is refused when the pipeline is built.
 */
function checkOneClock(clock: Clock, policies: readonly AnyPolicy[]): void {
  const others = policies.filter((p) => p.clock !== clock);
  if (others.length === 0) return;
  const same = policies.filter((p) => p.clock === clock).map((p) => p.kind);
  throw new InvalidOptionsError(
    `pipeline() policies use different clocks (${same.join(', ') || 'the pipeline'} on one, ${others.map((p) => p.kind).join(', ')} on another): ` +
      'pass the same clock to every policy (an omitted clock is the system clock)',
  );
}

/** One policy around `inner`. */
function layer(policy: AnyPolicy, inner: Next<unknown>): Next<unknown> {
  // The types were checked where the pipeline was typed (pipeline()); here every result is unknown.
  return (context) => policy.run(context, inner as Next<never>);
}

/**
 * Composes policies, outermost first. A call returning `T` resolves to `T` plus whatever the
 * policies may substitute: `pipeline(fallback({ fallback: [] }), retry())` resolves to `T | never[]`.
 * The operation's result must suit every policy's result predicate (`retry({ handleResult:
 * (r: Response) => ... })` takes operations that return a Response).
 */
export function pipeline<P extends AnyPolicy[]>(...policies: P): Pipeline<SubstituteOf<P[number]>, AcceptedBy<P[number]>>;
/** `pipeline({ name: 'inventory' }, retry(), breaker())`: a named pipeline (events, stats, registry). */
export function pipeline<P extends AnyPolicy[]>(options: PipelineOptions, ...policies: P): Pipeline<SubstituteOf<P[number]>, AcceptedBy<P[number]>>;
export function pipeline(...args: unknown[]): Pipeline<unknown, unknown> {
  const first = args[0];
  const named = first !== null && typeof first === 'object' && typeof (first as Partial<AnyPolicy>).run !== 'function';
  const options = named ? (first as PipelineOptions) : {};
  const policies = named ? args.slice(1) : args;
  for (const p of policies) {
    if (!p || typeof (p as Partial<AnyPolicy>).run !== 'function') throw new InvalidOptionsError('pipeline() takes policies (objects with run/execute/describe)');
  }
  return new Pipeline(policies as AnyPolicy[], options);
}

/** Options of a named pipeline. */
export interface PipelineOptions extends PolicyIdentity {
  /** Only for a pipeline built with `new Pipeline(...)`: the clock when no policy gives one. */
  clock?: Clock;
}
