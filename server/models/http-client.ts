import { Agent, fetch as undiciFetch } from 'undici';
import type { Fetcher } from './download.ts';

/**
 * The HTTP client of `models pull`: fetch from the `undici` package (not the copy bundled with Node),
 * on an Agent with timeouts, so that a source that stalls fails an attempt (which the downloader retries
 * and resumes) instead of holding the pull forever.
 *
 * Why the package: the undici bundled with Node 24.21 throws an uncatchable
 * `AssertionError: assert(!this.paused)` when a server closes the connection right after a body the
 * reader has not consumed yet (nodejs/undici#5360); the dependency's version has the fix.
 */

export interface Timeouts {
  /** TCP (and TLS) connect. */
  connectMs: number;
  /** No byte for this long, waiting for the response headers or inside the body. */
  idleMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 30_000, idleMs: 30_000 };

export interface HttpClient {
  fetcher: Fetcher;
  /** Closes the client's connections. */
  close(): Promise<void>;
}

export function createHttpClient(timeouts: Partial<Timeouts> = {}): HttpClient {
  const { connectMs, idleMs } = { ...DEFAULT_TIMEOUTS, ...timeouts };
  for (const [name, value] of [['connect', connectMs], ['idle', idleMs]] as const) {
    if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`the ${name} timeout must be above zero, not ${value}`);
  }
  const agent = new Agent({ connect: { timeout: connectMs }, headersTimeout: idleMs, bodyTimeout: idleMs });
  // undici's Response is the same class at run time as the global one; only the type declarations differ.
  const fetcher: Fetcher = async (url, init) => (await undiciFetch(url, { ...init, dispatcher: agent })) as unknown as Response;
  return { fetcher, close: () => agent.destroy() };
}

const STALLS: Record<string, string> = {
  UND_ERR_CONNECT_TIMEOUT: 'could not connect within the connect timeout',
  UND_ERR_HEADERS_TIMEOUT: 'stalled: no response headers within the idle timeout',
  UND_ERR_BODY_TIMEOUT: 'stalled: no data within the idle timeout while reading the body',
};

/** What went wrong in a request, in words: a stall by name, else the error and its cause. */
export function describeRequestError(error: unknown, timeouts?: Partial<Timeouts>): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause : undefined;
  const code = (cause as NodeJS.ErrnoException | undefined)?.code ?? (error as NodeJS.ErrnoException).code;
  const stall = code !== undefined ? STALLS[code] : undefined;
  if (stall) {
    const ms = code === 'UND_ERR_CONNECT_TIMEOUT' ? timeouts?.connectMs : timeouts?.idleMs;
    return ms === undefined ? stall : `${stall} (${ms / 1000} s)`;
  }
  return `${error.message}${cause ? `: ${cause.message}` : ''}`;
}

/**
 * A response body read whole, but refused past `maxBytes` (a manifest, a token): an endless or huge
 * answer fails instead of filling memory.
 */
export async function readLimited(response: Response, maxBytes: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw new RangeError(`${what} is ${declared} bytes, more than the ${maxBytes} accepted`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  if (!response.body) return Buffer.alloc(0);
  for await (const chunk of response.body) {
    size += chunk.byteLength;
    // Leaving the loop cancels the body.
    if (size > maxBytes) throw new RangeError(`${what} is more than the ${maxBytes} bytes accepted`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks, size);
}
