import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpGuard } from './http-guard.js';
import { nodeRequestView, nodeResponseChannel } from './node-io.js';
import { problemResponse, type HttpResponse } from './problem.js';
import type { ProducedResponse, RequestContext } from './request-context.js';

/** A server whose only handler is `handle`, with the response held for it (what the idempotency layer does). */
async function heldServer(handle: (res: ServerResponse, context: RequestContext) => void, decide: () => Promise<HttpResponse | undefined> = async () => undefined) {
  const guard = new HttpGuard();
  const produced: ProducedResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const admission = guard.admit(nodeRequestView(req), nodeResponseChannel, res);
    assert.ok(!(admission instanceof Promise) && admission.kind === 'proceed');
    const context = admission.context;
    context.holdResponse(1024, {
      produced: (response) => { produced.push(response); return decide(); },
      failed: () => {},
    });
    handle(res, context);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { url, produced, close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

test('a held response records every way of writing one, and sends it whole afterwards', async () => {
  const app = await heldServer((res) => {
    res.setHeaders(new Map([['x-a', '1']]));
    res.appendHeader('x-b', '1');
    res.appendHeader('x-b', '2');
    res.setHeader('x-gone', 'soon');
    res.removeHeader('x-gone');
    assert.equal(res.headersSent, false);
    res.writeHead(201, { 'content-type': 'text/plain' });
    assert.equal(res.headersSent, true, 'the handler sees its response begun');
    res.write('ab');
    res.end('c');
    assert.equal(res.writableEnded, true);
  });
  try {
    const response = await fetch(app.url);
    assert.equal(response.status, 201);
    assert.equal(await response.text(), 'abc');
    assert.equal(response.headers.get('x-a'), '1');
    assert.equal(response.headers.get('x-b'), '1, 2');
    assert.equal(response.headers.get('x-gone'), null);
    const [produced] = app.produced;
    assert.equal(produced!.status, 201);
    assert.equal(produced!.body!.toString(), 'abc');
    assert.deepEqual(produced!.headers, { 'x-a': '1', 'x-b': ['1', '2'], 'content-type': 'text/plain' });
  } finally {
    await app.close();
  }
});

test('after the core answered a held response, the handler still writes its own, recorded and never sent', async () => {
  let finish!: () => void;
  const handlerDone = new Promise<void>((resolve) => { finish = resolve; });
  const app = await heldServer((res, context) => {
    res.statusCode = 202;
    res.setHeader('x-early', 'yes');
    // What the guard does at the deadline.
    assert.ok(context.respondIfIdle(problemResponse({ status: 504, title: 'Deadline exceeded', code: 'DEADLINE_EXCEEDED' })));
    setImmediate(() => {
      assert.equal(res.headersSent, false, 'the recording has not begun');
      assert.equal(res.statusCode, 202, 'the handler keeps the status it set');
      res.setHeader('content-type', 'application/json');
      res.end('{"late":true}', finish); // its end callback still runs
    });
  });
  try {
    const response = await fetch(app.url);
    assert.equal(response.status, 504);
    assert.equal(response.headers.get('x-early'), null, 'the core\'s answer carries none of the handler\'s headers');
    assert.match(await response.text(), /DEADLINE_EXCEEDED/);
    await handlerDone;
    const [produced] = app.produced;
    assert.equal(produced!.status, 202);
    assert.equal(produced!.body!.toString(), '{"late":true}');
    assert.equal(produced!.headers['x-early'], 'yes');
  } finally {
    await app.close();
  }
});

test('a handler that wrote its head into a held response still gets the 504 at the deadline sent', async () => {
  let finish!: () => void;
  const handlerDone = new Promise<void>((resolve) => { finish = resolve; });
  const app = await heldServer((res, context) => {
    res.writeHead(201, { 'content-type': 'text/plain' });
    res.write('partial');
    // Nothing went out yet: the core can still answer at the deadline.
    assert.ok(context.respondIfIdle(problemResponse({ status: 504, title: 'Deadline exceeded', code: 'DEADLINE_EXCEEDED' })));
    setImmediate(() => res.end('-done', finish));
  });
  try {
    const response = await fetch(app.url);
    assert.equal(response.status, 504);
    await handlerDone;
    assert.equal(app.produced[0]!.body!.toString(), 'partial-done');
  } finally {
    await app.close();
  }
});

test('a held response is replaced when the holder answers something else', async () => {
  const conflict = problemResponse({ status: 409, title: 'Conflict', code: 'IDEMPOTENCY_CONFLICT' });
  const app = await heldServer((res) => { res.writeHead(201).end('created'); }, async () => conflict);
  try {
    const response = await fetch(app.url);
    assert.equal(response.status, 409);
    assert.match(await response.text(), /IDEMPOTENCY_CONFLICT/);
  } finally {
    await app.close();
  }
});
