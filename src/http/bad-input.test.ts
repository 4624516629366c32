import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { seededRandom, type Random } from '../core/random.js';
import { ADAPTERS, startApp, type AppRoute, type RunningApp } from './test/apps.js';

/**
 * Hostile input over raw TCP: 1,000 randomly malformed requests per adapter (bad header values,
 * control characters, bad header names, huge headers, bad JSON, truncated and mis-framed bodies,
 * broken request lines). Every one must be answered 4xx: never a 5xx, a hang or a crash, and
 * the server must still serve a normal request afterwards. Generated from a fixed seed, so a
 * failure names a reproducible case.
 */

const CASES_PER_ADAPTER = 1000;
const CONCURRENCY = 16;

const running: RunningApp[] = [];
after(async () => {
  await Promise.all(running.map((app) => app.close()));
});

interface Case {
  category: string;
  bytes: Buffer;
}

class Gen {
  constructor(private readonly random: Random) {}
  int(n: number): number {
    return Math.floor(this.random() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  text(length: number, alphabet: string): string {
    let out = '';
    for (let i = 0; i < length; i++) out += alphabet[this.int(alphabet.length)];
    return out;
  }
  bytes(length: number, from: number, to: number): Buffer {
    const b = Buffer.alloc(length);
    for (let i = 0; i < length; i++) b[i] = from + this.int(to - from + 1);
    return b;
  }
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const PRINTABLE = `${LETTERS}0123456789 !"#$%&'()*+,-./:;<=>?@[\\]^_\`{|}~`;

/** A deadline header value that is certainly malformed. */
function badDeadlineValue(g: Gen): string {
  switch (g.int(10)) {
    case 0: return g.pick(['None', 'null', 'undefined', 'NaN', 'Infinity', '-Infinity', 'soon', 'true']);
    case 1: return `-${1 + g.int(100_000)}`;
    case 2: return `${g.int(10_000)}.${1 + g.int(999)}`;
    case 3: return `${g.int(10_000)}${g.pick(['ms', 's', 'e3', ' ms', ',5'])}`;
    case 4: return '9'.repeat(17 + g.int(200));
    case 5: return `0x${g.text(1 + g.int(6), '0123456789abcdef')}`;
    case 6: return '';
    case 7: return g.text(1 + g.int(40), LETTERS + '-_+/=');
    case 8: return `${g.int(1000)}, ${g.int(1000)}`;
    default: return `${g.pick(['+', '', ' '])}${g.text(1 + g.int(30), PRINTABLE)}x`;
  }
}

function head(lines: string[]): string {
  return `${lines.join('\r\n')}\r\n\r\n`;
}

function withNoise(g: Gen, lines: string[]): string[] {
  // Garbage X-Forwarded-For alongside the real malformation: the client-IP path must shrug it off.
  if (g.chance(0.3)) lines.splice(1 + g.int(lines.length - 1), 0, `X-Forwarded-For: ${g.text(g.int(60), PRINTABLE.replace(',', ''))}, ${g.text(g.int(20), PRINTABLE)}`);
  return lines;
}

const VALID_JSON = ['{"sku":"a-1","qty":2,"tags":["x","y"],"meta":{"gift":true,"note":"hi"}}', '[1,2,3,{"a":[true,false,null]}]', '{"nested":{"deep":{"deeper":[{"k":"v"}]}}}'];

function badJson(g: Gen): string {
  for (;;) {
    let body: string;
    switch (g.int(4)) {
      case 0: { const v = g.pick(VALID_JSON); body = v.slice(0, 1 + g.int(v.length - 1)); break; }
      case 1: body = `{${g.text(1 + g.int(50), PRINTABLE)}`; break;
      case 2: { const v = g.pick(VALID_JSON); const i = g.int(v.length); body = v.slice(0, i) + g.pick(['}', ']', ',', ':', '"', 'x', '\\']) + v.slice(i); break; }
      default: body = g.pick(['{"a":1,}', '[1,]', "{'a':1}", '{"a":undefined}', '{"a":NaN}', '{a:1}', '{"a":1}}', '[[[', '{"\\u12":1}']);
    }
    try {
      JSON.parse(body);
    } catch {
      return body;
    }
  }
}

function generate(g: Gen): Case {
  const category = g.pick(['deadline-header', 'control-chars', 'header-name', 'huge-headers', 'bad-json', 'truncated-body', 'framing', 'request-line']);
  switch (category) {
    case 'deadline-header': {
      const name = g.pick(['X-Request-Timeout-Ms', 'X-Request-Deadline', 'x-request-timeout-ms']);
      const value = name === 'X-Request-Deadline' && g.chance(0.3) ? String(1_700_000_000 + g.int(100_000_000)) /* epoch seconds */ : badDeadlineValue(g);
      const lines = withNoise(g, [`${g.pick(['GET /ok', 'POST /echo'])} HTTP/1.1`, 'Host: localhost', `${name}: ${value}`, 'Connection: close']);
      if (lines[0]!.startsWith('POST')) lines.push('Content-Type: application/json', 'Content-Length: 2');
      return { category, bytes: Buffer.concat([Buffer.from(head(lines), 'latin1'), Buffer.from(lines[0]!.startsWith('POST') ? '{}' : '')]) };
    }
    case 'control-chars': {
      const bad = g.bytes(1 + g.int(8), 0, 31).map((b) => (b === 9 || b === 10 || b === 13 ? 1 : b));
      return { category, bytes: Buffer.concat([Buffer.from(`GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Request-Timeout-Ms: 1${g.text(g.int(3), '0123456789')}`, 'latin1'), bad, Buffer.from('\r\nConnection: close\r\n\r\n')]) };
    }
    case 'header-name': {
      const name = g.pick([`X ${g.text(3, LETTERS)}`, `:${g.text(4, LETTERS)}`, `${g.text(3, LETTERS)}(${g.text(2, LETTERS)})`, `X-${g.text(2, LETTERS)}@`, `"quoted"`, `X-\x7f`]);
      return { category, bytes: Buffer.from(head(['GET /ok HTTP/1.1', 'Host: localhost', `${name}: 1`, 'Connection: close']), 'latin1') };
    }
    case 'huge-headers': {
      const lines = ['GET /ok HTTP/1.1', 'Host: localhost'];
      if (g.chance(0.5)) lines.push(`${g.pick(['X-Request-Timeout-Ms', 'X-Forwarded-For', 'X-Big'])}: ${g.text(17_000 + g.int(40_000), '0123456789, ')}`);
      else for (let i = 0, n = 500 + g.int(800); i < n; i++) lines.push(`X-H${i}: ${g.text(30, LETTERS)}`); // > 16 KB in total
      lines.push('Connection: close');
      return { category, bytes: Buffer.from(head(lines), 'latin1') };
    }
    case 'bad-json': {
      const body = Buffer.from(badJson(g));
      const lines = withNoise(g, ['POST /echo HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', `Content-Length: ${body.length}`, 'Connection: close']);
      if (g.chance(0.3)) lines.push('X-Request-Timeout-Ms: 5000');
      return { category, bytes: Buffer.concat([Buffer.from(head(lines), 'latin1'), body]) };
    }
    case 'truncated-body': {
      const full = Buffer.from(g.pick(VALID_JSON));
      const sent = full.subarray(0, g.int(full.length));
      if (g.chance(0.5)) {
        const lines = ['POST /echo HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', `Content-Length: ${full.length + g.int(5000)}`];
        return { category, bytes: Buffer.concat([Buffer.from(head(lines), 'latin1'), sent]) };
      }
      const lines = ['POST /echo HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', 'Transfer-Encoding: chunked'];
      return { category, bytes: Buffer.concat([Buffer.from(head(lines), 'latin1'), Buffer.from(`${full.length.toString(16)}\r\n`), sent]) };
    }
    case 'framing': {
      const body = '{"a":1}';
      const variants = [
        ['POST /echo HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', 'Content-Length: 7', `Content-Length: ${8 + g.int(10)}`],
        ['POST /echo HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', 'Content-Length: 7', 'Transfer-Encoding: chunked'],
        ['POST /echo HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', `Content-Length: ${g.pick(['-7', '7a', '0x7', '7.0', ''])}`],
        ['POST /echo HTTP/1.1', 'Host: localhost', 'Content-Type: application/json', `Transfer-Encoding: ${g.pick(['chunked, gzip', 'identity', 'bogus'])}`],
      ];
      const lines = g.pick(variants);
      if (lines.includes('Transfer-Encoding: chunked') && !lines.some((l) => l.startsWith('Content-Length'))) lines.push('Content-Length: 7');
      const tail = g.chance(0.5) ? `${g.pick(['zz', '-1', '7 ;x', ''])}\r\n${body}\r\n0\r\n\r\n` : body;
      return { category, bytes: Buffer.from(head(lines) + tail, 'latin1') };
    }
    default: {
      const line = g.pick([
        `${g.pick(['GE T', 'get', 'G\x01T', 'FOO', 'GET\t', '123'])} /ok HTTP/1.1`,
        `GET /o k${g.text(3, LETTERS)} HTTP/1.1`,
        `GET /ok${String.fromCharCode(g.int(31) + 1)} HTTP/1.1`,
        `GET /ok HTTP/${g.pick(['9.9', '1.x', '', '1.1.1', '0'])}`,
        `GET ${g.text(1 + g.int(20), PRINTABLE.replace(' ', ''))}`,
        'GET /ok HTTP/1.1', // no Host header below
      ]);
      const lines = line === 'GET /ok HTTP/1.1' ? [line, 'Connection: close'] : [line, 'Host: localhost', 'Connection: close'];
      return { category, bytes: Buffer.from(head(lines), 'latin1') };
    }
  }
}

interface Reply {
  statuses: number[];
  hung: boolean;
  raw: string;
}

/** Writes the bytes, half-closes, and collects everything the server says until it closes. */
function send(port: number, bytes: Buffer): Promise<Reply> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (hung: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString('latin1');
      const statuses = [...raw.matchAll(/^HTTP\/1\.[01] (\d{3})/gm)].map((m) => Number(m[1]));
      resolve({ statuses, hung, raw });
    };
    const timer = setTimeout(() => finish(true), 10_000);
    socket.on('connect', () => {
      socket.write(bytes);
      socket.end();
    });
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => finish(false)); // reset by the server after an answer: fine
    socket.on('close', () => finish(false));
  });
}

const routes: AppRoute[] = [
  { method: 'GET', path: '/ok', handler: (request) => ({ body: { ok: true, remaining: request?.remaining() ?? null } }) },
  { method: 'POST', path: '/echo', handler: (_request, req) => ({ body: req.body }) },
];

for (const kind of ADAPTERS) {
  test(`${kind}: ${CASES_PER_ADAPTER} malformed requests get 4xx, never 5xx, a hang or a crash`, async (t) => {
    const app = await startApp(kind, routes, { trustProxy: 1, defaults: { deadlineMs: 5000 } });
    running.push(app);
    const g = new Gen(seededRandom(kind === 'node' ? 1 : kind === 'express' ? 2 : 3));
    const cases = Array.from({ length: CASES_PER_ADAPTER }, () => generate(g));
    const failures: string[] = [];
    const byCategory = new Map<string, Map<number, number>>();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < cases.length) {
        const index = next++;
        const c = cases[index]!;
        const reply = await send(app.port, c.bytes);
        const counts = byCategory.get(c.category) ?? new Map<number, number>();
        byCategory.set(c.category, counts);
        for (const s of reply.statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
        const describe = `#${index} ${c.category} ${JSON.stringify(c.bytes.toString('latin1').slice(0, 160))} → ${JSON.stringify(reply.raw.slice(0, 120))}`;
        if (reply.hung) failures.push(`hung: ${describe}`);
        else if (reply.statuses.length === 0) failures.push(`no response: ${describe}`);
        else if (reply.statuses.some((s) => s < 400 || s > 499)) failures.push(`non-4xx: ${describe}`);
        else if (c.category === 'deadline-header' && !(reply.statuses[0] === 400 && reply.raw.includes('"code":"INVALID_INPUT"'))) {
          failures.push(`deadline header not rejected by Bulwark as INVALID_INPUT: ${describe}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${cases.length} cases failed`);
    assert.ok(byCategory.size === 8, 'every category was exercised');
    for (const [category, counts] of byCategory) t.diagnostic(`${category}: ${[...counts].map(([s, n]) => `${s}×${n}`).join(' ')}`);

    // Still serving normally.
    const ok = await fetch(`${app.url}/ok`, { headers: { 'x-request-timeout-ms': '2000' } });
    assert.equal(ok.status, 200);
    const echo = await fetch(`${app.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
    assert.deepEqual(await echo.json(), { a: 1 });
  });
}
