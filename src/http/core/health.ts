import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../../core/clock.js';
import { InvalidOptionsError, TimeoutError } from '../../core/errors.js';
import { EventEmitter } from '../../core/events.js';
import { REQUIRED, nonNegative, positive } from '../../core/validate.js';
import { problemResponse, type HttpResponse } from './problem.js';
import { formatRetryAfter } from './rate-limit-headers.js';
import { memoryRateLimiter, type MemoryRateLimiter } from '../../ratelimit/memory.js';

/** A dependency probe. Resolve (any value) for healthy; throw or reject for unhealthy. */
export type HealthProbe = (signal: AbortSignal) => unknown;

export interface HealthCheckDefinition {
  check: HealthProbe;
  /** The probe's time limit; past it the check fails and its signal aborts. Default 1000 ms. */
  timeoutMs?: number;
  /**
   * A failing critical check makes `/health/ready` answer 503; a non-critical one only marks the
   * report `warn` (the instance keeps serving; e.g. a cache). Default true.
   */
  critical?: boolean;
  /** Only `/health/deep` runs it (expensive or third-party checks that must not gate traffic). */
  deepOnly?: boolean;
}

export interface HealthOptions {
  checks?: Readonly<Record<string, HealthCheckDefinition | HealthProbe>>;
  /**
   * Readiness waits for this: a promise (or a function returning one, called at once) such as
   * cache priming or migrations. Until it resolves `/health/ready` is 503 `warming-up`; if it
   * rejects, 503 `warm-up-failed`. Liveness is unaffected.
   */
  warmUp?: PromiseLike<unknown> | (() => PromiseLike<unknown>);
  /** Start not ready until `setReady(true)` (a readiness flag the application flips). Default false. */
  startNotReady?: boolean;
  /**
   * How long a check result is reused (ms). Probes from many load balancers, kubelets and
   * dashboards then cost at most one dependency call per check per period; concurrent requests
   * share the one in flight. Default 1000; 0 disables reuse (concurrent requests still share).
   */
  cacheMs?: number;
  /** `/health/deep` allowance, shared by all callers (it exists for dashboards). Default 6/min, burst 2; `false` for none. */
  deepRateLimit?: { perMinute: number; burst?: number } | false;
  paths?: { live?: string; ready?: string; deep?: string };
  /** Include check error messages in reports. Default true; turn off when reports are public. */
  exposeErrors?: boolean;
  clock?: Clock;
}

export type CheckStatus = 'pass' | 'fail';

export interface CheckResult {
  status: CheckStatus;
  critical: boolean;
  durationMs: number;
  /** Error message (when `exposeErrors`), or `timed out after N ms`. */
  output?: string;
  /** When this result was measured (clock ms); reused results keep their original time. */
  checkedAt: number;
}

export interface HealthReport {
  /** `pass`, `warn` (a non-critical check fails) or `fail` (not ready). */
  status: 'pass' | 'warn' | 'fail';
  /** Why readiness is off, when it is: 'warming-up', 'warm-up-failed', 'not-ready' or a reason given to setReady(). */
  readiness?: string;
  checks: Record<string, CheckResult>;
}

interface CheckState {
  readonly name: string;
  readonly probe: HealthProbe;
  readonly timeoutMs: number;
  readonly critical: boolean;
  readonly deepOnly: boolean;
  last: CheckResult | undefined;
  /** The evaluation callers share while it runs. */
  pending: Promise<CheckResult> | undefined;
  /** True while a probe that timed out has not yet settled: never stack a second one on it. */
  stuck: boolean;
}

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' } as const;

/**
 * Health endpoints (liveness, readiness and a deep check, as Kubernetes probes separate them):
 * - live: the process answers. Never consults dependencies: a failing database must not get
 *   every pod restarted, turning one slow dependency into a fleet-wide restart loop.
 * - ready: dependency checks (with time limits) and warm-up; 503 with per-check detail, so the
 *   load balancer stops sending traffic while the process stays up.
 * - deep: every check including `deepOnly`, rate-limited, for dashboards.
 *
 * Framework-neutral: each method returns an `HttpResponse`; adapters mount them at `paths`.
 */
export class HealthChecks {
  readonly clock: Clock;
  readonly paths: { readonly live: string; readonly ready: string; readonly deep: string };
  readonly #checks: CheckState[];
  readonly #cacheMs: number;
  readonly #exposeErrors: boolean;
  /** Keeps dashboards from turning the deep check into load on the dependencies (one global key). */
  readonly #deepAllowance: MemoryRateLimiter | undefined;
  #warmUp: 'none' | 'pending' | 'done' | 'failed' = 'none';
  #ready: boolean;
  #notReadyReason: string | undefined;
  readonly #onCheck = new EventEmitter<{ name: string; result: CheckResult }>();
  /** Fires after each probe run (not for reused results). */
  readonly onCheck = this.#onCheck.event;

  constructor(options: HealthOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.#cacheMs = nonNegative('health.cacheMs', options.cacheMs, 1000);
    this.#exposeErrors = options.exposeErrors ?? true;
    const paths = options.paths ?? {};
    this.paths = Object.freeze({
      live: checkPath('live', paths.live ?? '/health/live'),
      ready: checkPath('ready', paths.ready ?? '/health/ready'),
      deep: checkPath('deep', paths.deep ?? '/health/deep'),
    });
    this.#checks = Object.entries(options.checks ?? {}).map(([name, definition]) => {
      const d: HealthCheckDefinition = typeof definition === 'function' ? { check: definition } : definition;
      if (!d || typeof d.check !== 'function') throw new InvalidOptionsError(`health.checks.${name} must be a function or { check }`);
      return {
        name,
        probe: d.check,
        timeoutMs: positive(`health.checks.${name}.timeoutMs`, d.timeoutMs, 1000),
        critical: d.critical ?? true,
        deepOnly: d.deepOnly ?? false,
        last: undefined,
        pending: undefined,
        stuck: false,
      };
    });
    const limit = options.deepRateLimit ?? { perMinute: 6, burst: 2 };
    if (limit === false) {
      this.#deepAllowance = undefined;
    } else {
      const perMinute = positive('health.deepRateLimit.perMinute', limit.perMinute, REQUIRED);
      const burst = positive('health.deepRateLimit.burst', limit.burst, Math.min(2, Math.max(1, perMinute)));
      this.#deepAllowance = memoryRateLimiter({
        algorithm: 'token-bucket', limit: perMinute, intervalMs: 60_000, capacity: burst, maxKeys: 1, clock: this.clock, name: 'health-deep',
      });
    }
    this.#ready = !(options.startNotReady ?? false);
    if (options.warmUp !== undefined) this.#startWarmUp(options.warmUp);
  }

  #startWarmUp(warmUp: PromiseLike<unknown> | (() => PromiseLike<unknown>)): void {
    this.#warmUp = 'pending';
    let promise: PromiseLike<unknown>;
    try {
      promise = typeof warmUp === 'function' ? warmUp() : warmUp;
    } catch {
      this.#warmUp = 'failed';
      return;
    }
    Promise.resolve(promise).then(
      () => { this.#warmUp = 'done'; },
      () => { this.#warmUp = 'failed'; },
    );
  }

  /**
   * Flips the readiness flag: `setReady(false, 'draining')` on SIGTERM takes the instance out of
   * the load balancer while in-flight requests finish; `setReady(true)` after a manual warm-up.
   */
  setReady(ready: boolean, reason?: string): void {
    this.#ready = ready;
    this.#notReadyReason = ready ? undefined : (reason ?? 'not-ready');
  }

  /** `/health/live`: 200 while the process can answer. Consults nothing else, on purpose. */
  live(): HttpResponse {
    return { status: 200, headers: { ...JSON_HEADERS }, body: '{"status":"pass"}' };
  }

  /** `/health/ready`: 200 (`pass`/`warn`) or 503 (`fail`) with per-check detail. */
  async ready(): Promise<HttpResponse> {
    const report = await this.report(false);
    return { status: report.status === 'fail' ? 503 : 200, headers: { ...JSON_HEADERS }, body: JSON.stringify(report) };
  }

  /** `/health/deep`: every check, rate-limited (429 + Retry-After past the allowance). */
  async deep(): Promise<HttpResponse> {
    const decision = this.#deepAllowance?.consume('deep');
    if (decision !== undefined && !decision.allowed) {
      const waitMs = decision.retryAfterMs;
      return problemResponse({
        status: 429,
        title: 'Too many requests',
        detail: 'The deep health check is rate-limited; use /health/ready for probes.',
        code: 'RATE_LIMITED',
        headers: { 'retry-after': formatRetryAfter(waitMs) },
      });
    }
    const report = await this.report(true);
    return { status: report.status === 'fail' ? 503 : 200, headers: { ...JSON_HEADERS }, body: JSON.stringify(report) };
  }

  /**
   * Answers a request for one of `paths` (GET or HEAD), or returns undefined for any other
   * request so the adapter passes it on.
   */
  handle(method: string | undefined, path: string): HttpResponse | Promise<HttpResponse> | undefined {
    if (path !== this.paths.live && path !== this.paths.ready && path !== this.paths.deep) return undefined;
    if (method !== 'GET' && method !== 'HEAD') {
      return problemResponse({ status: 405, title: 'Method not allowed', headers: { allow: 'GET, HEAD' } });
    }
    if (path === this.paths.live) return this.live();
    return path === this.paths.ready ? this.ready() : this.deep();
  }

  /** Runs (or reuses) the checks and summarises them. `deep` includes `deepOnly` checks. */
  async report(deep: boolean): Promise<HealthReport> {
    const states = deep ? this.#checks : this.#checks.filter((c) => !c.deepOnly);
    const results = await Promise.all(states.map((state) => this.#evaluate(state)));
    const checks: Record<string, CheckResult> = {};
    let status: HealthReport['status'] = 'pass';
    for (let i = 0; i < states.length; i++) {
      const result = results[i]!;
      checks[states[i]!.name] = result;
      if (result.status === 'fail') status = result.critical ? 'fail' : status === 'pass' ? 'warn' : status;
    }
    const readiness = this.#readinessProblem();
    if (readiness !== undefined) status = 'fail';
    return readiness === undefined ? { status, checks } : { status, readiness, checks };
  }

  #readinessProblem(): string | undefined {
    if (this.#warmUp === 'pending') return 'warming-up';
    if (this.#warmUp === 'failed') return 'warm-up-failed';
    return this.#ready ? undefined : this.#notReadyReason ?? 'not-ready';
  }

  #evaluate(state: CheckState): Promise<CheckResult> {
    const last = state.last;
    if (last !== undefined && this.clock.now() - last.checkedAt < this.#cacheMs) return Promise.resolve(last);
    if (state.pending) return state.pending;
    if (state.stuck) {
      // The previous probe timed out and is still running: report that instead of piling up
      // more probes against a dependency that is not answering.
      const result: CheckResult = {
        status: 'fail', critical: state.critical, durationMs: 0, checkedAt: this.clock.now(),
        output: `previous probe still running after its ${state.timeoutMs} ms limit`,
      };
      state.last = result;
      return Promise.resolve(result);
    }
    const pending = this.#run(state).then((result) => {
      state.pending = undefined;
      state.last = result;
      if (this.#onCheck.active) this.#onCheck.emit({ name: state.name, result });
      return result;
    });
    state.pending = pending;
    return pending;
  }

  #run(state: CheckState): Promise<CheckResult> {
    const clock = this.clock;
    const started = clock.now();
    const controller = new AbortController();
    return new Promise<CheckResult>((resolve) => {
      let timer: TimerHandle | undefined;
      let done = false;
      const finish = (status: CheckStatus, output?: string): void => {
        if (done) return;
        done = true;
        if (timer !== undefined) clock.clearTimeout(timer);
        const result: CheckResult = { status, critical: state.critical, durationMs: clock.now() - started, checkedAt: started };
        if (output !== undefined) result.output = output;
        resolve(result);
      };
      let probe: Promise<unknown>;
      try {
        probe = Promise.resolve(state.probe(controller.signal));
      } catch (error) {
        probe = Promise.reject(error);
      }
      let settled = false;
      probe.then(
        () => { settled = true; state.stuck = false; finish('pass'); },
        (error: unknown) => { settled = true; state.stuck = false; finish('fail', this.#describe(error)); },
      );
      // Unref'd: a hung probe must not keep a stopping process alive.
      timer = unrefTimer(clock.setTimeout(() => {
        timer = undefined;
        if (done) return;
        controller.abort(new TimeoutError(state.timeoutMs));
        if (!settled) state.stuck = true;
        finish('fail', `timed out after ${state.timeoutMs} ms`);
      }, state.timeoutMs));
    });
  }

  #describe(error: unknown): string {
    if (!this.#exposeErrors) return 'check failed';
    const message = error instanceof Error ? error.message : String(error);
    return message.length > 200 ? `${message.slice(0, 199)}…` : message || 'check failed';
  }
}

function checkPath(name: string, path: string): string {
  if (typeof path !== 'string' || !path.startsWith('/') || path.includes('?')) {
    throw new InvalidOptionsError(`health.paths.${name} must be a path starting with "/", got ${String(path)}`);
  }
  return path;
}

export function healthChecks(options: HealthOptions = {}): HealthChecks {
  return new HealthChecks(options);
}
