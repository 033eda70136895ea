import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the fake answers one query with: a JSON body and its status, or nothing at all (a hung Prometheus). */
export type FakeAnswer = { status?: number; body: unknown } | { raw: string; status: number } | 'hang';

export interface ReceivedQuery {
  path: string;
  query: string;
  time: string | null;
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
  answer: (query: string) => FakeAnswer = () => vector();
  readonly #server: Server;
  readonly #hung = new Set<ServerResponse>();

  private constructor() {
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  static async start(): Promise<FakePrometheus> {
    const fake = new FakePrometheus();
    await new Promise<void>((resolve) => fake.#server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const res of this.#hung) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve, reject) => this.#server.close((error) => (error ? reject(error) : resolve())));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
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
