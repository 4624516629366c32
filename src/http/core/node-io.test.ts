import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readyForAnswer, sendNodeAnswer, sendNodeResponse } from './node-io.js';
import { problemResponse, type HttpResponse } from './problem.js';
import { readBody, readJson } from './read-body.js';

const servers: Server[] = [];
after(() => {
  for (const server of servers) server.close();
});

/** A raw node:http server running `handle` for every request; resolves to its base URL. */
async function serve(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handle);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: string }

function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const answer: HttpResponse = { status: 429, headers: { 'content-type': 'text/plain' }, body: new TextEncoder().encode('slow down') };

test('sendNodeResponse: a replacement answer drops the representation headers the handler set and keeps the others', async () => {
  const url = await serve((_req, res) => {
    res.setHeader('etag', '"v1"');
    res.setHeader('content-encoding', 'gzip');
    res.setHeader('content-length', '999');
    res.setHeader('x-trace', 'abc');
    sendNodeResponse(res, answer);
  });
  const reply = await call(url);
  assert.equal(reply.status, 429);
  assert.equal(reply.body, 'slow down');
  assert.equal(reply.headers['content-type'], 'text/plain');
  assert.equal(reply.headers['etag'], undefined);
  assert.equal(reply.headers['content-encoding'], undefined);
  assert.notEqual(reply.headers['content-length'], '999', 'not the handler\'s length');
  assert.equal(reply.headers['x-trace'], 'abc');
});

test('readyForAnswer: a begun response is only ended (its half-written body stands), an ended one takes nothing', async () => {
  const seen: boolean[] = [];
  const url = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('half');
    seen.push(readyForAnswer(res), res.writableEnded);
    seen.push(readyForAnswer(res));
  });
  const reply = await call(url);
  assert.deepEqual(seen, [false, true, false]);
  assert.equal(reply.status, 200);
  assert.equal(reply.body, 'half');
});

test('sendNodeAnswer: an answer now, one promised, and one that fails (a bare 500 problem)', async () => {
  const answers: (() => HttpResponse | Promise<HttpResponse>)[] = [() => answer, () => Promise.resolve(answer), () => Promise.reject(new Error('check crashed'))];
  let n = 0;
  const url = await serve((_req, res) => sendNodeAnswer(res, answers[n++]!()));
  assert.equal((await call(url)).status, 429);
  assert.equal((await call(url)).body, 'slow down');
  const failed = await call(url);
  const expected = problemResponse({ status: 500, title: 'Internal server error' });
  assert.equal(failed.status, 500);
  assert.equal(failed.headers['content-type'], expected.headers['content-type']);
  assert.equal(failed.body, Buffer.from(expected.body).toString('utf8'));
  assert.doesNotMatch(failed.body, /check crashed/, 'no internals');
});

test('readBody: the body within the limit; 413 by Content-Length before reading and while reading; readJson: 400 for empty or malformed JSON', async () => {
  const url = await serve((req, res) => {
    const limitBytes = Number(req.headers['x-limit'] ?? 1_048_576);
    const read = req.headers['x-json'] ? readJson(req, { limitBytes }).then((v) => JSON.stringify(v)) : readBody(req, { limitBytes }).then((b) => b.toString('utf8'));
    read.then(
      (text) => res.end(text),
      (error: { status: number; message: string }) => { res.statusCode = error.status; res.end(error.message); },
    );
  });
  assert.deepEqual(await call(url, { method: 'POST', body: 'hello' }).then((r) => [r.status, r.body]), [200, 'hello']);
  const declared = await call(url, { method: 'POST', body: 'too long', headers: { 'x-limit': '4' } });
  assert.deepEqual([declared.status, declared.body], [413, 'request body larger than 4 bytes']);
  // Chunked: no Content-Length, so the limit is found while reading.
  const streamed = await call(url, { method: 'POST', body: 'too long', headers: { 'x-limit': '4', 'transfer-encoding': 'chunked' } });
  assert.deepEqual([streamed.status, streamed.body], [413, 'request body larger than 4 bytes']);
  assert.deepEqual(await call(url, { method: 'POST', body: '{"a":1}', headers: { 'x-json': '1' } }).then((r) => [r.status, r.body]), [200, '{"a":1}']);
  assert.deepEqual(await call(url, { method: 'POST', body: '{"a":', headers: { 'x-json': '1' } }).then((r) => [r.status, r.body]), [400, 'request body is not valid JSON']);
  assert.deepEqual(await call(url, { method: 'POST', headers: { 'x-json': '1' } }).then((r) => [r.status, r.body]), [400, 'request body is empty; JSON expected']);
});
