import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { cancelled, RerankError } from '../errors.ts';
import { receiveTimedOut } from '../http/client-errors.ts';
import { HttpError } from '../http/errors.ts';
import { requestTimeout } from '../http/middleware.ts';
import type { UpstreamFailureKind } from './metrics.ts';

/**
 * The proxying edge: one request to an upstream over a keep-alive agent, its failures classified. The
 * request body is already buffered, which is what makes one retry safe: a keep-alive socket the upstream
 * closed just as it was reused fails with a reset before any byte of the response, and the request is
 * sent again on a fresh connection.
 */

/** The one place an upstream failure becomes a status: no answer → 502, too slow → 504. */
export const STATUS_BY_UPSTREAM_FAILURE: Readonly<Record<UpstreamFailureKind, number>> = {
  refused: 502,
  reset: 502,
  unresolved: 502,
  other: 502,
  timeout: 504,
};

/** The upstream gave no response: answered 502 (`upstream_unavailable`) or 504 (`upstream_timeout`) by the error middleware. */
export class UpstreamFailure extends HttpError {
  readonly kind: UpstreamFailureKind;
  readonly version: string;
  /** What went wrong, without the version and address (`connection refused (ECONNREFUSED)`): an upstream health reason. */
  readonly detail: string;
  constructor(kind: UpstreamFailureKind, version: string, message: string, options: { cause?: unknown; detail?: string } = {}) {
    super(STATUS_BY_UPSTREAM_FAILURE[kind], kind === 'timeout' ? 'upstream_timeout' : 'upstream_unavailable', message, options);
    this.name = 'UpstreamFailure';
    this.kind = kind;
    this.version = version;
    this.detail = options.detail ?? message;
  }
}

export interface Agents {
  http: http.Agent;
  https: https.Agent;
}

export function createAgents(): Agents {
  return { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
}

export interface ForwardRequest {
  url: URL;
  method: string;
  headers: OutgoingHttpHeaders;
  body: Buffer;
  /** Until the response headers arrive: connecting, sending and the upstream's work. */
  timeoutMs: number;
  /** Aborted when the caller went away: the upstream request is dropped too. */
  signal: AbortSignal;
  /** For the failure's message and metric label. */
  version: string;
  agents: Agents;
}

/** Send one request; resolves with the upstream's response (headers read, body not yet). */
export async function forward(request: ForwardRequest): Promise<IncomingMessage> {
  const deadline = performance.now() + request.timeoutMs;
  try {
    return await attempt(request, deadline);
  } catch (error) {
    if (!(error instanceof StaleSocket)) throw error;
    return attempt(request, deadline);
  }
}

/** A reused keep-alive socket turned out closed; safe to send again. */
class StaleSocket extends Error {}

function attempt(request: ForwardRequest, deadline: number): Promise<IncomingMessage> {
  const { url, version } = request;
  const where = `${url.protocol}//${url.host}`;
  return new Promise((resolve, reject) => {
    if (request.signal.aborted) return reject(cancelled('the client went away before the upstream answered'));
    const lib = url.protocol === 'https:' ? https : http;
    const agent = url.protocol === 'https:' ? request.agents.https : request.agents.http;
    const req = lib.request(url, { method: request.method, headers: request.headers, agent });
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.signal.removeEventListener('abort', onAbort);
      outcome();
    };
    const timeoutMs = Math.max(0, deadline - performance.now());
    const timer = setTimeout(() => {
      const detail = `no answer within ${request.timeoutMs} ms`;
      const failure = new UpstreamFailure('timeout', version, `version ${version}: ${where} did not answer within ${request.timeoutMs} ms`, { detail });
      settle(() => reject(failure));
      req.destroy(failure);
    }, timeoutMs);
    const onAbort = () => {
      settle(() => reject(cancelled('the client went away before the upstream answered')));
      req.destroy();
    };
    request.signal.addEventListener('abort', onAbort, { once: true });
    req.once('response', (res) => settle(() => resolve(res)));
    req.on('error', (error: NodeJS.ErrnoException) => {
      settle(() => {
        if (req.reusedSocket && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) return reject(new StaleSocket());
        const kind = classify(error);
        const detail = describe(kind, error);
        reject(new UpstreamFailure(kind, version, `version ${version}: ${where}: ${detail}`, { cause: error, detail }));
      });
    });
    req.end(request.body);
  });
}


function classify(error: NodeJS.ErrnoException): UpstreamFailureKind {
  switch (error.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unresolved';
    case 'ETIMEDOUT':
      return 'timeout';
    default:
      return 'other';
  }
}

function describe(kind: UpstreamFailureKind, error: NodeJS.ErrnoException): string {
  const detail = error.code ?? error.message;
  switch (kind) {
    case 'refused':
      return `connection refused (${detail})`;
    case 'reset':
      return `connection reset before a response (${detail})`;
    case 'unresolved':
      return `host not found (${detail})`;
    case 'timeout':
      return `connection timed out (${detail})`;
    default:
      return error.message || detail;
  }
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and those the proxy sets itself; never copied across. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** End-to-end headers of a message, without hop-by-hop ones (and those its Connection header names). */
export function endToEndHeaders(headers: IncomingHttpHeaders, drop: readonly string[] = []): OutgoingHttpHeaders {
  const named = String(headers.connection ?? '')
    .split(',')
    .map((token) => token.trim().toLowerCase())
    .filter(Boolean);
  const skip = new Set([...HOP_BY_HOP, ...named, ...drop]);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !skip.has(name)) out[name] = value;
  }
  return out;
}

/**
 * Read a request body whole, refusing it past `limit` bytes. A refused body is left unread, not destroyed
 * (which would reset the connection under a client still writing): the shell reads and drops the rest
 * before the 413 goes out.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new RerankError('payload_too_large', `body: larger than the limit of ${limit} bytes`, { field: 'body' });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (outcome: () => void) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      outcome();
    };
    const gone = (cause?: unknown) =>
      receiveTimedOut(req) ? requestTimeout(cause) : new RerankError('cancelled', 'body: the client went away while sending it', { field: 'body', cause });
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else
        done(() => {
          req.pause();
          reject(tooLarge());
        });
    };
    const onEnd = () => done(() => resolve(Buffer.concat(chunks)));
    const onError = (error: unknown) => done(() => reject(gone(error)));
    const onClose = () => done(() => (req.complete ? resolve(Buffer.concat(chunks)) : reject(gone())));
    req.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose);
  });
}
