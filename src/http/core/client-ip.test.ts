import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { clientIpResolver, normalizeIp, parseForwardedElement, UNKNOWN_CLIENT } from './client-ip.js';

test('default: the socket address, whatever X-Forwarded-For claims', () => {
  const resolve = clientIpResolver(undefined);
  assert.equal(resolve('10.0.0.7', '1.2.3.4'), '10.0.0.7');
  assert.equal(resolve('::ffff:10.0.0.7', undefined), '10.0.0.7', 'IPv4-mapped IPv6 is normalised');
  assert.equal(resolve(undefined, '1.2.3.4'), UNKNOWN_CLIENT);
  assert.equal(clientIpResolver(false)('10.0.0.7', '1.2.3.4'), '10.0.0.7');
  assert.equal(clientIpResolver(0)('10.0.0.7', '1.2.3.4'), '10.0.0.7');
});

test('property: by default no X-Forwarded-For value changes the client IP (spoofing cannot dodge a per-IP limit)', () => {
  const resolve = clientIpResolver(undefined);
  fc.assert(fc.property(fc.string({ maxLength: 200 }), fc.ipV4(), (xff, socket) => resolve(socket, xff) === socket), { seed: 1, numRuns: 1000 });
});

test('trustProxy: n takes the n-th hop from the right (n proxies we run)', () => {
  const one = clientIpResolver(1);
  // The attacker sent "6.6.6.6, 7.7.7.7"; our load balancer appended the address it saw.
  assert.equal(one('10.0.0.2', '6.6.6.6, 7.7.7.7, 203.0.113.9'), '203.0.113.9');
  assert.equal(one('10.0.0.2', '203.0.113.9'), '203.0.113.9');
  assert.equal(one('10.0.0.2', undefined), '10.0.0.2');
  const two = clientIpResolver(2);
  assert.equal(two('10.0.0.2', '6.6.6.6, 203.0.113.9, 10.0.0.1'), '203.0.113.9');
  assert.equal(two('10.0.0.2', '203.0.113.9'), '203.0.113.9', 'a shorter chain stops at its leftmost entry');
});

test('property: with trustProxy 1, a client cannot choose its IP by prepending entries', () => {
  const resolve = clientIpResolver(1);
  fc.assert(fc.property(fc.array(fc.ipV4(), { maxLength: 10 }), fc.ipV4(), (spoofed, real) => {
    const header = [...spoofed, real].join(', ');
    return resolve('10.0.0.2', header) === real;
  }), { seed: 2 });
});

test('trustProxy as a CIDR list walks left past trusted proxies only', () => {
  const resolve = clientIpResolver(['10.0.0.0/8', 'loopback']);
  assert.equal(resolve('127.0.0.1', '198.51.100.4, 10.1.2.3'), '198.51.100.4');
  assert.equal(resolve('127.0.0.1', '6.6.6.6, 198.51.100.4, 10.1.2.3'), '198.51.100.4', 'an untrusted hop stops the walk');
  assert.equal(resolve('203.0.113.50', '6.6.6.6'), '203.0.113.50', 'a request not from a trusted proxy: XFF ignored');
  const v6 = clientIpResolver(['2001:db8::/32']);
  assert.equal(v6('2001:db8::1', '2001:db9::5'), '2001:db9::5');
  const single = clientIpResolver(['192.0.2.10']);
  assert.equal(single('192.0.2.10', '198.51.100.1'), '198.51.100.1');
  assert.equal(single('192.0.2.11', '198.51.100.1'), '192.0.2.11');
});

test('trustProxy as a predicate sees each hop with its index (0 = socket)', () => {
  const seen: [string, number][] = [];
  const resolve = clientIpResolver((address, hop) => {
    seen.push([address, hop]);
    return address.startsWith('10.');
  });
  assert.equal(resolve('10.0.0.1', '192.0.2.1, 10.0.0.9'), '192.0.2.1');
  // The leftmost entry is the answer once every hop to its right is trusted; it is not asked about.
  assert.deepEqual(seen, [['10.0.0.1', 0], ['10.0.0.9', 1]]);
});

test('trustProxy true believes the leftmost entry (only safe behind a header-overwriting proxy)', () => {
  assert.equal(clientIpResolver(true)('10.0.0.1', '192.0.2.1, 10.0.0.9'), '192.0.2.1');
});

test('an X-Forwarded-For with no usable element falls back to the socket address', () => {
  const resolve = clientIpResolver(1);
  for (const xff of ['', ',', 'unknown', '1.2.3.4, garbage', '1.2.3.999', '<script>', '1.2.3.4, ', 'a'.repeat(5000)]) {
    assert.equal(resolve('10.0.0.2', xff), '10.0.0.2', `XFF ${JSON.stringify(xff.slice(0, 40))}`);
  }
  assert.equal(resolve('10.0.0.2', ['1.2.3.4', '5.6.7.8']), '5.6.7.8', 'repeated headers read as one list');
});

test('a malformed element stops the walk at its right neighbour; it does not discard the chain', () => {
  // Hop count: the hop our proxy reported is used whatever the client wrote to its left.
  const one = clientIpResolver(1);
  for (const xff of ['unknown, 203.0.113.9', 'garbage, 203.0.113.9', '1.2.3.4,,203.0.113.9', '_hidden, 6.6.6.6, 203.0.113.9', '<script>,203.0.113.9']) {
    assert.equal(one('10.0.0.2', xff), '203.0.113.9', `XFF ${JSON.stringify(xff)}`);
  }
  const two = clientIpResolver(2);
  assert.equal(two('10.0.0.2', 'unknown, 10.0.0.1'), '10.0.0.1', 'the inner proxy reported garbage: the last address it vouched for');
  assert.equal(two('10.0.0.2', 'unknown, 198.51.100.4, 10.0.0.1'), '198.51.100.4');
  // Trust list: the walk passes trusted proxies and stops at garbage, keeping the last proxy's report.
  const list = clientIpResolver(['10.0.0.0/8']);
  assert.equal(list('10.0.0.2', 'garbage, 198.51.100.4, 10.1.1.1'), '198.51.100.4', 'an untrusted address before the garbage');
  assert.equal(list('10.0.0.2', 'garbage, 10.1.1.1'), '10.1.1.1', 'garbage right after a trusted proxy: that proxy');
  assert.equal(list('10.0.0.2', 'unknown'), '10.0.0.2');
  // IPv6 and ports, mixed with garbage.
  assert.equal(one('::1', 'unknown, [2001:db8::7]:4711'), '2001:db8::7');
  assert.equal(one('::1', 'nonsense, 2001:db8::7'), '2001:db8::7');
  assert.equal(one('::ffff:10.0.0.2', 'x, 203.0.113.9:443'), '203.0.113.9');
  assert.equal(clientIpResolver(['2001:db8::/32'])('2001:db8::1', '[fe80::1%eth0], 2001:db8::9, 2001:db9::5'), '2001:db9::5');
  assert.equal(clientIpResolver(['2001:db8::/32'])('2001:db8::1', '[2001:db8::1]:x, 2001:db8::9'), '2001:db8::9');
  // A chain longer than any real one: the walk stops after 64 hops.
  assert.equal(clientIpResolver(true)('10.0.0.2', Array(100).fill('1.1.1.1').join(',')), '1.1.1.1');
});

test('property: with trustProxy 1, whatever a client writes left of the proxy\'s entry, the proxy\'s entry is the client', () => {
  const resolve = clientIpResolver(1);
  fc.assert(fc.property(fc.array(fc.oneof(fc.ipV4(), fc.string({ maxLength: 20 }).filter((t) => !t.includes(','))), { maxLength: 10 }), fc.ipV4(), (written, real) => {
    return resolve('10.0.0.2', [...written, real].join(', ')) === real;
  }), { seed: 3 });
});

test('forwarded elements with ports and brackets are understood', () => {
  assert.equal(parseForwardedElement(' 203.0.113.9:4711 '), '203.0.113.9');
  assert.equal(parseForwardedElement('[2001:db8::1]:443'), '2001:db8::1');
  assert.equal(parseForwardedElement('[2001:db8::1]'), '2001:db8::1');
  assert.equal(parseForwardedElement('2001:db8::1'), '2001:db8::1');
  assert.equal(parseForwardedElement('::ffff:192.0.2.1'), '192.0.2.1');
  assert.equal(parseForwardedElement('[2001:db8::1]:x'), undefined);
  assert.equal(parseForwardedElement('1.2.3.4:99999999'), undefined);
  assert.equal(parseForwardedElement('_hidden'), undefined);
  assert.equal(normalizeIp('::1'), '::1');
});

test('bad trustProxy options fail when the server is built', () => {
  assert.throws(() => clientIpResolver(-1), { code: 'INVALID_OPTIONS' });
  assert.throws(() => clientIpResolver(1.5), { code: 'INVALID_OPTIONS' });
  assert.throws(() => clientIpResolver(['10.0.0.0/33']), { code: 'INVALID_OPTIONS' });
  assert.throws(() => clientIpResolver(['not-an-ip']), { code: 'INVALID_OPTIONS' });
  assert.throws(() => clientIpResolver(['10.0.0.0/8/1']), { code: 'INVALID_OPTIONS' });
  assert.throws(() => clientIpResolver('yes' as any), { code: 'INVALID_OPTIONS' });
});
