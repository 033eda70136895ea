import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * HTTP/1.1 by hand over a loopback socket, for what fetch cannot do: send a body slowly or never finish
 * it, and write a whole body before reading anything (as Python's urllib does).
 */

export interface RawExchange {
  /** `HTTP/1.1 413 Payload Too Large`, or '' when nothing came back. */
  statusLine: string;
  /** Everything read, headers and body. */
  text: string;
  /** The error writing the request met (EPIPE, ECONNRESET), if any. */
  writeError: string | undefined;
  /** From the first byte written until the server closed the connection. */
  closedAfterMs: number;
}

export interface RawRequestOptions {
  /** Request line and headers, without the blank line. */
  head: string;
  /** Send the head without the blank line that ends it (headers that never finish). */
  headUnfinished?: boolean;
  /** Body chunks, written one after the other with `pauseMs` between them. */
  chunks?: Iterable<Buffer | string>;
  pauseMs?: number;
  /** Read only once every chunk is written (urllib), rather than all along. */
  readAfterWriting?: boolean;
  /** Leave the request unfinished after the chunks: wait for the server to act. */
  thenWaitMs?: number;
}

export async function rawRequest(url: string, options: RawRequestOptions): Promise<RawExchange> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const started = performance.now();
  let text = '';
  let writeError: string | undefined;
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - started)));
  socket.on('error', (error: NodeJS.ErrnoException) => (writeError ??= error.code ?? error.message));
  const read = () => socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  if (!options.readAfterWriting) read();
  else socket.pause();
  const write = (data: Buffer | string) =>
    new Promise<void>((resolve) => {
      if (socket.destroyed) return resolve();
      socket.write(data, (error) => {
        if (error) writeError ??= (error as NodeJS.ErrnoException).code ?? error.message;
        resolve();
      });
    });
  await write(options.headUnfinished ? options.head : `${options.head}\r\n\r\n`);
  for (const chunk of options.chunks ?? []) {
    if (socket.destroyed || writeError) break;
    await write(chunk);
    if (options.pauseMs) await sleep(options.pauseMs);
  }
  if (options.readAfterWriting) {
    read();
    socket.resume();
  }
  const closedAfterMs = await Promise.race([closed, sleep(options.thenWaitMs ?? 10_000).then(() => Number.NaN)]);
  socket.destroy();
  return { statusLine: text.split('\r\n')[0] ?? '', text, writeError, closedAfterMs };
}

/** `count` chunks of `size` bytes of JSON-safe filler. */
export function* filler(count: number, size: number): Generator<Buffer> {
  const chunk = Buffer.alloc(size, 'a');
  for (let i = 0; i < count; i += 1) yield chunk;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One connection kept open across requests: write any bytes at any time, read whole responses (Content-Length framed). */
export class RawConnection {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  #buffer = Buffer.alloc(0);
  #waiters: Array<() => void> = [];
  #ended = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.#ended = true;
        this.#wake();
        resolve();
      }),
    );
  }

  static async open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    const socket = net.connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawConnection(socket);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The next response on the connection; rejects when the connection closes first. */
  async response(): Promise<RawResponse> {
    for (;;) {
      const parsed = this.#parse();
      if (parsed) return parsed;
      if (this.#ended) throw new Error(`connection closed before a whole response (read: ${JSON.stringify(this.#buffer.toString('latin1').slice(0, 200))})`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  #parse(): RawResponse | undefined {
    const end = this.#buffer.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const [statusLine = '', ...lines] = this.#buffer.subarray(0, end).toString('latin1').split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(statusLine.split(' ')[1]);
    if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (let at = end + 4; ; ) {
        const lineEnd = this.#buffer.indexOf('\r\n', at);
        if (lineEnd < 0) return undefined;
        const size = Number.parseInt(this.#buffer.subarray(at, lineEnd).toString('latin1'), 16);
        if (this.#buffer.length < lineEnd + 2 + size + 2) return undefined;
        if (size === 0) {
          this.#buffer = this.#buffer.subarray(lineEnd + 4);
          return { status, headers, body: Buffer.concat(parts).toString('utf8') };
        }
        parts.push(this.#buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
    }
    const length = Number(headers['content-length'] ?? 0);
    if (this.#buffer.length < end + 4 + length) return undefined;
    const body = this.#buffer.subarray(end + 4, end + 4 + length).toString('utf8');
    this.#buffer = this.#buffer.subarray(end + 4 + length);
    return { status, headers, body };
  }
}
