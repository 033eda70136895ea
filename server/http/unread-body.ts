import type { IncomingMessage } from 'node:http';
import type { Middleware } from 'koa';

/**
 * An answer given before the request body was read (413 on a declared length, 401 before the body, a
 * route that reads no body) is held back while the rest of the body is read and dropped, then sent.
 * Otherwise a client that writes its whole body before reading (Python's urllib, curl with
 * `Connection: close`) finds the connection closed under it, a broken pipe, and never sees the status:
 * closing a socket with unread bytes sends a reset. This is nginx's lingering close, bounded in bytes and
 * time; past either bound the answer goes out with `Connection: close` and the client may see the reset.
 *
 * @example
 * app.use(discardUnreadBody());
 * app.use(errorHandler());
 */

export interface UnreadBodyLimits {
  /** Bytes read and dropped at most; a larger declared Content-Length is not waited for. */
  maxBytes: number;
  /** Time waited at most for the rest of the body. */
  maxMs: number;
}

export const UNREAD_BODY_LIMITS: UnreadBodyLimits = { maxBytes: 64 * 1024 * 1024, maxMs: 10_000 };

export function discardUnreadBody(limits: UnreadBodyLimits = UNREAD_BODY_LIMITS): Middleware {
  return async (ctx, next) => {
    await next();
    const req = ctx.req;
    if (req.complete || req.destroyed) return;
    if (!(await discardRest(req, limits))) ctx.set('Connection', 'close');
  };
}

/** Resolves true once the body has ended, false when a bound was passed first (or the client left). */
export function discardRest(req: IncomingMessage, limits: UnreadBodyLimits): Promise<boolean> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let bytes = 0;
    const finish = (ended: boolean) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('close', onClose).off('error', onClose);
      if (!ended) req.pause();
      resolve(ended);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > limits.maxBytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(req.complete);
    const timer = setTimeout(() => finish(false), limits.maxMs);
    req.on('data', onData).once('end', onEnd).once('close', onClose).once('error', onClose);
    req.resume();
  });
}
