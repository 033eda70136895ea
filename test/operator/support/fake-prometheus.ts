import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/** What the fake answers one query with: a JSON body and its status, or nothing at all (a hung Prometheus). */
export type FakeAnswer = { status?: number; body: unknown } | { raw: string; status: number } | 'hang';

export interface ReceivedQuery {
  path: string;
  query: string;
  time: string | null;
}

export interface FakePrometheusOptions {
  /** Serve https with this key and certificate. */
  tls?: { key: string; cert: string };
  /** Answer 401 (as an authenticating proxy in front of Prometheus does) unless the request's Authorization is exactly this. */
  authorization?: string;
}

/** A vector answer of one series per value (no value: no series), as Prometheus writes it. */
export function vector(...values: Array<number | string>): FakeAnswer {
  return {
    body: {
      status: 'success',
      data: { resultType: 'vector', result: values.map((v, i) => ({ metric: i === 0 ? {} : { pod: `p${i}` }, value: [1_700_000_000, String(v)] })) },
    },
  };
}

/**
 * A Prometheus HTTP API on loopback that answers GET /api/v1/query with what `answer` says and records
 * every query it was sent (its text and evaluation time), so tests check what the operator asked.
 */
export class FakePrometheus {
  readonly received: ReceivedQuery[] = [];
  /** The headers of every request, in order, authorized or not. */
  readonly headers: IncomingHttpHeaders[] = [];
  answer: (query: string) => FakeAnswer = () => vector();
  readonly #server: Server;
  readonly #hung = new Set<ServerResponse>();
  readonly #options: FakePrometheusOptions;

  private constructor(options: FakePrometheusOptions) {
    this.#options = options;
    const handle = (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res);
    this.#server = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, handle) : createServer(handle);
  }

  static async start(options: FakePrometheusOptions = {}): Promise<FakePrometheus> {
    const fake = new FakePrometheus(options);
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    return `${this.#options.tls ? 'https' : 'http'}://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const res of this.#hung) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve, reject) => this.#server.close((error) => (error ? reject(error) : resolve())));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    this.headers.push(req.headers);
    if (this.#options.authorization !== undefined && req.headers.authorization !== this.#options.authorization) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('Unauthorized\n');
      return;
    }
    if (req.method !== 'GET' || !url.pathname.endsWith('/api/v1/query')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('404 page not found\n');
      return;
    }
    const query = url.searchParams.get('query') ?? '';
    this.received.push({ path: url.pathname, query, time: url.searchParams.get('time') });
    const answer = this.answer(query);
    if (answer === 'hang') {
      this.#hung.add(res);
      return;
    }
    if ('raw' in answer) {
      res.writeHead(answer.status, { 'content-type': 'text/plain' }).end(answer.raw);
      return;
    }
    res.writeHead(answer.status ?? 200, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
  }
}
