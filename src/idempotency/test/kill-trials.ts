/**
 * Kill trials: real processes, real SIGKILLs. A trial server (trial-server.ts: one adapter,
 * one store, a handler that INSERTs an effect row) runs as a child process; clients, each with
 * its own Idempotency-Keys, POST and retry every key until they get a final answer, while the
 * driver SIGKILLs the server at seeded random points; a replacement, started just before,
 * takes over (as another instance behind a load balancer would). At the end the server is
 * replaced once more (nothing in flight) and every key is sent again.
 *
 * Counted from the effects table and the clients' logs:
 * - duplicate effects: keys with more than one effect row;
 * - lost completed responses: a client got a 2xx for a key, and a later request with that key
 *   got a different answer, or the effect ran again after that 2xx;
 * - where each kill fell: for every key whose effect committed in the killed incarnation, was
 *   the completion already stored (the server says so on stdout) or not (the kill fell between
 *   the effect and the completion: the window in which a non-transactional store can repeat
 *   the effect).
 *
 * Seeds: the kill points (requests started before each kill, the delay before it) and each
 * client's pauses come from seeded generators, so a seed replays the same schedule; the I/O
 * timing around it is the machine's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Redis } from 'ioredis';
import { seededRandom, type Random } from '../../core/random.js';
import { migratePostgresIdempotency } from '../stores/postgres-store.js';
import type { EffectAnswer, TrialAdapter, TrialStore } from './trial-server.js';
import { requireService } from '../../clients/test/support.js';

const SERVER = fileURLToPath(new URL('./trial-server.ts', import.meta.url));

export interface KillTrialOptions {
  adapter: TrialAdapter;
  store: TrialStore;
  seed: number;
  /** Clients sending at the same time; each has one key in flight. */
  clients: number;
  /** SIGKILLs while the clients send (the final kill before the check comes on top). */
  kills: number;
  /** Each client sends at least this many keys (and keeps sending new ones until the kills are done). */
  keysPerClient: number;
  /** Handlers started between two kills: drawn in [1, this]. */
  requestsBetweenKills: number;
  /** Each client pauses up to this long between keys. */
  thinkMs: number;
  /** Handlers work up to this long before their effect (where most kills land). */
  workMs: number;
  /** After the chosen handler started, the kill waits up to this long. */
  killDelayMs: number;
  /** The server's idempotency lease: how long a dead server's keys answer 409. */
  leaseMs: number;
  databaseUrl: string;
  redisUrl: string;
  /** A key without a final answer after this long fails the trial. Default 60 000. */
  keyTimeoutMs?: number;
}

/**
 * Where a kill falls: a few ms after a handler started (before, inside or after the window
 * between effect and completion), or the instant a client received a fresh answer.
 */
export type KillPoint = 'in-handler' | 'after-answer';

/** One kill: the incarnation killed, and what was under way then. */
export interface KillRecord {
  run: string;
  point: KillPoint;
  /** Keys with a request in flight when the kill fell. */
  inFlight: number;
  /** Keys whose effect this incarnation committed without its completion stored: the window. */
  inWindow: number;
}

export interface KillTrialReport {
  adapter: TrialAdapter;
  store: TrialStore;
  seed: number;
  clients: number;
  kills: number;
  keys: number;
  requests: number;
  /** Failed connections (server dead or dying): retried. */
  connectionErrors: number;
  /** 409 (in progress: a dead server's lease not yet expired) and 503 answers: retried. */
  retryLater: number;
  effects: number;
  /** Keys with more than one effect row. */
  duplicateKeys: number;
  /** Effect rows beyond the first, over all keys. */
  duplicateEffects: number;
  /** Effect rows beyond the first that no kill in the window explains (a non-transactional store can only repeat those). */
  unexplainedDuplicates: string[];
  /** Keys with two effect rows from the same incarnation (nothing can explain those). */
  sameRunDuplicates: string[];
  /** Keys whose 2xx a later request contradicted (another answer, or the effect ran again). */
  lost: string[];
  /** A later request answered by the same incarnation with another answer (no store may do that). */
  sameRunMismatches: string[];
  /** Later requests for a completed key answered by a later incarnation with a fresh execution. */
  forgottenAcrossRestart: number;
  /** Later requests for a completed key answered by a later incarnation. */
  checksAcrossRestart: number;
  /** Sum over kills of the keys in the window when the kill fell. */
  keysInWindowAtKills: number;
  /** Sum over kills of the keys with a request in flight when the kill fell. */
  keysInFlightAtKills: number;
  /** The window measured: ms from the committed effect to the stored completion (plain path). */
  windowMs: { samples: number; p50: number; p99: number; max: number } | undefined;
  killLog: KillRecord[];
}

export interface Answer {
  status: number;
  body: EffectAnswer | undefined;
  /** The incarnation that answered. */
  run: string;
}

export interface ServerEvents {
  effects: Map<string, number>;
  stored: Map<string, number>;
}

/** One incarnation of the trial server: a child process, SIGKILLed at the end of its life. */
class TrialServer {
  readonly events: ServerEvents = { effects: new Map(), stored: new Map() };
  /** Handlers started since `handlers` was last reset. */
  handlers = 0;
  onHandler = (): void => {};
  url = '';
  #closed: Promise<void> = Promise.resolve();

  private constructor(readonly run: string, private readonly child: ChildProcess) {}

  static async start(env: Record<string, string>, run: string): Promise<TrialServer> {
    const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
      env: { ...process.env, ...env, RUN: run },
      stdio: ['pipe', 'pipe', 'inherit'], // stdin: closes when this process dies, and the server exits
    });
    const server = new TrialServer(run, child);
    const lines = createInterface({ input: child.stdout! });
    server.#closed = new Promise((resolve) => lines.once('close', resolve));
    // No start-up watchdog of our own: starting Node with tsx takes a second when the machine is
    // idle and tens of seconds when it is loaded, and no bound between those says anything about
    // the code under trial. A server that never listens is caught by the test's own timeout.
    const port = await new Promise<number>((resolve, reject) => {
      child.once('exit', (code, signal) => reject(new Error(`trial server ${run} exited (${code ?? signal}) before listening`)));
      lines.on('line', (line) => {
        const message = JSON.parse(line) as { event: string; key: string; port: number; at: number };
        if (message.event === 'listening') {
          resolve(message.port);
        } else if (message.event === 'handler') {
          server.handlers++;
          server.onHandler();
        } else if (message.event === 'effect') server.events.effects.set(message.key, message.at);
        else if (message.event === 'stored') server.events.stored.set(message.key, message.at);
      });
    }).catch((error: unknown) => {
      child.kill('SIGKILL');
      throw error;
    });
    server.url = `http://127.0.0.1:${port}/effects`;
    return server;
  }

  #exited: Promise<void> | undefined;

  /** SIGKILL, now. */
  killNow(): void {
    if (this.#exited !== undefined) return;
    const child = this.child;
    this.#exited = child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.kill(child.pid!, 'SIGKILL');
  }

  /** SIGKILL (unless done already), then wait until the process is gone and every line it wrote has been read. */
  async kill(): Promise<void> {
    this.killNow();
    await this.#exited;
    await this.#closed;
  }
}

/**
 * The incarnations of the trial server, one after the other. The next one starts while the
 * current one still serves (a replacement instance already up, as behind a load balancer):
 * the clients' retries reach it at once, while the dead server's leases still run.
 */
class TrialServers {
  readonly all = new Map<string, TrialServer>();
  current: TrialServer | undefined;

  constructor(private readonly env: Record<string, string>) {}

  async spawn(): Promise<TrialServer> {
    const run = String(this.all.size);
    const server = await TrialServer.start(this.env, run);
    this.all.set(run, server);
    return server;
  }

  /** Kills the current server; `next` serves from then on. */
  async replace(next: TrialServer): Promise<void> {
    const dying = this.current;
    this.current = next;
    await dying?.kill();
  }

  async killAll(): Promise<void> {
    for (const server of this.all.values()) await server.kill();
  }
}

/** Runs one trial; throws (with the seed) when a key never gets a final answer. */
export async function runKillTrial(options: KillTrialOptions): Promise<KillTrialReport> {
  const tag = randomUUID().replace(/-/g, '').slice(0, 10);
  const schema = `bw_kill_${tag}`;
  const prefix = `test:idem-kill:${tag}`;
  const admin = new pg.Pool({ connectionString: options.databaseUrl, max: 2 });
  const cleanup: (() => Promise<void> | void)[] = [() => admin.end()];
  let sqlitePath: string | undefined;
  if (options.store === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-kill-trials-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    sqlitePath = join(dir, 'trial.db');
  }
  const servers = new TrialServers({
    ADAPTER: options.adapter, STORE: options.store, LEASE_MS: String(options.leaseMs), SEED: String(options.seed), WORK_MS: String(options.workMs),
    DATABASE_URL: options.databaseUrl, SCHEMA: schema, REDIS_URL: options.redisUrl, PREFIX: prefix,
    ...(sqlitePath === undefined ? {} : { SQLITE_PATH: sqlitePath }),
  });
  try {
    await requireService('PostgreSQL', options.databaseUrl, () => admin.query(`CREATE SCHEMA ${schema}`));
    cleanup.push(async () => { await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`); });
    await admin.query(`CREATE TABLE ${schema}.effects (id bigserial PRIMARY KEY, idem_key text NOT NULL, run text NOT NULL)`);
    if (options.store === 'postgres') await migratePostgresIdempotency(admin, { schema });
    if (sqlitePath !== undefined) {
      const db = new Database(sqlitePath);
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE effects (id INTEGER PRIMARY KEY AUTOINCREMENT, idem_key TEXT NOT NULL, run TEXT NOT NULL)');
      db.close();
    }
    if (options.store === 'redis') {
      cleanup.push(async () => {
        const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
        try {
          const keys = await redis.keys(`${prefix}*`);
          if (keys.length > 0) await redis.del(...keys);
        } finally {
          redis.disconnect();
        }
      });
    }
    cleanup.push(() => servers.killAll());
    return await drive(servers, options, async () => effectRows(options.store, admin, schema, sqlitePath));
  } finally {
    for (const fn of cleanup.reverse()) await fn();
  }
}

export interface EffectRow { id: number; key: string; run: string }

async function effectRows(store: TrialStore, admin: pg.Pool, schema: string, sqlitePath: string | undefined): Promise<EffectRow[]> {
  if (store === 'sqlite') {
    const db = new Database(sqlitePath!, { readonly: true });
    try {
      return (db.prepare('SELECT id, idem_key AS key, run FROM effects ORDER BY id').all() as EffectRow[]).map((r) => ({ ...r, id: Number(r.id) }));
    } finally {
      db.close();
    }
  }
  const { rows } = await admin.query(`SELECT id, idem_key AS key, run FROM ${schema}.effects ORDER BY id`);
  return rows.map((r: { id: string; key: string; run: string }) => ({ id: Number(r.id), key: r.key, run: r.run }));
}

async function drive(servers: TrialServers, options: KillTrialOptions, readEffects: () => Promise<EffectRow[]>): Promise<KillTrialReport> {
  const keyTimeoutMs = options.keyTimeoutMs ?? 60_000;
  const counts = { requests: 0, connectionErrors: 0, retryLater: 0 };
  /** Every final answer per key, in the order received. */
  const answers = new Map<string, Answer[]>();
  /** Keys with a request in flight, and the incarnation it went to. */
  const inFlight = new Map<string, string>();
  const killLog: { run: string; point: KillPoint; inFlight: number }[] = [];
  let killsDone = false;
  /** Set when a client failed: the others stop too, rather than retry until their own deadline. */
  let failed = false;

  /** Sends `key` until a final answer: 2xx or 4xx (not 409). 409, 503, other 5xx and failed connections mean retry. */
  const untilFinal = async (key: string, random: Random): Promise<Answer> => {
    const deadline = Date.now() + keyTimeoutMs;
    for (;;) {
      if (failed) throw new Error('another client failed');
      if (Date.now() > deadline) throw new Error(`seed ${options.seed}: key ${key} got no final answer within ${keyTimeoutMs} ms`);
      const { url, run } = servers.current!;
      counts.requests++;
      inFlight.set(key, run);
      let status: number;
      let text: string;
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ key }),
          signal: AbortSignal.timeout(keyTimeoutMs),
        });
        status = response.status;
        text = await response.text();
      } catch {
        counts.connectionErrors++;
        await sleep(10 + random() * 40);
        continue;
      } finally {
        inFlight.delete(key);
      }
      if (status === 409 || status >= 500) {
        counts.retryLater++;
        await sleep(20 + random() * 80);
        continue;
      }
      const answer: Answer = { status, body: status < 300 ? JSON.parse(text) as EffectAnswer : undefined, run };
      if (answer.body?.run === run) onFreshAnswer(run);
      const list = answers.get(key);
      if (list === undefined) answers.set(key, [answer]);
      else list.push(answer);
      return answer;
    }
  };

  const client = async (c: number): Promise<void> => {
    const random = seededRandom((options.seed ^ Math.imul(c + 1, 0x9e3779b1)) >>> 0);
    const done: string[] = [];
    for (let j = 0; j < options.keysPerClient || !killsDone; j++) {
      const key = `c${c}-k${j}`;
      await untilFinal(key, random);
      done.push(key);
      // Now and then ask again for a key already answered: it must get the same answer.
      if (random() < 0.25) await untilFinal(done[Math.floor(random() * done.length)]!, random);
      await sleep(random() * options.thinkMs);
    }
  };

  /** Called with every fresh 2xx a client receives (an answer from a first execution). */
  let onFreshAnswer = (_run: string): void => {};

  const killer = async (): Promise<void> => {
    const random = seededRandom(options.seed);
    for (let i = 0; i < options.kills; i++) {
      const next = await servers.spawn();
      const current = servers.current!;
      const threshold = 1 + Math.floor(random() * options.requestsBetweenKills);
      const point: KillPoint = random() < 0.5 ? 'in-handler' : 'after-answer';
      if (point === 'in-handler') {
        // After the n-th handler started (counted from now), a few ms on: anywhere in the handlers running then.
        current.handlers = 0;
        while (current.handlers < threshold) await new Promise<void>((resolve) => { current.onHandler = resolve; });
        await sleep(random() * options.killDelayMs);
        current.killNow();
      } else {
        // The instant a client receives the n-th fresh answer: the server has just sent it. An
        // adapter that stored the completion after sending would lose it here.
        let answered = 0;
        await new Promise<void>((resolve) => {
          onFreshAnswer = (run) => {
            if (run !== current.run || ++answered < threshold) return;
            current.killNow();
            onFreshAnswer = () => {};
            resolve();
          };
        });
      }
      killLog.push({ run: current.run, point, inFlight: [...inFlight.values()].filter((run) => run === current.run).length });
      await servers.replace(next);
    }
    killsDone = true;
  };

  await servers.replace(await servers.spawn());
  const together = (work: Promise<void>[]) => Promise.all(work).catch((error: unknown) => {
    failed = true;
    throw error;
  });
  await together([killer(), ...Array.from({ length: options.clients }, (_, c) => client(c))]);
  // Killed once more with nothing in flight, then every key is asked for again.
  const finalRun = servers.current!.run;
  await servers.replace(await servers.spawn());
  const keys = [...answers.keys()];
  const checkRandom = seededRandom(options.seed ^ 0x5bd1e995);
  let nextKey = 0;
  await together(Array.from({ length: options.clients }, async () => {
    while (nextKey < keys.length) await untilFinal(keys[nextKey++]!, checkRandom);
  }));
  await servers.killAll();

  const events = new Map([...servers.all].map(([run, server]) => [run, server.events]));
  return analyseKillTrial(options, { rows: await readEffects(), answers, events, kills: killLog, finalRun, ...counts });
}

/** What a trial recorded: the effects table, the clients' answers, the servers' stdout, the kills. */
export interface KillTrialLog {
  rows: EffectRow[];
  /** Every final answer per key, in the order received. */
  answers: Map<string, Answer[]>;
  /** Per incarnation (run id). */
  events: Map<string, ServerEvents>;
  /** The kills while clients sent. */
  kills: { run: string; point: KillPoint; inFlight: number }[];
  /** The incarnation replaced (killed) before the final check. */
  finalRun: string;
  requests: number;
  connectionErrors: number;
  retryLater: number;
}

/** The counts and checks of a trial, from what it recorded. */
export function analyseKillTrial(
  options: Pick<KillTrialOptions, 'adapter' | 'store' | 'seed' | 'clients'>,
  { rows, answers, events, kills, finalRun, requests, connectionErrors, retryLater }: KillTrialLog,
): KillTrialReport {
  const byKey = new Map<string, EffectRow[]>();
  for (const row of rows) {
    const list = byKey.get(row.key);
    if (list === undefined) byKey.set(row.key, [row]);
    else list.push(row);
  }
  const killed = new Set([...kills.map((k) => k.run), finalRun]);
  const inWindow = (run: string, key: string): boolean => killed.has(run) && !(events.get(run)?.stored.has(key) ?? false);

  let duplicateKeys = 0;
  let duplicateEffects = 0;
  const unexplainedDuplicates: string[] = [];
  const sameRunDuplicates: string[] = [];
  for (const [key, list] of byKey) {
    if (list.length < 2) continue;
    duplicateKeys++;
    duplicateEffects += list.length - 1;
    if (new Set(list.map((r) => r.run)).size < list.length) sameRunDuplicates.push(`${key}: runs ${list.map((r) => r.run).join(',')}`);
    for (const row of list.slice(0, -1)) {
      if (!inWindow(row.run, key)) unexplainedDuplicates.push(`${key}: effect ${row.id} (run ${row.run}) repeated; ${killed.has(row.run) ? 'its completion was stored' : 'that run was not killed'}`);
    }
  }

  const lost: string[] = [];
  const sameRunMismatches: string[] = [];
  let forgottenAcrossRestart = 0;
  let checksAcrossRestart = 0;
  for (const [key, list] of answers) {
    const firstOk = list.findIndex((a) => a.status < 300);
    if (firstOk < 0) continue;
    const ok = list[firstOk]!;
    let previous = ok;
    let contradicted: Answer | undefined;
    for (const later of list.slice(firstOk + 1)) {
      if (later.run === previous.run) {
        // The same server incarnation must replay what it answered, whatever the store.
        if (!sameAnswer(later.body, previous.body)) sameRunMismatches.push(`${key}: run ${later.run} answered ${describe(previous)}, then ${describe(later)}`);
      } else {
        checksAcrossRestart++;
        if (later.body !== undefined && later.body.run === later.run) forgottenAcrossRestart++;
      }
      if (contradicted === undefined && (later.status !== ok.status || !sameAnswer(later.body, ok.body))) contradicted = later;
      previous = later;
    }
    const ranAgain = (byKey.get(key) ?? []).filter((r) => r.id > ok.body!.effect);
    if (contradicted !== undefined) lost.push(`${key}: got ${describe(ok)}, later ${describe(contradicted)}`);
    else if (ranAgain.length > 0) lost.push(`${key}: got ${describe(ok)}, then the effect ran again (${ranAgain.map((r) => `${r.id}@${r.run}`).join(', ')})`);
  }

  // Where each kill fell: keys whose effect the killed run committed, completion not stored.
  const killLog: KillRecord[] = kills.map((k) => ({
    run: k.run,
    point: k.point,
    inFlight: k.inFlight,
    inWindow: rows.filter((r) => r.run === k.run && inWindow(k.run, r.key)).length,
  }));
  const windows: number[] = [];
  for (const run of events.values()) {
    for (const [key, at] of run.effects) {
      const stored = run.stored.get(key);
      if (stored !== undefined) windows.push(Math.max(0, stored - at));
    }
  }
  windows.sort((a, b) => a - b);
  const quantile = (q: number) => windows[Math.min(windows.length - 1, Math.floor(q * windows.length))]!;

  return {
    adapter: options.adapter,
    store: options.store,
    seed: options.seed,
    clients: options.clients,
    kills: kills.length,
    keys: answers.size,
    requests,
    connectionErrors,
    retryLater,
    effects: rows.length,
    duplicateKeys,
    duplicateEffects,
    unexplainedDuplicates,
    sameRunDuplicates,
    lost,
    sameRunMismatches,
    forgottenAcrossRestart,
    checksAcrossRestart,
    keysInWindowAtKills: killLog.reduce((n, k) => n + k.inWindow, 0),
    keysInFlightAtKills: killLog.reduce((n, k) => n + k.inFlight, 0),
    windowMs: windows.length === 0 ? undefined : { samples: windows.length, p50: quantile(0.5), p99: quantile(0.99), max: windows[windows.length - 1]! },
    killLog,
  };
}

function sameAnswer(a: EffectAnswer | undefined, b: EffectAnswer | undefined): boolean {
  return a?.key === b?.key && a?.run === b?.run && a?.effect === b?.effect;
}

function describe(answer: Answer): string {
  return answer.body === undefined ? `${answer.status}` : `${answer.status} effect ${answer.body.effect}@${answer.body.run} (answered by run ${answer.run})`;
}

/** One line of figures for the test output. */
export function describeKillTrial(report: KillTrialReport): string {
  const w = report.windowMs;
  const afterAnswer = report.killLog.filter((k) => k.point === 'after-answer').length;
  return `${report.adapter}+${report.store} seed=${report.seed}: kills=${report.kills} (${report.kills - afterAnswer} in a handler, ${afterAnswer} after an answer) keys=${report.keys} requests=${report.requests} `
    + `connErrors=${report.connectionErrors} retryLater=${report.retryLater} effects=${report.effects} `
    + `duplicateKeys=${report.duplicateKeys} duplicateEffects=${report.duplicateEffects} lost=${report.lost.length} `
    + `inFlightAtKills=${report.keysInFlightAtKills} inWindowAtKills=${report.keysInWindowAtKills}`
    + (report.checksAcrossRestart > 0 ? ` rerunAfterRestart=${report.forgottenAcrossRestart}/${report.checksAcrossRestart}` : '')
    + (w === undefined ? '' : ` window(effect→stored) p50=${w.p50}ms p99=${w.p99}ms max=${w.max}ms n=${w.samples}`);
}
