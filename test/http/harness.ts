import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { ServingConfigSchema, type ServingConfig } from '../../server/config/schema.ts';
import { createApp, type AppDeps } from '../../server/http/app.ts';
import { createLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { FakeReranker } from '../support/fake-reranker.ts';

export interface Harness {
  url: string;
  reranker: FakeReranker;
  metrics: ServerMetrics;
  /** The live serving config: change it and the next request sees it. */
  serving: ServingConfig;
  /** Parsed log lines. */
  logs: Array<Record<string, unknown>>;
  /** The key the server currently requires; undefined: none. */
  apiKey: string | undefined;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  reranker?: FakeReranker;
  serving?: Partial<ServingConfig>;
  apiKey?: string;
  /** Where the key comes from, instead of `Harness.apiKey`. */
  apiKeySource?: () => string | undefined;
  info?: AppDeps['info'];
  configStatus?: AppDeps['configStatus'];
  endpoints?: AppDeps['endpoints'];
}

/** The app on a real loopback socket, with a FakeReranker behind it. */
export async function startServer(options: HarnessOptions = {}): Promise<Harness> {
  const reranker = options.reranker ?? new FakeReranker();
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const harness = {
    reranker,
    metrics,
    logs,
    serving: ServingConfigSchema.parse(options.serving ?? {}),
    apiKey: options.apiKey,
  } as Harness;
  const app = createApp({
    reranker,
    metrics,
    logger,
    serving: () => harness.serving,
    apiKey: options.apiKeySource ?? (() => harness.apiKey),
    ...(options.info ? { info: options.info } : {}),
    ...(options.configStatus ? { configStatus: options.configStatus } : {}),
    ...(options.endpoints ? { endpoints: options.endpoints } : {}),
  });
  const server = http.createServer(app.callback());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  harness.url = `http://127.0.0.1:${port}`;
  harness.post = (path, body, headers = {}) =>
    fetch(`${harness.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  harness.get = (path, headers = {}) => fetch(`${harness.url}${path}`, { headers });
  harness.close = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };
  return harness;
}

/** Parses a JSON response, failing with the body text when it is not JSON. */
export async function json<T = unknown>(response: Response): Promise<T> {
  const text = await response.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`not JSON (status ${response.status}): ${text.slice(0, 200)}`);
  }
}
