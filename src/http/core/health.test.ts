import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../../core/clock.js';
import { healthChecks } from './health.js';
import type { HttpResponse } from './problem.js';

function json(response: HttpResponse): any {
  return JSON.parse(String(response.body));
}

/** Advances the virtual clock in small steps until `promise` settles (probes take 5 ms of virtual time). */
async function settle<T>(clock: VirtualClock, promise: Promise<T>): Promise<T> {
  let done = false;
  promise.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < 1000 && !done; i++) await clock.advance(5);
  return promise;
}

/** A dependency probe we control: healthy, failing, or hanging (optionally ignoring its signal). */
function fakeDependency(clock: VirtualClock) {
  const state = { mode: 'up' as 'up' | 'down' | 'hang' | 'hang-ignoring-signal', calls: 0, aborted: 0 };
  const check = (signal: AbortSignal): Promise<void> => {
    state.calls++;
    if (state.mode === 'up') return new Promise((resolve) => clock.setTimeout(resolve, 5));
    if (state.mode === 'down') return Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6390'));
    return new Promise((_, reject) => {
      if (state.mode === 'hang') signal.addEventListener('abort', () => { state.aborted++; reject(signal.reason); });
    });
  };
  return { state, check };
}

test('live is 200 whatever the dependencies do (a failing DB must not restart every pod)', async () => {
  const clock = new VirtualClock();
  const db = fakeDependency(clock);
  db.state.mode = 'down';
  const health = healthChecks({ clock, checks: { db: db.check }, warmUp: new Promise(() => {}) });
  const live = health.live();
  assert.equal(live.status, 200);
  assert.deepEqual(json(live), { status: 'pass' });
  assert.equal(db.state.calls, 0, 'liveness never runs dependency checks');
  assert.equal((await health.ready()).status, 503);
});

test('ready: 200 pass when checks pass; 503 with per-check detail when a critical one fails', async () => {
  const clock = new VirtualClock();
  const db = fakeDependency(clock);
  const cache = fakeDependency(clock);
  const health = healthChecks({ clock, cacheMs: 0, checks: { db: db.check, cache: { check: cache.check, timeoutMs: 50 } } });
  const pending = health.ready();
  await clock.advance(5);
  const ok = await pending;
  assert.equal(ok.status, 200);
  const report = json(ok);
  assert.equal(report.status, 'pass');
  assert.equal(report.checks.db.status, 'pass');
  assert.equal(report.checks.db.durationMs, 5);
  assert.equal(ok.headers['cache-control'], 'no-store');

  db.state.mode = 'down';
  const down = await settle(clock, health.ready());
  assert.equal(down.status, 503);
  const detail = json(down);
  assert.equal(detail.status, 'fail');
  assert.equal(detail.checks.db.status, 'fail');
  assert.match(detail.checks.db.output, /ECONNREFUSED/);
  assert.equal(detail.checks.db.critical, true);
});

test('a non-critical failing check gives 200 warn; deepOnly checks do not gate readiness', async () => {
  const clock = new VirtualClock();
  const cache = fakeDependency(clock);
  cache.state.mode = 'down';
  const thirdParty = fakeDependency(clock);
  thirdParty.state.mode = 'down';
  const health = healthChecks({
    clock,
    checks: { cache: { check: cache.check, critical: false }, partnerApi: { check: thirdParty.check, deepOnly: true } },
  });
  const ready = await health.ready();
  assert.equal(ready.status, 200);
  assert.equal(json(ready).status, 'warn');
  assert.equal(json(ready).checks.partnerApi, undefined);
  assert.equal(thirdParty.state.calls, 0);
  const deep = await health.deep();
  assert.equal(deep.status, 503);
  assert.equal(json(deep).checks.partnerApi.status, 'fail');
});

test('a hanging check fails at its timeout (via the clock) and its signal is aborted', async () => {
  const clock = new VirtualClock();
  const redis = fakeDependency(clock);
  redis.state.mode = 'hang';
  const health = healthChecks({ clock, cacheMs: 0, checks: { redis: { check: redis.check, timeoutMs: 200 } } });
  let answered: HttpResponse | undefined;
  const pending = health.ready().then((r) => { answered = r; });
  await clock.advance(199);
  assert.equal(answered, undefined);
  await clock.advance(1);
  await pending;
  assert.equal(answered!.status, 503);
  assert.equal(json(answered!).checks.redis.output, 'timed out after 200 ms');
  assert.equal(redis.state.aborted, 1);
  assert.equal(clock.pendingTimers, 0, 'no timer left behind');
});

test('a probe that ignores its signal is never stacked: later requests report it instead of starting another', async () => {
  const clock = new VirtualClock();
  const redis = fakeDependency(clock);
  redis.state.mode = 'hang-ignoring-signal';
  const health = healthChecks({ clock, cacheMs: 0, checks: { redis: { check: redis.check, timeoutMs: 100 } } });
  const first = health.ready();
  await clock.advance(100);
  assert.equal((await first).status, 503);
  for (let i = 0; i < 5; i++) {
    const again = await health.ready();
    assert.equal(again.status, 503);
    assert.match(json(again).checks.redis.output, /still running/);
  }
  assert.equal(redis.state.calls, 1);
});

test('results are reused for cacheMs and concurrent requests share one probe (a probe storm is not load)', async () => {
  const clock = new VirtualClock();
  const db = fakeDependency(clock);
  const health = healthChecks({ clock, cacheMs: 1000, checks: { db: db.check } });
  const storm = Array.from({ length: 50 }, () => health.ready());
  await clock.advance(5);
  const answers = await Promise.all(storm);
  assert.ok(answers.every((a) => a.status === 200));
  assert.equal(db.state.calls, 1, 'fifty concurrent probes, one dependency call');
  await clock.advance(500);
  await health.ready();
  assert.equal(db.state.calls, 1, 'reused within cacheMs');
  await clock.advance(500);
  const refreshed = health.ready();
  await clock.advance(5);
  await refreshed;
  assert.equal(db.state.calls, 2, 'refreshed after cacheMs');
});

test('warm-up: 503 warming-up until it resolves; 503 warm-up-failed if it rejects; live stays 200', async () => {
  const clock = new VirtualClock();
  let finish!: () => void;
  const health = healthChecks({ clock, warmUp: () => new Promise<void>((resolve) => { finish = resolve; }) });
  const before = await health.ready();
  assert.equal(before.status, 503);
  assert.equal(json(before).readiness, 'warming-up');
  finish();
  await clock.advance(0);
  assert.equal((await health.ready()).status, 200);

  const failing = healthChecks({ clock, warmUp: Promise.reject(new Error('migration failed')) });
  await clock.advance(0);
  const failed = await failing.ready();
  assert.equal(failed.status, 503);
  assert.equal(json(failed).readiness, 'warm-up-failed');
  assert.equal(failing.live().status, 200);
});

test('setReady flips readiness (draining on shutdown), startNotReady waits for the app', async () => {
  const health = healthChecks({ clock: new VirtualClock(), startNotReady: true });
  assert.equal((await health.ready()).status, 503);
  health.setReady(true);
  assert.equal((await health.ready()).status, 200);
  health.setReady(false, 'draining');
  const draining = await health.ready();
  assert.equal(draining.status, 503);
  assert.equal(json(draining).readiness, 'draining');
  assert.equal(health.live().status, 200);
});

test('deep is rate-limited by its own small bucket: 429 problem with Retry-After, refilled over time', async () => {
  const clock = new VirtualClock();
  const db = fakeDependency(clock);
  const health = healthChecks({ clock, cacheMs: 0, checks: { db: db.check }, deepRateLimit: { perMinute: 6, burst: 2 } });
  const run = async () => { const p = health.deep(); await clock.advance(5); return p; };
  assert.equal((await run()).status, 200);
  assert.equal((await run()).status, 200);
  const limited = await run();
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['content-type'], 'application/problem+json');
  assert.equal(json(limited).code, 'RATE_LIMITED');
  const retryAfter = Number(limited.headers['retry-after']);
  assert.equal(retryAfter, 10, 'one deep check per 10 s, 10 ms used: 9.99 s rounded up to whole seconds');
  assert.equal(db.state.calls, 2, 'a rejected deep check costs the dependency nothing');
  await clock.advance(retryAfter * 1000);
  assert.equal((await run()).status, 200);
  const unlimited = healthChecks({ clock, deepRateLimit: false });
  for (let i = 0; i < 20; i++) assert.equal((await unlimited.deep()).status, 200);
});

test('handle() routes paths and methods; exposeErrors false hides messages', async () => {
  const clock = new VirtualClock();
  const health = healthChecks({ clock, exposeErrors: false, checks: { db: () => { throw new Error('password=hunter2'); } }, paths: { live: '/livez' } });
  assert.equal(health.handle('GET', '/other'), undefined);
  assert.equal((health.handle('GET', '/livez') as HttpResponse).status, 200);
  assert.equal((health.handle('POST', '/livez') as HttpResponse).status, 405);
  const ready = await health.handle('HEAD', '/health/ready')!;
  assert.equal(ready.status, 503);
  assert.ok(!String(ready.body).includes('hunter2'));
  assert.equal(json(ready).checks.db.output, 'check failed');
});

test('bad options fail at build time', () => {
  assert.throws(() => healthChecks({ checks: { db: { check: 'nope' as any } } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => healthChecks({ checks: { db: { check: () => 1, timeoutMs: 0 } } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => healthChecks({ deepRateLimit: { perMinute: 0 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => healthChecks({ paths: { ready: 'health' } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => healthChecks({ cacheMs: -1 }), { code: 'INVALID_OPTIONS' });
});
