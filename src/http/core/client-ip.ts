import { BlockList, isIP } from 'node:net';
import { InvalidOptionsError } from '../../core/errors.js';

/**
 * Which `X-Forwarded-For` hops to believe. The header is written by whoever sent the request,
 * so by default (`false`/`0`) it is ignored and the client IP is the socket's peer address:
 * a spoofed header cannot dodge a per-IP limit.
 *
 * - `n` (integer ≥ 1): exactly n proxies you run sit in front of this server; the client is the
 *   n-th address from the right of the chain `XFF..., socket` (Express's `trust proxy = n`).
 * - a list of addresses/CIDRs (`'10.0.0.0/8'`, `'::1'`) or the names `'loopback'`, `'private'`
 *   (RFC 1918 + fc00::/7), `'linklocal'`: hops whose address is listed are proxies; the client is
 *   the first unlisted address walking from the socket leftwards.
 * - a predicate `(address, hop) => boolean`, hop 0 being the socket peer: same walk.
 * - `true`: trust every hop (the leftmost address wins). Only behind a proxy that overwrites
 *   the header; otherwise any client can choose its IP.
 *
 * An element that is not an IP address stops the walk at its right neighbour (see `walkForwardedFor`).
 */
export type TrustProxy = boolean | number | readonly string[] | ((address: string, hop: number) => boolean);

/** Resolves the client IP of one request. Build once per server with `clientIpResolver`. */
export type ClientIpResolver = (socketAddress: string | undefined, forwardedFor: string | readonly string[] | undefined) => string;

/** Returned when the socket is already gone and no trusted hop says otherwise. */
export const UNKNOWN_CLIENT = 'unknown';

/** `::ffff:1.2.3.4` → `1.2.3.4`, so one client has one key whatever the socket family. */
export function normalizeIp(address: string): string {
  if (address.length > 7 && address.charCodeAt(0) === 58 /* : */ && address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) {
    return address.slice(7);
  }
  return address;
}

/**
 * One XFF element as an address, or undefined when it is not one (`unknown`, obfuscated
 * identifiers, garbage). Accepts `1.2.3.4:5678` and `[2001:db8::1]:443` (some proxies add ports).
 */
export function parseForwardedElement(raw: string): string | undefined {
  let text = raw.trim();
  if (text.length === 0 || text.length > 64) return undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) return undefined;
    const rest = text.slice(end + 1);
    if (rest !== '' && !/^:[0-9]{1,5}$/.test(rest)) return undefined;
    text = text.slice(1, end);
  } else if (text.indexOf(':') > 0 && text.indexOf(':') === text.lastIndexOf(':')) {
    // a.b.c.d:port (an IPv6 address has more than one colon)
    const [host, port] = text.split(':');
    if (!/^[0-9]{1,5}$/.test(port!)) return undefined;
    text = host!;
  }
  return isIP(text) === 0 ? undefined : normalizeIp(text);
}

/** How far left the walk goes at most: no real proxy chain is longer. */
const MAX_FORWARDED_HOPS = 64;

const NAMED_RANGES: Record<string, readonly [string, number, 'ipv4' | 'ipv6'][]> = {
  loopback: [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']],
  private: [['10.0.0.0', 8, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['fc00::', 7, 'ipv6']],
  uniquelocal: [['10.0.0.0', 8, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['fc00::', 7, 'ipv6']],
  linklocal: [['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']],
};

/** Compiles a list of addresses, CIDRs and range names into a matcher (throws INVALID_OPTIONS on a bad entry). */
export function compileTrustList(list: readonly string[]): (address: string) => boolean {
  const blocks = new BlockList();
  for (const entry of list) {
    if (typeof entry !== 'string') throw new InvalidOptionsError(`trustProxy entries must be strings, got ${String(entry)}`);
    const named = NAMED_RANGES[entry.toLowerCase()];
    if (named) {
      for (const [net, prefix, type] of named) blocks.addSubnet(net, prefix, type);
      continue;
    }
    const [net, prefixText, extra] = entry.split('/');
    const family = isIP(net ?? '');
    if (family === 0 || extra !== undefined) throw new InvalidOptionsError(`trustProxy: ${JSON.stringify(entry)} is not an IP address or CIDR`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefixText === undefined) {
      blocks.addAddress(net!, type);
      continue;
    }
    const prefix = Number(prefixText);
    if (!/^[0-9]{1,3}$/.test(prefixText) || prefix > (family === 4 ? 32 : 128)) {
      throw new InvalidOptionsError(`trustProxy: ${JSON.stringify(entry)} has an invalid prefix length`);
    }
    blocks.addSubnet(net!, prefix, type);
  }
  return (address) => {
    const family = isIP(address);
    return family !== 0 && blocks.check(address, family === 4 ? 'ipv4' : 'ipv6');
  };
}

/** Validates `trustProxy` once and returns the per-request resolver. */
export function clientIpResolver(trust: TrustProxy | undefined): ClientIpResolver {
  if (trust === undefined || trust === false || trust === 0) {
    return (socketAddress) => (socketAddress === undefined ? UNKNOWN_CLIENT : normalizeIp(socketAddress));
  }
  let trusted: (address: string, hop: number) => boolean;
  if (trust === true) {
    trusted = () => true;
  } else if (typeof trust === 'number') {
    if (!Number.isInteger(trust) || trust < 0) throw new InvalidOptionsError(`trustProxy must be a hop count >= 0, got ${trust}`);
    trusted = (_address, hop) => hop < trust;
  } else if (typeof trust === 'function') {
    trusted = trust;
  } else if (Array.isArray(trust)) {
    const inList = compileTrustList(trust);
    trusted = (address) => inList(address);
  } else {
    throw new InvalidOptionsError('trustProxy must be a boolean, a hop count, a list of addresses/CIDRs or a predicate');
  }
  return (socketAddress, forwardedFor) => {
    if (socketAddress === undefined) return UNKNOWN_CLIENT;
    const socket = normalizeIp(socketAddress);
    if (forwardedFor === undefined || !trusted(socket, 0)) return socket;
    return walkForwardedFor(typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(','), socket, trusted);
  };
}

/**
 * Walks the `X-Forwarded-For` chain from the right (the hop nearest to us) while hops are
 * trusted proxies, and returns the client: the first untrusted address, or the leftmost one when
 * every hop to its right is trusted. An element that is not an address (`unknown`, an obfuscated
 * identifier, garbage, an empty element) stops the walk too, and the answer is its right
 * neighbour: the last address a trusted proxy reported (the socket peer when the rightmost element
 * is malformed). One bad element thus costs only the hops to its left, which nobody trusted can
 * vouch for anyway; it never throws the whole chain away (that would key the request by our own
 * proxy's address: everyone behind it would share one budget). This is what nginx's realip module
 * does with `real_ip_recursive on` (its walk from the right stops at an unparsable element and
 * keeps the address found so far).
 */
function walkForwardedFor(header: string, socket: string, trusted: (address: string, hop: number) => boolean): string {
  let client = socket; // the last address a trusted hop reported
  let end = header.length;
  for (let hop = 1; hop <= MAX_FORWARDED_HOPS && end >= 0; hop++) {
    const comma = header.lastIndexOf(',', end - 1);
    const address = parseForwardedElement(header.slice(comma + 1, end));
    if (address === undefined) return client;
    // The leftmost element is the answer once every hop to its right is trusted; it is not asked about.
    if (comma < 0 || !trusted(address, hop)) return address;
    client = address;
    end = comma;
  }
  return client; // a chain longer than any real one: stop at the last hop walked
}
