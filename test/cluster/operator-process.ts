import { spawn, type ChildProcess } from 'node:child_process';
import { after, before } from 'node:test';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { installCrd, installGatewayApi, ROOT, startCluster, type Cluster } from './harness.ts';

/**
 * `npm run operator` as its own process (node operator/main.ts), the way the chart's Deployment runs
 * it: its environment, its own kubeconfig, its /readyz and /metrics on a port of its own. Logs are
 * kept (JSON lines) for assertions and printed when a test fails.
 */
export interface OperatorProcess {
  readonly port: number;
  readonly logs: string[];
  readonly child: ChildProcess;
  /** GET /readyz: its status and body. */
  readyz(): Promise<{ status: number; body: string }>;
  metrics(): Promise<string>;
  /** Parsed log lines whose msg matches. */
  logged(msg: RegExp): Array<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startOperator(options: { kubeconfig: string; env?: Record<string, string> }): Promise<OperatorProcess> {
  const port = await freePort();
  const logs: string[] = [];
  const child = spawn(process.execPath, [join(ROOT, 'operator/main.ts')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      RERANK_SERVER_IMAGE: 'registry.invalid/rerank-server:test',
      LOG_LEVEL: 'debug',
      ...options.env,
      KUBECONFIG: options.kubeconfig,
      // Always a port of its own, whatever the environment given says (the chart's is 8081).
      OPERATOR_PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let partial = '';
  const collect = (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    logs.push(...lines.filter(Boolean));
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => (running.delete(child), resolve(code))));
  const base = `http://127.0.0.1:${port}`;
  return {
    port,
    logs,
    child,
    exited,
    async readyz() {
      const response = await fetch(`${base}/readyz`);
      return { status: response.status, body: await response.text() };
    },
    async metrics() {
      return (await fetch(`${base}/metrics`)).text();
    },
    logged(msg) {
      return logs.flatMap((line) => {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          return typeof parsed.msg === 'string' && msg.test(parsed.msg) ? [parsed] : [];
        } catch {
          return [];
        }
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Poll until `check` returns a value other than undefined/false, or fail with what it last saw. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await sleep(everyMs);
  }
}

/**
 * For a describe block: the shared API server with the CRD (and the Gateway API CRDs when asked), and
 * one operator process that leads through a Lease in a namespace of its own. Started before the
 * block's tests, stopped after them; read `cluster` and `operator` inside the tests.
 */
export function leadingOperator(options: { gatewayApi?: boolean } = {}): { readonly cluster: Cluster; readonly operator: OperatorProcess } {
  let cluster: Cluster | undefined;
  let operator: OperatorProcess | undefined;
  before(async () => {
    cluster = await startCluster();
    await installCrd(cluster);
    if (options.gatewayApi) await installGatewayApi(cluster);
    const leaseNamespace = await cluster.namespace('rerank-system');
    const started = await startOperator({ kubeconfig: cluster.kubeconfig, env: { POD_NAMESPACE: leaseNamespace } });
    operator = started;
    await eventually('the operator to lead and list everything', async () => (await started.readyz()).body === 'ok: leading\n');
  });
  after(async () => {
    await operator?.stop();
    await cluster?.cleanup();
  });
  return {
    get cluster() {
      if (!cluster) throw new Error('no cluster: read it inside a test');
      return cluster;
    },
    get operator() {
      if (!operator) throw new Error('no operator: read it inside a test');
      return operator;
    },
  };
}
