import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_HEADER_TIMEOUT_MS } from '../../core/deadline-headers.js';
import { resolveDeadline, type DeadlineInput } from './deadline.js';

const NOW = 1_700_000_000_000;

function input(overrides: Partial<DeadlineInput>): DeadlineInput {
  return {
    timeoutHeader: undefined, deadlineHeader: undefined, defaultMs: undefined, maxMs: undefined,
    combine: 'prefer-timeout', honorHeaders: true, now: NOW, ...overrides,
  };
}

test('X-Request-Timeout-Ms gives a deadline relative to arrival', () => {
  assert.deepEqual(resolveDeadline(input({ timeoutHeader: '250' })), { ok: true, deadline: NOW + 250, source: 'timeout-header', budgetMs: 250 });
  assert.deepEqual(resolveDeadline(input({ timeoutHeader: ' 40 ' })), { ok: true, deadline: NOW + 40, source: 'timeout-header', budgetMs: 40 });
  const zero = resolveDeadline(input({ timeoutHeader: '0' }));
  assert.ok(zero.ok && zero.deadline === NOW, 'zero is legal (and already expired)');
});

test('X-Request-Deadline (epoch ms) is used when it is the only header', () => {
  const r = resolveDeadline(input({ deadlineHeader: String(NOW + 900) }));
  assert.deepEqual(r, { ok: true, deadline: NOW + 900, source: 'deadline-header', budgetMs: 900 });
});

test('both headers: prefer-timeout ignores a skewed absolute deadline; earliest takes the stricter', () => {
  // The caller's clock runs 5 s behind ours: its absolute deadline looks already past.
  const skewed = { timeoutHeader: '1000', deadlineHeader: String(NOW - 4000) };
  const preferred = resolveDeadline(input(skewed));
  assert.ok(preferred.ok && preferred.deadline === NOW + 1000 && preferred.source === 'timeout-header');
  const earliest = resolveDeadline(input({ ...skewed, combine: 'earliest' }));
  assert.ok(earliest.ok && earliest.deadline === NOW - 4000 && earliest.source === 'deadline-header');
  const laterAbsolute = resolveDeadline(input({ timeoutHeader: '1000', deadlineHeader: String(NOW + 5000), combine: 'earliest' }));
  assert.ok(laterAbsolute.ok && laterAbsolute.deadline === NOW + 1000 && laterAbsolute.source === 'timeout-header');
});

test('route default applies without headers; the max caps everything', () => {
  const d = resolveDeadline(input({ defaultMs: 300 }));
  assert.ok(d.ok && d.deadline === NOW + 300 && d.source === 'route-default');
  const none = resolveDeadline(input({}));
  assert.ok(none.ok && none.deadline === Infinity && none.source === 'none' && none.budgetMs === Infinity);
  const capped = resolveDeadline(input({ timeoutHeader: '60000', maxMs: 2000 }));
  assert.ok(capped.ok && capped.deadline === NOW + 2000 && capped.source === 'timeout-header');
  const onlyMax = resolveDeadline(input({ maxMs: 2000 }));
  assert.ok(onlyMax.ok && onlyMax.deadline === NOW + 2000 && onlyMax.source === 'server-max');
  const header = resolveDeadline(input({ timeoutHeader: '100', defaultMs: 5000 }));
  assert.ok(header.ok && header.deadline === NOW + 100, 'a header beats the route default');
  const ignored = resolveDeadline(input({ timeoutHeader: 'garbage', defaultMs: 5000, honorHeaders: false }));
  assert.ok(ignored.ok && ignored.deadline === NOW + 5000, 'honorHeaders: false ignores headers entirely');
});

test('malformed values are rejected with the header name (400 material), never thrown', () => {
  const bad = ['', ' ', '-1', '+5', '1.5', '1e3', '0x10', 'NaN', 'Infinity', 'None', 'null', '100ms', '10, 20', String(MAX_HEADER_TIMEOUT_MS + 1), '9'.repeat(40)];
  for (const value of bad) {
    const r = resolveDeadline(input({ timeoutHeader: value }));
    assert.ok(!r.ok && r.header === 'x-request-timeout-ms', `timeout ${JSON.stringify(value)} must be malformed`);
  }
  assert.ok(!resolveDeadline(input({ timeoutHeader: ['100', '200'] })).ok, 'repeated header with two values');
  assert.ok(resolveDeadline(input({ timeoutHeader: ['100'] })).ok);
  for (const value of ['None', '1712345678', '1712345678.123', '-1', 'tomorrow', '99999999999999']) {
    const r = resolveDeadline(input({ deadlineHeader: value }));
    assert.ok(!r.ok && r.header === 'x-request-deadline', `deadline ${JSON.stringify(value)} must be malformed (epoch seconds included)`);
  }
  const both = resolveDeadline(input({ timeoutHeader: '100', deadlineHeader: 'None' }));
  assert.ok(!both.ok, 'garbage in one header is rejected even when the other is fine');
});

test('property: any timeout header value either parses to its integer or is malformed; nothing throws', () => {
  fc.assert(fc.property(fc.string({ maxLength: 30 }), (value) => {
    const r = resolveDeadline(input({ timeoutHeader: value }));
    const trimmed = value.trim();
    const valid = /^[0-9]+$/.test(trimmed) && trimmed.length <= 16 && Number(trimmed) <= MAX_HEADER_TIMEOUT_MS;
    if (valid) return r.ok && r.deadline === NOW + Number(trimmed);
    return !r.ok;
  }), { numRuns: 2000, seed: 42 });
});
