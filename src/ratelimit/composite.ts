import { InvalidOptionsError } from '../core/errors.js';
import { checkCost } from './acquire.js';
import type { Decision, RateLimiter } from './types.js';

/** One limit applied to a request: which limiter, and which key of it (undefined: not applicable). */
export interface LimitRule<Input> {
  /** Names the rule in results and in `refund(input, ['login'])`. */
  name: string;
  limiter: RateLimiter;
  /** The key for this input, e.g. `(req) => req.ip`; undefined skips the rule (an anonymous user). */
  key: (input: Input) => string | undefined;
  /** Cost of this input for this rule. Default 1. */
  cost?: number | ((input: Input) => number);
}

export interface RuleResult {
  name: string;
  key: string;
  cost: number;
  decision: Decision;
}

/** The most restrictive decision, with every rule's own answer. */
export interface CompositeDecision extends Decision {
  /** The rule whose decision this is: the denying one, or the allowing one with the least left. */
  decidedBy: string | undefined;
  results: RuleResult[];
}

/**
 * Several limits on one request (per IP and per user and per route): every applicable rule is
 * asked, the most restrictive answer wins. All rules are consumed together (concurrently, so
 * Redis-backed rules share one round trip); if any denies, the rules that allowed are refunded,
 * so a denied request costs nothing. This is not atomic across limiters or stores (nothing can
 * make it so across Redis and memory): between the consume and the refund another request may
 * see the briefly lower balance and be denied. Refunds are saturating, so they never overshoot.
 */
export class CompositeRateLimiter<Input> {
  readonly rules: readonly LimitRule<Input>[];

  constructor(rules: readonly LimitRule<Input>[]) {
    if (!Array.isArray(rules) || rules.length === 0) throw new InvalidOptionsError('compositeRateLimiter: at least one rule is required');
    const names = new Set<string>();
    for (const rule of rules) {
      if (!rule || typeof rule.name !== 'string' || typeof rule.key !== 'function' || typeof rule.limiter?.consume !== 'function') {
        throw new InvalidOptionsError('compositeRateLimiter: each rule needs { name, limiter, key(input) }');
      }
      if (names.has(rule.name)) throw new InvalidOptionsError(`compositeRateLimiter: duplicate rule name ${rule.name}`);
      names.add(rule.name);
    }
    this.rules = [...rules];
  }

  /** Consumes from every applicable rule. Synchronous when every limiter answers synchronously. */
  consume(input: Input): CompositeDecision | Promise<CompositeDecision> {
    const applied: { rule: LimitRule<Input>; key: string; cost: number }[] = [];
    const answers: (Decision | Promise<Decision>)[] = [];
    let async = false;
    for (const rule of this.rules) {
      const key = rule.key(input);
      if (key === undefined) continue;
      const cost = typeof rule.cost === 'function' ? rule.cost(input) : rule.cost ?? 1;
      checkCost(cost);
      const answer = rule.limiter.consume(key, cost);
      if (isPromise(answer)) async = true;
      applied.push({ rule, key, cost });
      answers.push(answer);
    }
    if (!async) return this.#combine(applied, answers as Decision[]);
    return Promise.all(answers).then((decisions) => this.#combine(applied, decisions));
  }

  /** Gives back to the named rules (all applicable rules by default), e.g. on a successful login. */
  async refund(input: Input, names?: readonly string[], cost?: number): Promise<void> {
    await Promise.all(this.#select(input, names).map(({ rule, key }) => rule.limiter.refund(key, cost ?? ruleCost(rule, input))));
  }

  /** Takes extra from the named rules (all applicable rules by default), e.g. on a failed login. */
  async penalty(input: Input, names?: readonly string[], cost?: number): Promise<void> {
    await Promise.all(this.#select(input, names).map(({ rule, key }) => rule.limiter.penalty(key, cost ?? ruleCost(rule, input))));
  }

  #select(input: Input, names: readonly string[] | undefined): { rule: LimitRule<Input>; key: string }[] {
    const out: { rule: LimitRule<Input>; key: string }[] = [];
    for (const rule of this.rules) {
      if (names && !names.includes(rule.name)) continue;
      const key = rule.key(input);
      if (key !== undefined) out.push({ rule, key });
    }
    return out;
  }

  #combine(applied: { rule: LimitRule<Input>; key: string; cost: number }[], decisions: Decision[]): CompositeDecision {
    const results: RuleResult[] = applied.map((a, i) => ({ name: a.rule.name, key: a.key, cost: a.cost, decision: decisions[i]! }));
    let winner: RuleResult | undefined;
    let denied = false;
    for (const r of results) {
      if (!r.decision.allowed) {
        if (!denied || r.decision.retryAfterMs > winner!.decision.retryAfterMs) winner = r;
        denied = true;
      } else if (!denied && (winner === undefined || moreRestrictive(r.decision, winner.decision))) {
        winner = r;
      }
    }
    if (denied) {
      for (const r of results) {
        if (r.decision.allowed && r.cost > 0) void settle(applied.find((a) => a.rule.name === r.name)!.rule.limiter.refund(r.key, r.cost));
      }
    }
    if (winner === undefined) {
      // No rule applied: nothing limits this request.
      return { allowed: true, remaining: Infinity, limit: Infinity, resetAt: 0, retryAfterMs: 0, store: 'memory', degraded: undefined, decidedBy: undefined, results };
    }
    // Field by field, not `{ ...winner.decision, decidedBy, results }`: in Node 20 a spread
    // followed by more properties takes V8's generic copy path, on every request (docs/benchmarks.md).
    // The fields are exactly `Decision`'s; each rule's own object stays in `results`.
    const d = winner.decision;
    return {
      allowed: d.allowed, remaining: d.remaining, limit: d.limit, resetAt: d.resetAt, retryAfterMs: d.retryAfterMs,
      store: d.store, degraded: d.degraded, decidedBy: winner.name, results,
    };
  }
}

function moreRestrictive(a: Decision, b: Decision): boolean {
  return a.remaining < b.remaining || (a.remaining === b.remaining && a.resetAt > b.resetAt);
}

function ruleCost<Input>(rule: LimitRule<Input>, input: Input): number {
  return typeof rule.cost === 'function' ? rule.cost(input) : rule.cost ?? 1;
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Promise<T>)?.then === 'function';
}

/** A refund that fails (store down) must not surface as an unhandled rejection; the store reports it. */
function settle(value: void | Promise<void>): void {
  if (isPromise(value)) value.catch(() => {});
}

/** Several limits on one request; the most restrictive wins. */
export function compositeRateLimiter<Input>(rules: readonly LimitRule<Input>[]): CompositeRateLimiter<Input> {
  return new CompositeRateLimiter(rules);
}
