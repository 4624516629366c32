import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// A process whose policies are idle exits on its own (no leaked timers).
test('a process with idle policies exits by itself', () => {
  const script = fileURLToPath(new URL('./fixtures/idle-policies.ts', import.meta.url));
  const started = Date.now();
  const result = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(result.error, undefined, `child failed to exit in time: ${result.error?.message}`);
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /policies used/);
  assert.ok(Date.now() - started < 30_000);
});
