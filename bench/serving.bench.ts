/**
 * Serving benchmark: the server against raw onnxruntime on the same pairs, batched the same way.
 *
 *   npm run bench [-- --requests 16 --runs 3 --clients 16 --shape minilm-l6]
 *
 * 1. Generates (once) a MiniLM-L6-shaped cross-encoder: the cost of ms-marco-MiniLM-L-6-v2, random weights.
 * 2. Starts `rerank-server` on it in a child process and drives it with `clients` concurrent clients, each
 *    sending 1 query × 20–50 documents of 20–400 tokens (TEI shape), `runs` times over the same workload.
 *    Each run records pairs/s, latency p50/p99, padding waste (from the server's own metrics) and the
 *    server's peak RSS (sampled from /proc).
 * 3. In this process, tokenizes the same pairs, packs them with the server's packer and limits, and times
 *    raw `session.run` on those batches: the ceiling the server is measured against.
 * Prints a table and writes `.bench/serving.json`.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { dump as toYaml } from 'js-yaml';
import { ServingConfigSchema } from '../server/config/schema.ts';
import { DEFAULT_MAX_PADDING_RATIO, packBatch, type PendingPair } from '../server/engine/batch-packer.ts';
import { OnnxSession, flattenBatch } from '../server/engine/onnx-model.ts';
import { PairTokenizer, type EncodedPair } from '../server/engine/pair-tokenizer.ts';
import { ensureModel, type ModelShape } from '../server/modelgen/index.ts';
import { driveLoad, latencySummary } from './load.ts';
import { freePort, rssMb } from './process.ts';
import { fmt, metricSum } from './stats.ts';
import { Targets } from './targets.ts';
import { buildWorkload, type RerankWorkloadRequest } from './workload.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workDir = path.join(root, '.bench');

const { values: args } = parseArgs({
  options: {
    shape: { type: 'string', default: 'minilm-l6' },
    requests: { type: 'string', default: '16' },
    runs: { type: 'string', default: '3' },
    clients: { type: 'string', default: '16' },
    seed: { type: 'string', default: '7' },
  },
});
const shape = args.shape as ModelShape;
const requestsPerRun = Number(args.requests);
const runs = Number(args.runs);
const clients = Number(args.clients);

// `warmup: full` runs one full-budget batch at start, so ORT's memory arena is at its working size before
// the first measured run and RSS across runs shows leaks, not the arena growing.
const serving = ServingConfigSchema.parse({ maxLength: 512, maxBatchTokens: 16384, maxBatchSize: 32, warmup: 'full', logLevel: 'warn' });


const rssKb = async (pid: number) => (await rssMb(pid)) * 1024;

async function waitReady(url: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`server at ${url} not ready after ${timeoutMs} ms`);
}

async function rawBaseline(pairs: EncodedPair[], modelPath: string, padId: number) {
  const session = await OnnxSession.load({ modelPath, device: 'cpu', padId });
  const pending: Array<PendingPair & { pair: EncodedPair }> = pairs.map((pair, order) => ({ length: pair.length, order, pair }));
  const batches: EncodedPair[][] = [];
  const limits = { maxBatchTokens: serving.maxBatchTokens, maxBatchSize: serving.maxBatchSize, maxPaddingRatio: DEFAULT_MAX_PADDING_RATIO };
  while (pending.length > 0) {
    const chosen = new Set(packBatch(pending, limits));
    batches.push(pending.filter((_, i) => chosen.has(i)).map((p) => p.pair));
    for (let i = pending.length - 1; i >= 0; i -= 1) if (chosen.has(i)) pending.splice(i, 1);
  }
  const flats = batches.map((batch) => flattenBatch(batch, session.description.takesTypeIds));
  await session.runFlat(flats[0]!); // warm-up, untimed
  let slots = 0;
  let tokens = 0;
  const started = performance.now();
  for (const flat of flats) {
    await session.runFlat(flat);
    slots += flat.count * flat.width;
    for (const length of flat.lengths) tokens += length;
  }
  const seconds = (performance.now() - started) / 1000;
  await session.release();
  return { pairsPerSecond: pairs.length / seconds, batches: batches.length, paddingWaste: 1 - tokens / slots, seconds };
}

async function main(): Promise<void> {
  const targets = new Targets();
  await mkdir(workDir, { recursive: true });
  const modelDir = path.join(workDir, 'models', shape);
  const { generated } = await ensureModel({ shape, outDir: modelDir });
  console.log(`model: ${shape} at ${path.relative(root, modelDir)}${generated ? ' (generated)' : ''}`);

  const tokenizer = PairTokenizer.load({ tokenizerPath: path.join(modelDir, 'tokenizer.json') });
  // An empty query encodes as [CLS] [SEP] doc [SEP]: three special tokens around the document.
  const countTokens = async (text: string) => (await tokenizer.encodePair('', text, { maxLength: 4096 })).length - 3;
  const workload: RerankWorkloadRequest[] = await buildWorkload({ requests: requestsPerRun, seed: Number(args.seed), countTokens });
  const pairsPerRun = workload.reduce((n, r) => n + r.documents.length, 0);

  const configFile = path.join(workDir, 'bench-config.yaml');
  await writeFile(configFile, toYaml({ defaultVersion: 'bench', versions: { bench: { model: modelDir } }, serving }));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = spawn(process.execPath, [path.join(root, 'server/cli/main.ts'), 'start', '--config', configFile, '--port', String(port), '--host', '127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const pid = server.pid!;
  try {
    await waitReady(url);
    const bodies = workload.map((r) => ({ query: r.query, texts: r.documents }));
    const pairsOf = (body: unknown) => (body as { texts: string[] }).texts.length;
    console.log(`server ready (full-budget warm-up done): RSS ${fmt((await rssKb(pid)) / 1024)} MB`);
    const results = [];
    for (let run = 1; run <= runs; run += 1) {
      const before = await fetch(`${url}/metrics`).then((r) => r.text());
      let peakKb = await rssKb(pid);
      const sampler = setInterval(() => void rssKb(pid).then((kb) => (peakKb = Math.max(peakKb, kb))), 50);
      const load = await driveLoad({ url: `${url}/rerank`, bodies, concurrency: clients, pairsOf });
      clearInterval(sampler);
      const after = await fetch(`${url}/metrics`).then((r) => r.text());
      const slots = metricSum(after, 'reranker_batch_tokens_sum') - metricSum(before, 'reranker_batch_tokens_sum');
      const tokens = metricSum(after, 'reranker_tokens_total') - metricSum(before, 'reranker_tokens_total');
      const { p50, p99 } = latencySummary(load);
      const result = {
        run,
        pairsPerSecond: load.pairs / load.seconds,
        p50Ms: p50,
        p99Ms: p99,
        failures: load.failures,
        paddingWaste: slots > 0 ? 1 - tokens / slots : Number.NaN,
        peakRssMb: peakKb / 1024,
        seconds: load.seconds,
      };
      results.push(result);
      console.log(
        `server run ${run}: ${fmt(result.pairsPerSecond)} pairs/s, p50 ${fmt(p50 / 1000, 2)} s, p99 ${fmt(p99 / 1000, 2)} s, ` +
          `padding ${fmt(result.paddingWaste * 100)} %, peak RSS ${fmt(result.peakRssMb)} MB, failures ${load.failures}`,
      );
    }

    const pairs = (await Promise.all(workload.map((r) => tokenizer.encodePairs(r.query, r.documents, { maxLength: serving.maxLength, withTypeIds: true })))).flat();
    const raw = await rawBaseline(pairs, path.join(modelDir, 'model.onnx'), tokenizer.padId);
    console.log(`raw session.run: ${fmt(raw.pairsPerSecond)} pairs/s over ${raw.batches} batches, padding ${fmt(raw.paddingWaste * 100)} %`);

    const best = Math.max(...results.map((r) => r.pairsPerSecond));
    const rss = results.map((r) => r.peakRssMb);
    const rssDrift = (Math.max(...rss) - Math.min(...rss)) / Math.min(...rss);
    const summary = {
      shape,
      clients,
      requestsPerRun,
      pairsPerRun,
      runs: results,
      raw,
      ratio: results.map((r) => r.pairsPerSecond / raw.pairsPerSecond),
      bestRatio: best / raw.pairsPerSecond,
      rssDrift,
    };
    console.log('');
    console.log(`pairs per run: ${pairsPerRun} (${requestsPerRun} requests, ${clients} clients)`);
    const worstRatio = Math.min(...summary.ratio);
    const worstPadding = Math.max(...results.map((r) => r.paddingWaste * 100));
    console.log(`throughput ratio server ÷ raw: ${summary.ratio.map((r) => fmt(r, 3)).join(', ')} ${targets.check('throughput ratio server ÷ raw (worst run)', worstRatio, '>=', 0.95)}`);
    console.log(`padding waste: ${results.map((r) => `${fmt(r.paddingWaste * 100)} %`).join(', ')} ${targets.check('padding waste (worst run)', worstPadding, '<=', 10, ' %')}`);
    console.log(`peak RSS: ${rss.map((r) => `${fmt(r)} MB`).join(', ')}; spread ${fmt(rssDrift * 100)} % ${targets.check('peak RSS spread between runs', rssDrift * 100, '<=', 10, ' %')}`);
    await writeFile(path.join(workDir, 'serving.json'), JSON.stringify({ ...summary, targets: targets.results }, null, 2));
    targets.report();
  } finally {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
}

await main();
