import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { ShedError } from '../core/errors.js';
import { loadShedder } from './shedder.js';

// A fixed-capacity server: SERVERS workers, each request holding one for SERVICE_MS. Capacity is
// SERVERS × 1000 / SERVICE_MS = 1,000 requests/s; the offered load is three times that, in equal
// steps (3 arrivals every millisecond) for one second of virtual time.
const SERVERS = 10;
const SERVICE_MS = 10;
const CAPACITY_PER_S = (SERVERS * 1000) / SERVICE_MS;
const ARRIVALS_PER_MS = 3;
const RUN_MS = 1000;

interface Outcome {
  served: number[];
  rejected: number[];
}

/** Offers 3× capacity for RUN_MS to `call` and records each request's latency by outcome. */
async function offerTripleLoad(clock: VirtualClock, call: (work: () => Promise<void>) => Promise<void>): Promise<Outcome> {
  const served: number[] = [];
  const rejected: number[] = [];
  const work = (): Promise<void> => new Promise((resolve) => clock.setTimeout(resolve, SERVICE_MS));
  for (let t = 0; t < RUN_MS; t++) {
    for (let i = 0; i < ARRIVALS_PER_MS; i++) {
      const start = clock.now();
      call(work).then(
        () => served.push(clock.now() - start),
        (error: unknown) => {
          assert.ok(error instanceof ShedError, `unexpected ${String(error)}`);
          rejected.push(clock.now() - start);
        },
      );
    }
    await clock.advance(1);
  }
  await clock.runAll();
  return { served, rejected };
}

/** A FIFO pool of SERVERS workers with an unbounded wait: what most servers do unprotected. */
function unboundedPool(): (work: () => Promise<void>) => Promise<void> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (work) => {
    if (active < SERVERS) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      await work();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

test('at 3x capacity, a shedder in front of the server keeps served latency at the unloaded 10 ms, rejects the excess in 0 ms and serves ≈ capacity', async () => {
  const clock = new VirtualClock();
  // Shed on occupancy alone (every class may use every slot), so goodput can reach capacity.
  const shedder = loadShedder({ capacity: SERVERS, thresholds: { normal: 1 }, clock });
  const { served, rejected } = await offerTripleLoad(clock, (work) => shedder.execute(work));

  assert.equal(served.length + rejected.length, ARRIVALS_PER_MS * RUN_MS);
  // Served: exactly the unloaded service time, never a queueing delay (no queue configured).
  assert.equal(Math.max(...served), SERVICE_MS);
  assert.equal(Math.min(...served), SERVICE_MS);
  // The excess is answered at once: the decision is synchronous, so 0 ms of virtual time.
  assert.equal(Math.max(...rejected), 0);
  // Goodput: one request per worker every SERVICE_MS = capacity × run time, exactly.
  assert.equal(served.length, (CAPACITY_PER_S * RUN_MS) / 1000);
  assert.equal(rejected.length, 2000);
  // Full means utilisation 1, which reaches the class threshold: shed for 'priority'.
  assert.equal(shedder.stats().shed.priority, 2000);
});

test('with a short CoDel queue in front, served latency is bounded by service time + maxQueueTimeMs and goodput stays at capacity', async () => {
  const clock = new VirtualClock();
  const maxQueueTimeMs = 20;
  const shedder = loadShedder({ capacity: SERVERS, thresholds: { normal: 1 }, queue: { maxSize: SERVERS, maxQueueTimeMs }, clock });
  const { served, rejected } = await offerTripleLoad(clock, (work) => shedder.execute(work));

  assert.ok(Math.max(...served) <= SERVICE_MS + maxQueueTimeMs, `served max ${Math.max(...served)} ms`);
  assert.ok(Math.max(...rejected) <= maxQueueTimeMs, `rejected max ${Math.max(...rejected)} ms`);
  // Workers never idle while a request waits: goodput is capacity, give or take the requests
  // still queued when arrivals stop (at most maxSize, which the run drains).
  assert.ok(served.length >= CAPACITY_PER_S && served.length <= CAPACITY_PER_S + SERVERS, `served ${served.length}`);
});

test('without shedding, the same 3x load makes latency climb by 2 ms per ms of overload: 2,000 ms after one second', async () => {
  const clock = new VirtualClock();
  const { served, rejected } = await offerTripleLoad(clock, unboundedPool());
  assert.equal(rejected.length, 0);
  assert.equal(served.length, ARRIVALS_PER_MS * RUN_MS);
  // The queue grows by (3 − 1) × capacity per second, so the last arrival waits ≈ 2 × RUN_MS.
  const worst = Math.max(...served);
  assert.ok(worst >= 2 * RUN_MS - SERVICE_MS && worst <= 2 * RUN_MS + SERVICE_MS, `worst ${worst} ms`);
  // And the first 1% of requests were still served at the unloaded latency.
  assert.equal(served[0], SERVICE_MS);
});
