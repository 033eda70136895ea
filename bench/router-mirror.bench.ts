/**
 * The router's overhead with mirroring: throughput and latency through `rerank-server router` with and
 * without `mirror` in router.yaml, side by side in one run.
 *
 *   npm run bench:mirror [-- --requests 3000 --clients 16 --rounds 3 --fraction 0.1 --upstream-ms 5 --documents 50]
 *
 * `rerank-server router` runs in its own process (the real CLI); two stand-in pods (stable, canary) run in
 * a worker thread, each answering a TEI ranking of the request's documents after `upstream-ms` (the
 * canary's order slightly different, so every comparison has work to do); the clients run here. Blocks
 * of `requests` alternate between router.yaml without a mirror and with `mirror: {from: stable, to:
 * canary, fraction}` (hot-reloaded, checked on GET /config before each block), `rounds` times each; the
 * figures of each mode are pooled over its blocks. Reports requests/s, latency p50/p99, the copies sent
 * and compared, and the mirror failures; writes `.bench/router-mirror.json`.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { dump as toYaml } from 'js-yaml';
import { freePort } from './process.ts';
import { fmt, metricSum, percentile } from './stats.ts';
import { Targets } from './targets.ts';

interface PodOptions {
  upstreamMs: number;
}

/** The worker: two stand-in pods answering TEI rankings after a fixed model time. */
async function stubPods(options: PodOptions): Promise<void> {
  const pod = (permute: boolean) =>
    http.createServer((req, res) => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const { texts } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { texts: string[] };
        const order = texts.map((_, i) => i);
        // The canary swaps neighbours every fifth place: close to stable, not the same.
        if (permute) for (let i = 0; i + 1 < order.length; i += 5) [order[i], order[i + 1]] = [order[i + 1]!, order[i]!];
        const body = JSON.stringify(order.map((index, rank) => ({ index, score: 1 - rank / (order.length + 1) })));
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(body), options.upstreamMs);
      });
    });
  const servers = [pod(false), pod(true)];
  for (const server of servers) server.listen(0, '127.0.0.1');
  await Promise.all(servers.map((server) => once(server, 'listening')));
  parentPort!.postMessage(servers.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`));
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      requests: { type: 'string', default: '3000' },
      clients: { type: 'string', default: '16' },
      rounds: { type: 'string', default: '3' },
      fraction: { type: 'string', default: '0.1' },
      'upstream-ms': { type: 'string', default: '5' },
      documents: { type: 'string', default: '50' },
    },
  });
  const requests = Number(args.requests);
  const clients = Number(args.clients);
  const rounds = Number(args.rounds);
  const fraction = Number(args.fraction);
  const upstreamMs = Number(args['upstream-ms']);
  const documents = Number(args.documents);
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { upstreamMs } satisfies PodOptions });
  const [stableUrl, canaryUrl] = (await once(worker, 'message'))[0] as [string, string];
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-mirror-bench-'));
  const configFile = path.join(dir, 'config.yaml');
  const routerFile = path.join(dir, 'router.yaml');
  const write = async (file: string, text: string) => {
    await writeFile(`${file}.tmp`, text);
    await rename(`${file}.tmp`, file);
  };
  await write(
    configFile,
    toYaml({ defaultVersion: 'stable', versions: { stable: { model: '/models/stable', weight: 100 }, canary: { model: '/models/canary', weight: 0 } }, serving: { logLevel: 'warn' } }),
  );
  const routerYaml = (mirror: boolean) =>
    toYaml({ router: { headerName: 'X-Rerank-Version', upstreams: { stable: stableUrl, canary: canaryUrl }, ...(mirror ? { mirror: { from: 'stable', to: 'canary', fraction } } : {}) } });
  await write(routerFile, routerYaml(false));

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const router = spawn(
    process.execPath,
    [path.join(root, 'server/cli/main.ts'), 'router', '--config', configFile, '--router-config', routerFile, '--port', String(port), '--host', '127.0.0.1', '--watch', 'poll', '--poll-interval', '100'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  try {
    for (let i = 0; i < 300 && !(await fetch(`${url}/readyz`).then((r) => r.ok, () => false)); i += 1) await sleep(100);
    const body = JSON.stringify({ query: 'what is a reranker?', texts: Array.from({ length: documents }, (_, i) => `document ${i} about rerankers and retrieval`) });
    const post = () =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${url}/rerank`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });
    const block = async () => {
      let next = 0;
      let failures = 0;
      const latencies: number[] = [];
      const started = performance.now();
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (next < requests) {
            next += 1;
            const t0 = performance.now();
            const status = await post().catch(() => 0);
            latencies.push(performance.now() - t0);
            if (status !== 200) failures += 1;
          }
        }),
      );
      return { seconds: (performance.now() - started) / 1000, latencies, failures };
    };
    const mirrorInForce = async () => ((await (await fetch(`${url}/config`)).json()) as { routing?: { mirror?: unknown } }).routing?.mirror !== undefined;
    const metrics = async () => (await fetch(`${url}/metrics`)).text();

    await block(); // warm-up: connections, JIT
    const pooled = { off: { seconds: 0, latencies: [] as number[], failures: 0, requests: 0 }, on: { seconds: 0, latencies: [] as number[], failures: 0, requests: 0 } };
    for (let round = 0; round < rounds; round += 1) {
      for (const mode of ['off', 'on'] as const) {
        await write(routerFile, routerYaml(mode === 'on'));
        for (let i = 0; i < 100 && (await mirrorInForce()) !== (mode === 'on'); i += 1) await sleep(50);
        if ((await mirrorInForce()) !== (mode === 'on')) throw new Error(`router.yaml with mirror ${mode} did not take effect`);
        const result = await block();
        const into = pooled[mode];
        into.seconds += result.seconds;
        into.latencies.push(...result.latencies);
        into.failures += result.failures;
        into.requests += requests;
        console.log(`round ${round + 1} mirror ${mode}: ${fmt(requests / result.seconds, 0)} req/s, p99 ${fmt(percentile(result.latencies, 99), 2)} ms`);
      }
    }
    await sleep(500); // the last copies finish
    const text = await metrics();
    const mirrored = metricSum(text, 'reranker_router_mirrored_requests_total');
    const compared = metricSum(text, 'reranker_router_agreement_comparisons_total');
    const mirrorFailures = metricSum(text, 'reranker_router_mirror_failures_total');
    const overlapMean = metricSum(text, 'reranker_router_agreement_topk_overlap_sum') / metricSum(text, 'reranker_router_agreement_topk_overlap_count');
    const figures = (mode: 'off' | 'on') => {
      const p = pooled[mode];
      return { rps: p.requests / p.seconds, p50: percentile(p.latencies, 50), p99: percentile(p.latencies, 99), failures: p.failures };
    };
    const off = figures('off');
    const on = figures('on');
    console.log('');
    console.log(`${clients} clients, ${documents} documents a request, stand-in pods answering after ${upstreamMs} ms, ${rounds} × ${requests} requests per mode`);
    console.log(`mirror off: ${fmt(off.rps, 0)} req/s, p50 ${fmt(off.p50, 2)} ms, p99 ${fmt(off.p99, 2)} ms`);
    console.log(`mirror ${fraction}: ${fmt(on.rps, 0)} req/s, p50 ${fmt(on.p50, 2)} ms, p99 ${fmt(on.p99, 2)} ms`);
    console.log(`copies sent ${mirrored} (${fmt((100 * mirrored) / pooled.on.requests, 1)} % of the mirror blocks' requests), compared ${compared}, failed ${mirrorFailures}, mean top-10 overlap ${fmt(overlapMean, 3)}`);
    const targets = new Targets();
    const throughputRatio = on.rps / off.rps;
    const p99Ratio = on.p99 / off.p99;
    console.log(`throughput on ÷ off ${fmt(throughputRatio, 3)} ${targets.check('throughput with mirroring ÷ without', throughputRatio, '>=', 0.9)}`);
    console.log(`p99 on ÷ off ${fmt(p99Ratio, 3)} ${targets.check('p99 with mirroring ÷ without', p99Ratio, '<=', 1.25)}`);
    targets.check('failed client requests', off.failures + on.failures, '<=', 0);
    targets.check('copies compared ÷ sent', mirrored > 0 ? compared / mirrored : Number.NaN, '>=', 0.99);
    await mkdir(path.join(root, '.bench'), { recursive: true });
    await writeFile(
      path.join(root, '.bench/router-mirror.json'),
      JSON.stringify({ clients, documents, upstreamMs, rounds, requests, fraction, off, on, mirrored, compared, mirrorFailures, overlapMean, throughputRatio, p99Ratio }, null, 2),
    );
    targets.report();
  } finally {
    agent.destroy();
    router.kill('SIGTERM');
    await once(router, 'exit');
    await worker.terminate();
    await rm(dir, { recursive: true, force: true });
  }
}

if (isMainThread) await main();
else await stubPods(workerData as PodOptions);
