// Guarded Redis clients without a server: a stand-in client on a VirtualClock for the retry
// rules, and the classification of Redis errors. Against a real Redis: guarded-redis.integration.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { TimeoutError } from '../core/errors.js';
import { seededRandom } from '../core/random.js';
import { guardRedis } from './guarded-redis.js';
import { isRedisFailure, isRedisTransient } from './redis-errors.js';

test('safe calls are retried after transient errors only; unsafe calls never', async () => {
  const clock = new VirtualClock();
  let attempts = 0;
  const fake = { status: 'ready', call: async () => { attempts++; if (attempts === 1) throw new Error('Connection is closed.'); return 'ok'; } };
  const guarded = guardRedis(fake, { clock, random: seededRandom(1), retry: { backoff: { kind: 'constant', baseDelayMs: 5, jitter: 'none' } } });
  const read = guarded.command('GET', ['k']);
  await clock.advance(5);
  assert.equal(await read, 'ok');
  assert.equal(attempts, 2);

  attempts = 0;
  await assert.rejects(guarded.command('INCR', ['k']), /Connection is closed/);
  assert.equal(attempts, 1, 'INCR is not idempotent: never retried unless marked safe');
  await assert.rejects(guarded.command('', []), { code: 'INVALID_INPUT' });
  await assert.rejects(guarded.run(undefined as any), { code: 'INVALID_INPUT' });
  await assert.rejects(guardRedis({ custom: true }).command('GET', ['k']), { code: 'INVALID_INPUT' });
  assert.throws(() => guardRedis(null as any), { code: 'INVALID_OPTIONS' });
  assert.throws(() => guardRedis(fake, { timeoutMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => guardRedis(fake, { bulkhead: { maxConcurrent: 0 } }), { code: 'INVALID_OPTIONS' });
});

test('classification of Redis errors', () => {
  class ReplyError extends Error {}
  const reply = (message: string): Error => new ReplyError(message);
  assert.equal(isRedisFailure(reply('WRONGTYPE Operation against a key holding the wrong kind of value')), false);
  assert.equal(isRedisFailure(reply('ERR syntax error')), false);
  assert.equal(isRedisFailure(reply('NOSCRIPT No matching script')), false);
  for (const message of ['LOADING Redis is loading the dataset in memory', 'READONLY You can\'t write against a read only replica.', 'MASTERDOWN Link with MASTER is down', 'OOM command not allowed', 'BUSY Redis is busy running a script']) {
    assert.equal(isRedisFailure(reply(message)), true, message);
  }
  assert.equal(isRedisTransient(reply('LOADING Redis is loading')), true);
  assert.equal(isRedisTransient(reply('OOM command not allowed')), false);
  assert.equal(isRedisTransient(reply('ERR syntax error')), false);
  for (const error of [
    new Error('Connection is closed.'),
    new Error('Stream isn\'t writeable and enableOfflineQueue options is false'),
    new Error('Command timed out'),
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
    new (class ClientClosedError extends Error {})('The client is closed'),
    new (class SocketClosedUnexpectedlyError extends Error {})('Socket closed unexpectedly'),
    new TimeoutError(100, true),
  ]) {
    assert.equal(isRedisFailure(error), true, error.message);
    assert.equal(isRedisTransient(error), true, error.message);
  }
  assert.equal(isRedisFailure(new SyntaxError('Unexpected token')), false);
  assert.equal(isRedisTransient(new SyntaxError('Unexpected token')), false);
});
