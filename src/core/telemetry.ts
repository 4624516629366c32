import { BulwarkError } from './errors.js';
import { EventEmitter, type Disposable, type Event, type Listener } from './events.js';

/** A value an exporter can put on a metric label or a span attribute as it is. */
export type AttributeValue = string | number | boolean;

/** How the call or step an event reports ended, in words every policy shares. */
export type PolicyOutcome =
  /** The operation's own result went out. */
  | 'success'
  /** The operation (or the dependency behind it) failed. */
  | 'failure'
  /** The policy refused the call before the operation ran (open breaker, full bulkhead, shed, limited). */
  | 'rejected'
  /** The policy answered instead of the operation (a fallback value, a stale cache entry). */
  | 'substituted';

/**
 * One event of any policy, in a shape a subscriber can read without knowing the policy's kind:
 * what an exporter turns into a Prometheus counter or histogram, an OpenTelemetry span event or
 * a dashboard row. Every policy also has typed events (`onRetry`, `onStateChange`, ...) with the
 * full details; this is their common projection.
 *
 * `attributes` hold only low-cardinality values (a state, an attempt number, an error code), never
 * a key, a URL or a message, so that labelling a metric by them cannot explode its series.
 */
export interface PolicyEvent {
  /** The policy's kind: 'retry', 'circuit-breaker', 'bulkhead', 'pipeline', ... */
  readonly kind: string;
  /** The policy's name (its `name` option), or its kind when it has none. */
  readonly name: string;
  /** What happened, in kebab-case: 'retry', 'give-up', 'state-change', 'reject', 'timeout', 'call', ... */
  readonly event: string;
  readonly outcome?: PolicyOutcome;
  /** How long the reported call or step took, on the policy's clock. */
  readonly durationMs?: number;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

/** What a policy fills in for one event; the kind and name are added for it. */
export interface PolicyEventFields {
  readonly outcome?: PolicyOutcome;
  readonly durationMs?: number;
  readonly attributes?: Readonly<Record<string, AttributeValue | undefined>>;
}

/** Anything an exporter can discover and read: every policy, and the integrations that act like one. */
export interface Instrumented {
  readonly kind: string;
  readonly name?: string | undefined;
  /** Every event of this policy, in the uniform shape. Free when nobody listens. */
  readonly onEvent: Event<PolicyEvent>;
  /** Counters and gauges since the policy was built (per policy, never per key). */
  stats(): object;
}

/** How a policy joins a registry: `registry: null` keeps a named policy out of every registry. */
export interface PolicyIdentity {
  /** Names the policy in its events, its stats and the registry. Only named policies register. */
  name?: string | undefined;
  /** Where a named policy registers. Default: the process-wide `policyRegistry`. */
  registry?: PolicyRegistry | null | undefined;
}

/**
 * The named policies of a process, for exporters: `policies()` lists the live ones and `onEvent`
 * carries every event of every registered policy, including ones built after the subscription.
 * Policies are held weakly: a policy nobody else references is collected and drops out, so
 * building named policies per request cannot leak. Two live policies may share a name (an
 * exporter sums them, as Prometheus does for one series fed by several sources).
 *
 * A policy joins from its base constructor. One whose own constructor then throws (bad options)
 * is unreachable for its caller but stays listed, and is told to `onRegister`, until it is
 * collected: an exporter should not assume every listed policy is in use.
 */
export class PolicyRegistry {
  /** Each registered policy, with the uniform stream to tell when the registry gains or loses listeners. */
  readonly #entries = new Map<WeakRef<Instrumented>, WeakRef<PolicyTelemetry> | undefined>();
  readonly #cleanup = new FinalizationRegistry<WeakRef<Instrumented>>((ref) => this.#entries.delete(ref));
  readonly #events = new EventEmitter<PolicyEvent>(() => this.#listenersChanged());
  /** Whether the registry had a listener when its streams were last told. */
  #told = false;
  readonly #registered = new EventEmitter<Instrumented>();

  /** Every event of every registered policy. */
  readonly onEvent: Event<PolicyEvent> = this.#events.event;
  /**
   * A policy joined the registry (an exporter that lists policies at start learns of later ones).
   * Told in a microtask after the policy's constructor has returned.
   */
  readonly onRegister: Event<Instrumented> = this.#registered.event;

  /** Adds a policy; the returned Disposable removes it again. Named policies call this themselves. */
  register(policy: Instrumented): Disposable {
    return this.#add(policy, undefined);
  }

  /** @internal A policy joins for its lifetime with its uniform stream, which forwards its events here while anyone listens. */
  join(policy: Instrumented, telemetry: PolicyTelemetry): void {
    this.#add(policy, telemetry);
  }

  #add(policy: Instrumented, telemetry: PolicyTelemetry | undefined): Disposable {
    const ref = new WeakRef(policy);
    this.#entries.set(ref, telemetry === undefined ? undefined : new WeakRef(telemetry));
    this.#cleanup.register(policy, ref, ref);
    // A policy registers from its base constructor, before its own fields exist: tell listeners
    // once the constructor has returned, so they meet a whole policy.
    if (this.#registered.active) {
      queueMicrotask(() => {
        const built = ref.deref();
        if (built !== undefined && this.#entries.has(ref)) this.#registered.emit(built);
      });
    }
    return {
      dispose: () => {
        if (!this.#entries.delete(ref)) return;
        this.#cleanup.unregister(ref);
      },
    };
  }

  /** The live registered policies, in registration order. */
  policies(): Instrumented[] {
    const out: Instrumented[] = [];
    for (const ref of this.#entries.keys()) {
      const policy = ref.deref();
      if (policy !== undefined) out.push(policy);
    }
    return out;
  }

  /** @internal Whether anyone listens to the registry's events. */
  get active(): boolean {
    return this.#events.active;
  }

  /** @internal Forwards one registered policy's event. */
  emit(event: PolicyEvent): void {
    this.#events.emit(event);
  }

  /** When the first listener came or the last one left, every registered stream refreshes its cached flag. */
  #listenersChanged(): void {
    if (this.#events.active === this.#told) return;
    this.#told = this.#events.active;
    for (const joined of this.#entries.values()) joined?.deref()?.refresh();
  }
}

/** The process-wide registry named policies join unless they are given another one (or null). */
export const policyRegistry = new PolicyRegistry();

/**
 * A policy's uniform event stream: listeners on the policy itself plus, for a registered policy,
 * the registry's. Policies build their typed emitters through `emitter()`, so each typed event
 * is projected into the uniform shape only when somebody listens to either. A custom policy
 * gets one as `this.telemetry` from BasePolicy.
 */
export class PolicyTelemetry {
  readonly #owner: { readonly kind: string; readonly name?: string | undefined };
  readonly #events = new EventEmitter<PolicyEvent>(() => this.refresh());
  readonly #registry: PolicyRegistry | undefined;
  /**
   * Cached "somebody listens, here or through the registry", refreshed when either gains or
   * loses a listener: the hot path of every call reads this one field (and each typed emitter's
   * own cached flag) instead of walking the listener lists.
   */
  #listening = false;
  readonly onEvent: Event<PolicyEvent> = this.#events.event;

  constructor(owner: Instrumented, identity: PolicyIdentity | undefined) {
    this.#owner = owner;
    const registry = identity?.registry === null ? undefined : (identity?.registry ?? policyRegistry);
    if (identity?.name !== undefined && registry !== undefined) {
      this.#registry = registry;
      registry.join(owner, this);
      this.refresh();
    }
  }

  /** Somebody listens to this policy's uniform events (on it or through its registry). */
  get active(): boolean {
    return this.#listening;
  }

  /** @internal Recomputes the cached flags after a listener came or went (here, in the registry or on a typed event). */
  refresh(): void {
    this.#listening = this.#events.active || (this.#registry !== undefined && this.#registry.active);
  }

  /** Emits one uniform event (call only when `active`). Undefined attributes are left out. */
  emit(event: string, fields: PolicyEventFields = {}): void {
    const attributes: Record<string, AttributeValue> = {};
    if (fields.attributes !== undefined) {
      for (const name in fields.attributes) {
        const value = fields.attributes[name];
        if (value !== undefined) attributes[name] = value;
      }
    }
    const uniform: PolicyEvent = {
      kind: this.#owner.kind,
      name: this.#owner.name ?? this.#owner.kind,
      event,
      ...(fields.outcome !== undefined ? { outcome: fields.outcome } : {}),
      ...(fields.durationMs !== undefined ? { durationMs: fields.durationMs } : {}),
      attributes,
    };
    this.#events.emit(uniform);
    if (this.#registry !== undefined && this.#registry.active) this.#registry.emit(uniform);
  }

  /**
   * A typed emitter that also feeds the uniform stream: a drop-in for `new EventEmitter<T>()`.
   * `project` turns a typed event into the uniform fields; it runs only when the uniform stream
   * has a listener.
   */
  emitter<T>(event: string, project: (value: T) => PolicyEventFields): PolicyEmitter<T> {
    return new PolicyEmitter(this, event, project);
  }
}

/** A typed event that is also projected into its policy's uniform stream. */
export class PolicyEmitter<T> {
  readonly #typed = new EventEmitter<T>(() => {
    this.#typedActive = this.#typed.active;
  });
  readonly #telemetry: PolicyTelemetry;
  readonly #name: string;
  readonly #project: (value: T) => PolicyEventFields;
  /** Cached "the typed event has a listener", kept current by the typed emitter. */
  #typedActive = false;
  /** The subscription function to expose as a public `onX` member. */
  readonly event: Event<T> = this.#typed.event;

  /** @internal Built by `PolicyTelemetry.emitter()`. */
  constructor(telemetry: PolicyTelemetry, name: string, project: (value: T) => PolicyEventFields) {
    this.#telemetry = telemetry;
    this.#name = name;
    this.#project = project;
  }

  /** Somebody listens to the typed event or to the uniform stream: worth building the event. */
  get active(): boolean {
    return this.#typedActive || this.#telemetry.active;
  }

  emit(value: T): void {
    this.#typed.emit(value);
    if (this.#telemetry.active) this.#telemetry.emit(this.#name, this.#project(value));
  }
}

/** Subscribes one listener to several event sources; disposing the result unsubscribes from all. */
export function subscribeAll<T>(events: readonly Event<T>[], listener: Listener<T>): Disposable {
  const subscriptions = events.map((event) => event(listener));
  return { dispose: () => subscriptions.forEach((s) => s.dispose()) };
}

/** What a system or driver error's `code` looks like: Node's ECONNREFUSED, undici's UND_ERR_SOCKET, a PostgreSQL SQLSTATE (57P01). */
const CONSTANT_CODE = /^[A-Z0-9][A-Z0-9_]{1,39}$/;

/**
 * An error as an event attribute: a BulwarkError's `code`; a foreign error's own `code` when it
 * is a constant like Node's 'ECONNREFUSED' or a PostgreSQL SQLSTATE; otherwise its `name`
 * ('TypeError', 'AbortError'). Never its message: messages carry ids and URLs, which would
 * explode a metric's series.
 */
export function errorCode(error: unknown): string | undefined {
  if (error instanceof BulwarkError) return error.code;
  if (!(error instanceof Error)) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && CONSTANT_CODE.test(code) ? code : error.name;
}
