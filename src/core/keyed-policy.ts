import type { Clock } from './clock.js';
import { CallContext, type CallOptions, type Operation } from './context.js';
import { InvalidInputError } from './errors.js';
import { BasePolicy, invokeOperation, type Next } from './policy.js';
import type { PolicyIdentity } from './telemetry.js';

/** How a keyed policy finds the key of a call; undefined means "not keyed: pass through". */
export type CallKey = (context: CallContext) => string | undefined;

/**
 * A policy that works per key (coalescing, caching): in a pipeline the key comes from its `key`
 * option or the call's `tags.key`; called directly, `execute(key, operation)` names it.
 */
export abstract class KeyedPolicy extends BasePolicy {
  readonly #keyOf: CallKey | undefined;
  readonly #label: string;

  constructor(clock: Clock | undefined, keyOf: CallKey | undefined, label: string, identity?: PolicyIdentity) {
    super(clock, identity);
    this.#keyOf = keyOf;
    this.#label = label;
  }

  /** 'custom' or 'tags.key', for describe(). */
  protected get keySource(): string {
    return this.#keyOf ? 'custom' : 'tags.key';
  }

  /** The policy's work for a call whose key is known. */
  abstract runKeyed<T>(key: string, context: CallContext, next: Next<T>): Promise<T>;

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    let key: string | undefined;
    try {
      key = this.#keyOf ? this.#keyOf(context) : tagKey(context, this.#label);
    } catch (error) {
      return Promise.reject(error);
    }
    if (key === undefined) return next(context);
    return this.runKeyed(key, context, next);
  }

  /** `execute(key, operation, options)` once the hot paths have passed: a root context, then runKeyed. */
  protected startKeyed<T>(key: string, operation: unknown, options: CallOptions | AbortSignal | undefined): Promise<T> {
    if (typeof operation !== 'function') {
      return Promise.reject(new InvalidInputError(`${this.#label}.execute(key, operation): operation must be a function`));
    }
    let context: CallContext;
    try {
      context = CallContext.root(this.clock, operation as Operation<T>, options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.runKeyed(key, context, invokeOperation as Next<T>);
  }
}

/** The call's `tags.key`; a clear INVALID_INPUT when there is none. */
export function tagKey(context: CallContext, policy: string): string {
  const key = context.tags.key;
  if (typeof key === 'string') return key;
  throw new InvalidInputError(`${policy}: the call has no key; pass tags: { key } or a key option, or call execute(key, operation)`);
}
