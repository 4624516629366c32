import type { Clock } from './clock.js';
import { CallContext, type CallOptions, type Operation } from './context.js';
import { InvalidInputError } from './errors.js';
import { BasePolicy, invokeOperation, type Next } from './policy.js';
import type { PolicyIdentity } from './telemetry.js';

/** How a keyed policy finds the key of a call; undefined means "not keyed: pass through". */
export type CallKey = (context: CallContext) => string | undefined;

/**
 * A policy that works per key (coalescing, caching, rate limiting): in a pipeline the key comes
 * from its `key` option or the call's `tags.key`; called directly, `execute(key, operation)`
 * names it.
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

  /** Runs `operation` under its `key` option (or `tags.key`). */
  override execute<T>(operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T>;
  /** Runs `operation` under an explicit key. */
  override execute<T>(key: string, operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T>;
  override execute<T>(
    keyOrOperation: string | Operation<T>,
    operationOrOptions?: Operation<T> | CallOptions | AbortSignal,
    maybeOptions?: CallOptions | AbortSignal,
  ): Promise<T> {
    if (typeof keyOrOperation !== 'string') return super.execute(keyOrOperation, operationOrOptions as CallOptions | AbortSignal | undefined);
    if (typeof operationOrOptions !== 'function') {
      return Promise.reject(new InvalidInputError(`${this.#label}.execute(key, operation): operation must be a function`));
    }
    const answered = this.answerAtOnce<T>(keyOrOperation, maybeOptions);
    if (answered !== undefined) return answered;
    let context: CallContext;
    try {
      context = CallContext.root(this.clock, operationOrOptions, maybeOptions);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.runKeyed(keyOrOperation, context, invokeOperation as Next<T>);
  }

  /**
   * The hot path of `execute(key, operation)`: the answer when the policy has it without a call
   * context (a fresh cache hit, joining an execution in flight), else undefined. It must not
   * allocate more than the promise it returns.
   */
  protected answerAtOnce<T>(_key: string, _options: CallOptions | AbortSignal | undefined): Promise<T> | undefined {
    return undefined;
  }
}

/** The call's `tags.key`; a clear INVALID_INPUT when there is none. */
export function tagKey(context: CallContext, policy: string): string {
  const key = context.tags.key;
  if (typeof key === 'string') return key;
  throw new InvalidInputError(`${policy}: the call has no key; pass tags: { key } or a key option, or call execute(key, operation)`);
}
