/**
 * PostgreSQL's own query cancellation: a CancelRequest packet (protocol message with code
 * 80877102) carrying the backend's process id and secret key, sent on a fresh socket to the
 * server (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS).
 *
 * Why not the alternatives:
 * - `pg`'s `query_timeout` only stops waiting on the client; the server keeps running the query.
 * - Closing the client's socket does not stop it either: a backend busy in `pg_sleep` or a long
 *   scan does not read its socket, so it notices the disconnect only when it next writes.
 * - `SELECT pg_cancel_backend(pid)` needs a spare, authenticated connection, which is exactly
 *   what a saturated pool does not have.
 * A CancelRequest needs no authentication and no pool slot; the server closes the socket once it
 * has signalled the backend, which is when this resolves.
 */
import { connect, type Socket } from 'node:net';

export interface CancelTarget {
  /** Host name / IP, or a Unix socket directory (starts with '/'). */
  host: string;
  port: number;
  processID: number;
  /** 32-bit key (protocol 3.0) or the variable-length key of protocol 3.2. */
  secretKey: number | Uint8Array;
}

const CANCEL_REQUEST_CODE = 80877102;

export function cancelRequestPacket(processID: number, secretKey: number | Uint8Array): Buffer {
  const keyLength = typeof secretKey === 'number' ? 4 : secretKey.length;
  const packet = Buffer.alloc(12 + keyLength);
  packet.writeInt32BE(packet.length, 0);
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  packet.writeInt32BE(processID, 8);
  if (typeof secretKey === 'number') packet.writeInt32BE(secretKey | 0, 12);
  else packet.set(secretKey, 12);
  return packet;
}

/**
 * Sends a CancelRequest and resolves when the server has closed the socket (it has then
 * signalled the backend). Rejects on a socket error or after `timeoutMs` (the server is
 * unreachable: the caller then falls back to closing the connection).
 */
export function sendCancelRequest(target: CancelTarget, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let socket: Socket;
    try {
      socket = target.host.startsWith('/')
        ? connect(`${target.host}/.s.PGSQL.${target.port}`)
        : connect(target.port, target.host);
    } catch (error) {
      reject(error);
      return;
    }
    let done = false;
    const finish = (error?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`postgres cancel request got no answer within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    socket.once('connect', () => socket.end(cancelRequestPacket(target.processID, target.secretKey)));
    socket.once('error', (error) => finish(error));
    socket.once('close', () => finish());
    socket.resume(); // the server sends nothing back; drain anyway so 'close' is reached
  });
}

interface PgClientInternals {
  processID?: unknown;
  secretKey?: unknown;
  host?: unknown;
  port?: unknown;
}

/** Where to send a CancelRequest for a `pg` client's backend, if pg exposes it (pg >= 7; not pg-native). */
export function cancelTargetOf(client: object): CancelTarget | undefined {
  const c = client as PgClientInternals;
  if (typeof c.processID !== 'number' || (typeof c.secretKey !== 'number' && !(c.secretKey instanceof Uint8Array))) return undefined;
  const host = typeof c.host === 'string' && c.host !== '' ? c.host : 'localhost';
  const port = typeof c.port === 'number' ? c.port : Number(c.port ?? 5432);
  return { host, port, processID: c.processID, secretKey: c.secretKey };
}
