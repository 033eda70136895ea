/**
 * Huge documents: a few clients sending one 8 MB document each, while others send ordinary requests.
 *
 *   node bench/huge-documents.bench.ts [--before DIR] [--huge 4] [--mb 8] [--small-clients 4]
 *
 * A MiniLM-L6-shaped generated cross-encoder (maxLength 512) is served by `rerank-server` in a child
 * process. Each scenario measures, on a fresh server: the latency of ordinary requests (1 query × 10
 * documents of ~60 words) from 4 clients alone, then while `--huge` clients each send one request with a
 * `--mb` MB document; the huge requests' latency; and the server's peak RSS over the scenario.
 * Scenarios, side by side in this run:
 * - `token cut`: this checkout with serving.maxDocumentBytes raised over the document size, so only the
 *   cut to what maxLength keeps bounds the work;
 * - `default`: this checkout as shipped (maxDocumentBytes 256 KiB cuts the bytes first);
 * - `before` (with `--before DIR`, a checkout from before the cut, e.g. `git worktree add DIR 8b318b1~1`
 *   with its node_modules linked): the same load on that server.
 * Prints a table and targets, writes `.bench/huge-documents.json`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { dump as toYaml } from 'js-yaml';
import { ensureModel } from '../server/modelgen/index.ts';
import { freePort, rssMb } from './process.ts';
import { fmt, percentile } from './stats.ts';
import { Targets } from './targets.ts';
import { mulberry32 } from './workload.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workDir = path.join(root, '.bench');

const { values: args } = parseArgs({
  options: {
    before: { type: 'string' },
    huge: { type: 'string', default: '4' },
    mb: { type: 'string', default: '8' },
    'small-clients': { type: 'string', default: '4' },
  },
});
const hugeClients = Number(args.huge);
const hugeBytes = Math.round(Number(args.mb) * 1_000_000);
const smallClients = Number(args['small-clients']);

const WORDS = 'the river city history music science energy light world people school market health policy water retrieval passage model query document score'.split(' ');

function prose(seed: number, chars: number): string {
  const random = mulberry32(seed);
  const parts: string[] = [];
  let length = 0;
  while (length < chars) {
    const word = WORDS[Math.floor(random() * WORDS.length)] as string;
    const piece = random() < 0.08 ? `${word}.\n` : `${word} `;
    parts.push(piece);
    length += piece.length;
  }
  return parts.join('').slice(0, chars);
}

interface Scenario {
  name: string;
  serverRoot: string;
  serving: Record<string, unknown>;
}

interface ScenarioResult {
  name: string;
  smallAloneP50Ms: number;
  smallAloneP99Ms: number;
  smallDuringP50Ms: number;
  smallDuringP99Ms: number;
  smallDuringMaxMs: number;
  smallDuringRefused: number;
  hugeMs: number[];
  hugeStatuses: number[];
  idleRssMb: number;
  peakRssMb: number;
}

async function waitReady(url: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`server at ${url} not ready after ${timeoutMs} ms`);
}

async function post(url: string, body: string): Promise<{ ms: number; status: number }> {
  const started = performance.now();
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await response.arrayBuffer();
  return { ms: performance.now() - started, status: response.status };
}

/** Small requests from `clients` clients until `until` resolves: latencies of the answered ones (ms), and how many were refused. */
async function smallLoad(url: string, bodies: string[], clients: number, until: Promise<unknown>): Promise<{ latencies: number[]; refused: number }> {
  let done = false;
  void until.then(() => (done = true));
  const latencies: number[] = [];
  let refused = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (!done) {
        const { ms, status } = await post(url, bodies[next++ % bodies.length] as string);
        if (status === 200) latencies.push(ms);
        else refused += 1;
      }
    }),
  );
  return { latencies, refused };
}

async function runScenario(scenario: Scenario, modelDir: string, smallBodies: string[], hugeBodies: string[]): Promise<ScenarioResult> {
  const configFile = path.join(workDir, `huge-${scenario.name.replace(/\W+/gu, '-')}.yaml`);
  await writeFile(configFile, toYaml({ defaultVersion: 'bench', versions: { bench: { model: modelDir } }, serving: scenario.serving }));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server: ChildProcess = spawn(
    process.execPath,
    [path.join(scenario.serverRoot, 'server/cli/main.ts'), 'start', '--config', configFile, '--port', String(port), '--host', '127.0.0.1'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const pid = server.pid as number;
  try {
    await waitReady(url);
    const rerank = `${url}/rerank`;
    // Warm both paths once, then the small requests alone.
    await smallLoad(rerank, smallBodies, smallClients, new Promise((resolve) => setTimeout(resolve, 2000)));
    const idleRssMb = await rssMb(pid);
    const { latencies: alone } = await smallLoad(rerank, smallBodies, smallClients, new Promise((resolve) => setTimeout(resolve, 5000)));
    let peakRssMb = idleRssMb;
    const sampler = setInterval(() => void rssMb(pid).then((mb) => (peakRssMb = Math.max(peakRssMb, mb))), 50);
    const huge = Promise.all(hugeBodies.map((body) => post(rerank, body)));
    // Small requests run from the huge ones' start until they are all answered, and at least 2 s.
    const during = smallLoad(rerank, smallBodies, smallClients, Promise.all([huge, new Promise((resolve) => setTimeout(resolve, 2000))]));
    const [hugeResults, { latencies: duringLatencies, refused }] = await Promise.all([huge, during]);
    clearInterval(sampler);
    return {
      name: scenario.name,
      smallAloneP50Ms: percentile(alone, 50),
      smallAloneP99Ms: percentile(alone, 99),
      smallDuringP50Ms: percentile(duringLatencies, 50),
      smallDuringP99Ms: percentile(duringLatencies, 99),
      smallDuringMaxMs: Math.max(...duringLatencies),
      smallDuringRefused: refused,
      hugeMs: hugeResults.map((r) => r.ms),
      hugeStatuses: hugeResults.map((r) => r.status),
      idleRssMb,
      peakRssMb,
    };
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
}

async function main(): Promise<void> {
  await mkdir(workDir, { recursive: true });
  const modelDir = path.join(workDir, 'models', 'minilm-l6');
  await ensureModel({ shape: 'minilm-l6', outDir: modelDir });
  const random = mulberry32(11);
  const smallBodies = Array.from({ length: 32 }, (_, i) =>
    JSON.stringify({ query: 'history of the river city market', texts: Array.from({ length: 10 }, (_, j) => prose(i * 100 + j, 300 + Math.floor(random() * 200))) }),
  );
  const hugeBodies = Array.from({ length: hugeClients }, (_, i) => JSON.stringify({ query: 'energy policy and the market', texts: [prose(1000 + i, hugeBytes)] }));
  const base = { maxLength: 512, logLevel: 'warn', maxBodyBytes: hugeBytes + 1024 * 1024 };
  const scenarios: Scenario[] = [
    { name: 'token cut', serverRoot: root, serving: { ...base, maxDocumentBytes: 2 * hugeBytes } },
    { name: 'default', serverRoot: root, serving: base },
  ];
  if (args.before !== undefined) {
    const before = path.resolve(args.before);
    if (!existsSync(path.join(before, 'server/cli/main.ts'))) throw new Error(`--before ${before}: no server/cli/main.ts there`);
    scenarios.unshift({ name: 'before', serverRoot: before, serving: base });
  }

  const results: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    console.log(`scenario ${scenario.name}: ${hugeClients} × ${fmt(hugeBytes / 1e6)} MB documents, ${smallClients} clients of small requests`);
    const result = await runScenario(scenario, modelDir, smallBodies, hugeBodies);
    results.push(result);
    console.log(
      `  huge requests ${result.hugeMs.map((ms) => `${fmt(ms / 1000, 2)} s`).join(', ')} (status ${[...new Set(result.hugeStatuses)].join(',')}); ` +
        `small p50/p99 alone ${fmt(result.smallAloneP50Ms)}/${fmt(result.smallAloneP99Ms)} ms, during ${fmt(result.smallDuringP50Ms)}/${fmt(result.smallDuringP99Ms)} ms (max ${fmt(result.smallDuringMaxMs)}, ${result.smallDuringRefused} refused); ` +
        `RSS idle ${fmt(result.idleRssMb)} MB, peak ${fmt(result.peakRssMb)} MB`,
    );
  }

  const targets = new Targets();
  for (const result of results.filter((r) => r.name !== 'before')) {
    // A huge document is one pair of maxLength tokens once cut: it should cost about what an ordinary request does.
    const slowest = Math.max(...result.hugeMs);
    const hugeLimit = Math.max(2000, 2 * result.smallAloneP99Ms);
    console.log(`${result.name}: slowest huge request ${fmt(slowest)} ms ${targets.check(`${result.name}: slowest huge request`, slowest, '<=', Math.round(hugeLimit), ' ms')}`);
    const p99 = result.smallDuringP99Ms;
    console.log(`${result.name}: small p99 during ${fmt(p99)} ms ${targets.check(`${result.name}: small p99 during the huge requests`, p99, '<=', Math.round(Math.max(3 * result.smallAloneP99Ms, result.smallAloneP99Ms + 500)), ' ms')}`);
    const growth = result.peakRssMb - result.idleRssMb;
    // The bodies themselves are held while they are read and parsed (raw bytes and the parsed string): a few times their size.
    const bodiesMb = (hugeBytes / 1e6) * hugeClients;
    console.log(`${result.name}: RSS growth ${fmt(growth)} MB ${targets.check(`${result.name}: RSS growth over idle`, growth, '<=', 10 * bodiesMb, ' MB')}`);
    // 429: refused by the queue's expected wait, which is the overload policy's answer, not a failure here.
    const answered = result.hugeStatuses.filter((status) => status === 200 || status === 429).length;
    targets.check(`${result.name}: huge requests answered 200 (or 429 by expected wait)`, answered, '>=', hugeClients);
    targets.check(`${result.name}: small requests refused during the huge ones`, result.smallDuringRefused, '<=', 0);
  }
  const before = results.find((r) => r.name === 'before');
  if (before) {
    for (const result of results.filter((r) => r !== before)) {
      console.log(
        `${result.name} vs before: slowest huge request ×${fmt(Math.max(...result.hugeMs) / Math.max(...before.hugeMs), 3)}, ` +
          `small p99 during ×${fmt(result.smallDuringP99Ms / before.smallDuringP99Ms, 3)}, ` +
          `RSS growth ${fmt(result.peakRssMb - result.idleRssMb)} MB vs ${fmt(before.peakRssMb - before.idleRssMb)} MB`,
      );
    }
  }
  await writeFile(path.join(workDir, 'huge-documents.json'), `${JSON.stringify({ hugeClients, hugeBytes, smallClients, results }, null, 2)}\n`);
  targets.report();
}

await main();
