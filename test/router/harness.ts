import http from 'node:http';
import { once } from 'node:events';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from 'js-yaml';
import { createLogger } from '../../server/logger.ts';
import { RouterMetrics } from '../../server/router/metrics.ts';
import { startRouter, type RunningRouter } from '../../server/router/start.ts';

/** What a fake upstream saw of one request, and answers with. */
export interface Echo {
  upstream: string;
  method: string;
  path: string;
  /** X-Rerank-Version as received: the version the router chose. */
  version: string | undefined;
  requestId: string | undefined;
  authorization: string | undefined;
  contentType: string | undefined;
  forwardedFor: string | undefined;
  /** X-Rerank-Mirror as received: '1' on the router's mirrored copies. */
  mirror: string | undefined;
  /** X-Request-Timeout-Ms as received. */
  timeoutMs: string | undefined;
  body: string;
}

export interface FakeUpstream {
  name: string;
  url: string;
  requests: Echo[];
  /** Replaces the JSON echo: status, headers and body to answer with. */
  respond: ((echo: Echo) => { status: number; headers?: Record<string, string>; body: string }) | undefined;
  /** Wait this long before answering (rerank requests; not /readyz). */
  delayMs: number;
  /** GET /readyz (the router's health check, not recorded in `requests`): 200 when true, 503 when false, no answer at all when 'hang'. */
  ready: boolean | 'hang';
  /** GET /readyz requests received. */
  checks: number;
  close(): Promise<void>;
}

/** A plain node:http server standing in for a version's pods: it answers with what it received. */
export async function fakeUpstream(name: string): Promise<FakeUpstream> {
  const upstream: FakeUpstream = { name, url: '', requests: [], respond: undefined, delayMs: 0, ready: true, checks: 0, close: async () => {} };
  const server = http.createServer(async (req, res) => {
    if (req.method === 'GET' && req.url === '/readyz') {
      upstream.checks += 1;
      if (upstream.ready === 'hang') return;
      res.writeHead(upstream.ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: upstream.ready ? 'ready' : 'not_ready' }));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const header = (key: string) => (typeof req.headers[key] === 'string' ? (req.headers[key] as string) : undefined);
    const echo: Echo = {
      upstream: name,
      method: req.method ?? '',
      path: req.url ?? '',
      version: header('x-rerank-version'),
      requestId: header('x-request-id'),
      authorization: header('authorization'),
      contentType: header('content-type'),
      forwardedFor: header('x-forwarded-for'),
      mirror: header('x-rerank-mirror'),
      timeoutMs: header('x-request-timeout-ms'),
      body: Buffer.concat(chunks).toString('utf8'),
    };
    upstream.requests.push(echo);
    if (upstream.delayMs > 0) await sleep(upstream.delayMs);
    if (res.destroyed) return;
    const answer = upstream.respond?.(echo) ?? { status: 200, body: JSON.stringify(echo) };
    res.writeHead(answer.status, {
      'content-type': 'application/json',
      ...(echo.version ? { 'x-rerank-version': echo.version } : {}),
      ...(echo.requestId ? { 'x-request-id': echo.requestId } : {}),
      ...answer.headers,
    });
    res.end(answer.body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  upstream.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return upstream;
}

/** A loopback URL nothing listens on. */
export async function deadUrl(): Promise<string> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

export interface VersionSpec {
  weight?: number;
  enabled?: boolean;
  endpoint?: string;
}

/** config.yaml for these versions; `model` gives each one's model directory (a path the router never reads, by default). */
export function configYaml(
  versions: Record<string, VersionSpec>,
  defaultVersion: string,
  serving?: Record<string, unknown>,
  model: (name: string) => string = (name) => `/models/${name}`,
): string {
  return dump({
    defaultVersion,
    ...(serving ? { serving } : {}),
    versions: Object.fromEntries(Object.entries(versions).map(([name, v]) => [name, { model: model(name), weight: v.weight ?? 0, enabled: v.enabled ?? true, ...(v.endpoint ? { endpoint: v.endpoint } : {}) }])),
  });
}

/** router.yaml; `health` adds its healthCheck and outlierDetection (or mirror) sections. */
export function routerYaml(upstreams: Record<string, string>, headerName = 'X-Rerank-Version', health: Record<string, unknown> = {}): string {
  return dump({ router: { headerName, upstreams, ...health } });
}

/** Mulberry32: a seeded uniform source, so the weighted split is the same on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Answer {
  status: number;
  /** X-Rerank-Version of the response. */
  version: string | undefined;
  body: string;
}

/** `count` POSTs of one body, `concurrency` at a time over keep-alive connections (node:http: faster than fetch). */
export async function postMany(url: string, body: unknown, count: number, concurrency = 50): Promise<Answer[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const payload = JSON.stringify(body);
  const one = () =>
    new Promise<Answer>((resolve, reject) => {
      const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const version = res.headers['x-rerank-version'];
          resolve({ status: res.statusCode ?? 0, version: typeof version === 'string' ? version : undefined, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(payload);
    });
  const answers: Answer[] = [];
  try {
    for (let sent = 0; sent < count; sent += concurrency) {
      answers.push(...(await Promise.all(Array.from({ length: Math.min(concurrency, count - sent) }, one))));
    }
  } finally {
    agent.destroy();
  }
  return answers;
}

export interface RouterHarness {
  router: RunningRouter;
  url: string;
  dir: string;
  configFile: string;
  routerFile: string;
  logs: Array<Record<string, unknown>>;
  /** Replace a file the way an editor or kubelet does: a new file renamed over the old. */
  write(file: string, text: string): Promise<void>;
  post(pathname: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  get(pathname: string): Promise<Response>;
  /** `count` POSTs of one body, `concurrency` at a time over keep-alive connections (node:http: faster than fetch); the bodies of the answers. */
  postMany(pathname: string, body: unknown, count: number, concurrency?: number): Promise<string[]>;
  /** Poll until `check` holds (a reload took effect), or fail. */
  until(check: () => Promise<boolean> | boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startRouterHarness(options: { config?: string; router?: string; upstreamTimeoutMs?: number; seed?: number; env?: NodeJS.ProcessEnv }): Promise<RouterHarness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-router-'));
  const configFile = path.join(dir, 'config.yaml');
  const routerFile = path.join(dir, 'router.yaml');
  const write = async (file: string, text: string) => {
    const temp = `${file}.tmp-${process.hrtime.bigint()}`;
    await writeFile(temp, text);
    await rename(temp, file);
  };
  if (options.config !== undefined) await write(configFile, options.config);
  if (options.router !== undefined) await write(routerFile, options.router);
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const router = await startRouter({
    configFile,
    routerFile,
    port: 0,
    host: '127.0.0.1',
    logger,
    upstreamTimeoutMs: options.upstreamTimeoutMs ?? 2000,
    watchMode: 'auto',
    pollIntervalMs: 40,
    debounceMs: 5,
    metrics: new RouterMetrics({ defaultMetrics: false }),
    random: seededRandom(options.seed ?? 42),
    env: options.env ?? {},
  });
  return {
    router,
    url: router.url,
    dir,
    configFile,
    routerFile,
    logs,
    write,
    post: (pathname, body, headers = {}) =>
      fetch(`${router.url}${pathname}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    get: (pathname) => fetch(`${router.url}${pathname}`),
    postMany: async (pathname, body, count, concurrency) => (await postMany(`${router.url}${pathname}`, body, count, concurrency)).map((answer) => answer.body),
    until: async (check, what, timeoutMs = 3000) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (await check()) return;
        await sleep(10);
      }
      throw new Error(`timed out waiting for ${what}`);
    },
    close: async () => {
      await router.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
