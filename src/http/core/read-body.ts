import type { IncomingMessage } from 'node:http';
import { contextOf } from './node-io.js';
import { InvalidRequestError } from './problem.js';

// Reading a Node request body, shared by the node:http and Express adapters (Fastify reads its own).

/** The largest body read when nobody says otherwise: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1_048_576;

export interface ReadBodyOptions {
  /** Largest body accepted, in bytes (413 beyond). Default 1 MiB. */
  limitBytes?: number;
}

/**
 * Reads a request body with a size limit. Rejects with `InvalidRequestError` (code INVALID_INPUT):
 * 413 when too large (checked against Content-Length first, then while reading), 400 when the
 * client aborts mid-body. `bulwarkHandler` answers those as problem+json.
 */
export function readBody(req: IncomingMessage, options: ReadBodyOptions = {}): Promise<Buffer> {
  const kept = contextOf(req);
  if (kept?.hasBody && Buffer.isBuffer(kept.body)) return Promise.resolve(kept.body); // read already, for a protection
  const limit = options.limitBytes ?? DEFAULT_MAX_BODY_BYTES;
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    req.resume(); // drain so the connection can answer
    return Promise.reject(new InvalidRequestError(`request body larger than ${limit} bytes`, 413));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (error: Error | undefined): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.resume();
        finish(new InvalidRequestError(`request body larger than ${limit} bytes`, 413));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (error: Error): void => finish(new InvalidRequestError('request body could not be read', 400, error));
    const onClose = (): void => {
      if (!req.complete) finish(new InvalidRequestError('request body incomplete: the client aborted', 400));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** `readBody` + `JSON.parse`; malformed JSON is a 400 `InvalidRequestError`, never a 500. */
export async function readJson(req: IncomingMessage, options: ReadBodyOptions = {}): Promise<unknown> {
  const body = await readBody(req, options);
  if (body.length === 0) throw new InvalidRequestError('request body is empty; JSON expected', 400);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new InvalidRequestError('request body is not valid JSON', 400, error);
  }
}
