// How Bulwark wraps Redis clients, on stand-ins and unconnected clients (no server).
// Against a real Redis: script-client.integration.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { RedisScript, clusterKey, toRedisScriptClient } from './script-client.js';

test('cluster keys put everything of one entity in one hash slot', () => {
  assert.equal(clusterKey('bw:rl', 'user:42', 'tokens'), 'bw:rl:{user:42}:tokens');
  assert.equal(clusterKey('bw', 'a{b}c'), 'bw:{a_b_c}');
});

test('node-redis without a command timeout is used as it is', () => {
  const client = createClient({ commandOptions: { timeout: undefined } });
  const calls: string[] = [];
  (client as unknown as { withCommandOptions: () => unknown }).withCommandOptions = () => { calls.push('proxy'); return client; };
  toRedisScriptClient(client);
  assert.deepEqual(calls, [], 'no proxy and no timer when the client has no timeout');
});

test('node-redis: a standalone client gets raw commands (NOSCRIPT falls back to EVAL); cluster and sentinel clients keep the typed methods', async () => {
  const script = new RedisScript('return 1');
  const sent: string[][] = [];
  const typed: string[] = [];
  const typedMethods = {
    evalSha: async () => { typed.push('evalSha'); return 1; },
    eval: async () => { typed.push('eval'); return 1; },
    set: async () => { typed.push('set'); return null; },
  };
  const standalone = {
    ...typedMethods,
    sendCommand: async (args: string[], _options?: unknown) => {
      sent.push(args);
      if (args[0] === 'EVALSHA') throw new Error('NOSCRIPT No matching script.');
      return args[0] === 'SET' ? null : 1;
    },
  };
  const client = toRedisScriptClient(standalone);
  assert.equal(await client.run(script, ['k1', 'k2'], ['a', 7]), 1);
  assert.equal(await client.setIfAbsentGet!('k', 'v', 500), null);
  assert.deepEqual(sent, [
    ['EVALSHA', script.sha, '2', 'k1', 'k2', 'a', '7'],
    ['EVAL', script.source, '2', 'k1', 'k2', 'a', '7'],
    ['SET', 'k', 'v', 'PX', '500', 'NX', 'GET'],
  ]);
  assert.deepEqual(typed, []);

  const routed = [
    { ...typedMethods, sendCommand: async (_firstKey: string, _isReadonly: boolean, _args: string[], _options?: unknown) => assert.fail('cluster: raw command') },
    { ...typedMethods, sendCommand: async (_args: string[]) => assert.fail('cluster: raw command'), getSlotMaster: () => undefined },
    { ...typedMethods, sendCommand: async (_isReadonly: boolean, _args: string[], _options?: unknown) => assert.fail('sentinel: raw command') },
  ];
  for (const other of routed) {
    typed.length = 0;
    const wrapped = toRedisScriptClient(other);
    await wrapped.run(script, ['k'], ['a']);
    await wrapped.setIfAbsentGet!('k', 'v', 500);
    assert.deepEqual(typed, ['evalSha', 'set']);
  }
});
