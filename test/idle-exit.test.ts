import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { exitsByItself } from './support/exits-by-itself.js';

// A process whose policies are idle exits on its own (no leaked timers).
test('a process with idle policies exits by itself', async () => {
  const { code, out } = await exitsByItself(fileURLToPath(new URL('./fixtures/idle-policies.ts', import.meta.url)), 'policies used');
  assert.equal(code, 0, `child ${code === 'leaked' ? 'did not exit once its policies were idle (a timer leaked)' : `exited ${String(code)}`}: ${out}`);
});
