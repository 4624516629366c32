import { systemClock, type Clock } from './clock.js';
import { CallContext, type CallOptions, type Operation } from './context.js';
import { InvalidOptionsError } from './errors.js';

/** Continues a call inward: the next policy, or finally the caller's operation. */
export type Next<T> = (context: CallContext) => Promise<T>;

/** How a policy describes itself (tests, docs, the dashboard). */
export interface PolicyDescription {
  kind: string;
  name?: string;
  options: Record<string, unknown>;
  policies?: PolicyDescription[];
}

export interface Policy {
  readonly kind: string;
  readonly clock: Clock;
  /** Runs `operation` under this policy. */
  execute<T>(operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T>;
  /** The composition hook: do this policy's part around `next`. */
  run<T>(context: CallContext, next: Next<T>): Promise<T>;
  describe(): PolicyDescription;
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
export abstract class BasePolicy implements Policy {
  abstract readonly kind: string;
  readonly clock: Clock;

  constructor(clock: Clock | undefined) {
    this.clock = clock ?? systemClock;
  }

  execute<T>(operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T> {
    return startCall(this.clock, operation, options, (context) => this.run(context, invokeOperation));
  }

  abstract run<T>(context: CallContext, next: Next<T>): Promise<T>;
  abstract describe(): PolicyDescription;
}

/**
 * Policies composed outermost first: `pipeline(fallback, retry, breaker, bulkhead, timeout)`.
 * The chain of closures is built once here, so a call allocates only its context.
 */
export class Pipeline implements Policy {
  readonly kind = 'pipeline';
  readonly clock: Clock;
  readonly policies: readonly Policy[];
  readonly #entry: Next<any>;

  constructor(policies: readonly Policy[], clock?: Clock) {
    this.policies = policies.flatMap((p) => (p instanceof Pipeline ? p.policies : [p]));
    this.clock = clock ?? this.policies[0]?.clock ?? systemClock;
    let next: Next<any> = invokeOperation;
    for (let i = this.policies.length - 1; i >= 0; i--) {
      const policy = this.policies[i]!;
      const inner = next;
      next = (context) => policy.run(context, inner);
    }
    this.#entry = next;
  }

  execute<T>(operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T> {
    return startCall(this.clock, operation, options, this.#entry);
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    // Nested in another pipeline: compose on the fly (rare; flattening avoids it at build time).
    let chain: Next<T> = next;
    for (let i = this.policies.length - 1; i >= 0; i--) {
      const policy = this.policies[i]!;
      const inner = chain;
      chain = (ctx) => policy.run(ctx, inner);
    }
    return chain(context);
  }

  describe(): PolicyDescription {
    return { kind: 'pipeline', options: {}, policies: this.policies.map((p) => p.describe()) };
  }
}

/** Composes policies, outermost first. */
export function pipeline(...policies: Policy[]): Pipeline {
  for (const p of policies) {
    if (!p || typeof p.run !== 'function') throw new InvalidOptionsError('pipeline() takes policies (objects with run/execute/describe)');
  }
  return new Pipeline(policies);
}
