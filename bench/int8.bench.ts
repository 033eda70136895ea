/**
 * int8 against float32, side by side in one run on the same pairs:
 *
 *   npm run bench:int8 [-- --requests 3 --rounds 2 --shape minilm-l6 --no-embeddings]
 *
 * 1. Generates (once) a MiniLM-L6-shaped cross-encoder and its dynamic int8 quantization
 *    (`rerank-server models quantize --embeddings`: the word embeddings int8 too, one scale per row, as the
 *    int8 exports Hugging Face repos ship; `--no-embeddings` keeps them float32, the quantizer's default).
 * 2. Starts two `rerank-server` processes on it, one with `variant: fp32`, one with `variant: int8`, and
 *    sends each the RAG workload (1 query × 100 documents of 20–400 tokens) from one client, in
 *    alternating blocks (fp32, int8, fp32, int8…) so that load from other processes falls on both alike.
 * 3. In this process, times a hand-written length-sorted onnxruntime loop over the same pairs (sorted by
 *    length, batches under the same token budget) with the float32 graph, and with the int8 one.
 * 4. Compares the two servers' raw scores (max |Δlogit|, top-10 agreement per query) and their peak RSS
 *    under the workload: the kernel's high-water mark (VmHWM), reset once the server is ready, read after
 *    the last request; the start-up peak (load and warm-up) is printed beside it.
 * CPU sessions run batches in slices of RERANK_CPU_RUN_TOKENS (server/engine/run-split.ts), the servers and
 * the loop alike; `RERANK_CPU_RUN_TOKENS=off npm run bench:int8` measures whole-batch runs.
 * Prints the figures and PASS/FAIL per target, writes `.bench/int8.json`, exits 1 on a miss. Random
 * weights do not judge quality: `rerank-server models quantize DIR --sample pairs.json` on a real model does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { dump as toYaml } from 'js-yaml';
import { ServingConfigSchema } from '../server/config/schema.ts';
import { OnnxSession, flattenBatch } from '../server/engine/onnx-model.ts';
import { PairTokenizer, type EncodedPair } from '../server/engine/pair-tokenizer.ts';
import { ensureModel, type ModelShape } from '../server/modelgen/index.ts';
import { cpuRunTokensSetting } from '../server/engine/run-split.ts';
import { agreement } from '../server/quantize/agreement.ts';
import { quantizeModelDir } from '../server/quantize/quantize-model.ts';
import { driveLoad, latencySummary } from './load.ts';
import { freePort } from './process.ts';
import { fmt } from './stats.ts';
import { Targets } from './targets.ts';
import { buildWorkload, type RerankWorkloadRequest } from './workload.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workDir = path.join(root, '.bench');

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    shape: { type: 'string', default: 'minilm-l6' },
    requests: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '2' },
    seed: { type: 'string', default: '11' },
    embeddings: { type: 'boolean', default: true },
  },
});
const shape = args.shape as ModelShape;
const requests = Number(args.requests);
const rounds = Number(args.rounds);

const serving = ServingConfigSchema.parse({ maxLength: 512, maxBatchTokens: 16384, maxBatchSize: 32, warmup: 'full', logLevel: 'warn' });

interface Server {
  name: 'fp32' | 'int8';
  url: string;
  child: ChildProcess;
  /** Resident memory once ready, and its peak until then (load and warm-up). */
  readyRssMb: number;
  startupPeakRssMb: number;
}

/** VmRSS and VmHWM (its peak since start, or since the last reset) of a process, in MB. */
async function memoryMb(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** Starts the peak over from the present resident size (Linux: writing 5 to clear_refs resets VmHWM). */
async function resetPeak(pid: number): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5');
}

/** CPU seconds a process has used (user + system), from /proc/<pid>/stat; clock ticks are 100 per second on Linux. */
async function cpuSeconds(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function waitReady(url: string, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`server at ${url} not ready after ${timeoutMs} ms`);
}

async function startServer(name: Server['name'], modelDir: string): Promise<Server> {
  const configFile = path.join(workDir, `int8-bench-${name}.yaml`);
  await writeFile(configFile, toYaml({ defaultVersion: 'bench', versions: { bench: { model: modelDir, variant: name } }, serving }));
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(root, 'server/cli/main.ts'), 'start', '--config', configFile, '--port', String(port), '--host', '127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url);
  const memory = await memoryMb(child.pid as number);
  await resetPeak(child.pid as number);
  return { name, url, child, readyRssMb: memory.rss, startupPeakRssMb: memory.peak };
}

/** A hand-written length-sorted loop: pairs sorted by length, consecutive ones batched under the server's limits. */
async function sortedLoop(modelPath: string, pairs: readonly EncodedPair[], padId: number): Promise<{ pairsPerSecond: number; pairsPerCpuSecond: number; batches: number }> {
  const session = await OnnxSession.load({ modelPath, device: 'cpu', padId });
  const sorted = [...pairs].sort((a, b) => a.length - b.length);
  const batches: EncodedPair[][] = [];
  let current: EncodedPair[] = [];
  for (const pair of sorted) {
    const width = Math.max(pair.length, ...current.map((p) => p.length));
    if (current.length > 0 && (current.length >= serving.maxBatchSize || (current.length + 1) * width > serving.maxBatchTokens)) {
      batches.push(current);
      current = [];
    }
    current.push(pair);
  }
  if (current.length > 0) batches.push(current);
  const flats = batches.map((b) => flattenBatch(b, session.description.takesTypeIds));
  await session.runFlat(flats[flats.length - 1]!); // warm-up on the widest batch, untimed
  const started = performance.now();
  const cpu = process.cpuUsage();
  for (const flat of flats) await session.runFlat(flat);
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  await session.release();
  return { pairsPerSecond: pairs.length / seconds, pairsPerCpuSecond: pairs.length / ((used.user + used.system) / 1e6), batches: batches.length };
}

async function rawScores(server: Server, workload: readonly RerankWorkloadRequest[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const r of workload) {
    const response = await fetch(`${server.url}/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: r.query, texts: r.documents, raw_scores: true }),
    });
    if (!response.ok) throw new Error(`${server.name}: /rerank answered ${response.status}: ${await response.text()}`);
    const results = (await response.json()) as Array<{ index: number; score: number }>;
    const logits = new Float32Array(r.documents.length);
    for (const { index, score } of results) logits[index] = score;
    out.push(logits);
  }
  return out;
}

async function main(): Promise<void> {
  const targets = new Targets();
  await mkdir(workDir, { recursive: true });
  const modelDir = path.join(workDir, 'models', shape);
  await ensureModel({ shape, outDir: modelDir });
  const fp32Path = path.join(modelDir, 'model.onnx');
  const int8Path = path.join(modelDir, 'model_int8.onnx');
  // Quantized afresh each run, so the options of this run are the ones measured.
  const quantized = await quantizeModelDir({ dir: modelDir, compare: false, embeddings: args.embeddings });
  console.log(`model: ${shape}; fp32 ${fmt((await stat(fp32Path)).size / 1e6)} MB, int8 ${fmt(quantized.outputBytes / 1e6)} MB (${quantized.summary.quantized.length} layers int8${args.embeddings ? ', word embeddings int8' : ''})`);

  const tokenizer = PairTokenizer.load({ tokenizerPath: path.join(modelDir, 'tokenizer.json') });
  const countTokens = async (text: string) => (await tokenizer.encodePair('', text, { maxLength: 4096 })).length - 3;
  const workload = await buildWorkload({ requests, seed: Number(args.seed), minDocuments: 100, maxDocuments: 100, minDocTokens: 20, maxDocTokens: 400, countTokens });
  const pairCount = workload.reduce((n, r) => n + r.documents.length, 0);
  const bodies = workload.map((r) => ({ query: r.query, texts: r.documents }));
  const pairsOf = (body: unknown) => (body as { texts: string[] }).texts.length;

  const servers: Server[] = [];
  try {
    for (const name of ['fp32', 'int8'] as const) servers.push(await startServer(name, modelDir));
    const [fp32, int8] = servers as [Server, Server];
    const runTokens = cpuRunTokensSetting();
    console.log(
      `servers ready (full-budget warm-up done; CPU runs of ${Number.isFinite(runTokens) ? `${runTokens} tokens` : 'whole batches'}): ` +
        `RSS fp32 ${fmt(fp32.readyRssMb)} MB (start-up peak ${fmt(fp32.startupPeakRssMb)}), int8 ${fmt(int8.readyRssMb)} MB (start-up peak ${fmt(int8.startupPeakRssMb)})`,
    );

    const blocks: Record<Server['name'], Array<{ pairsPerSecond: number; pairsPerCpuSecond: number; p50Ms: number }>> = { fp32: [], int8: [] };
    for (let round = 1; round <= rounds; round += 1) {
      for (const server of servers) {
        const pid = server.child.pid as number;
        const cpuBefore = await cpuSeconds(pid);
        const load = await driveLoad({ url: `${server.url}/rerank`, bodies, concurrency: 1, pairsOf });
        const cpuUsed = (await cpuSeconds(pid)) - cpuBefore;
        if (load.failures > 0) throw new Error(`${server.name}: ${load.failures} requests failed (${JSON.stringify(load.statuses)})`);
        const block = { pairsPerSecond: load.pairs / load.seconds, pairsPerCpuSecond: load.pairs / cpuUsed, p50Ms: latencySummary(load).p50 };
        blocks[server.name].push(block);
        console.log(
          `round ${round} ${server.name} server: ${fmt(block.pairsPerSecond)} pairs/s, p50 ${fmt(block.p50Ms / 1000, 2)} s; ` +
            `${fmt(block.pairsPerCpuSecond, 2)} pairs per CPU-second (${fmt(cpuUsed / load.seconds, 2)} cores busy)`,
        );
      }
    }

    const [reference, candidate] = await Promise.all([rawScores(fp32, workload), rawScores(int8, workload)]);
    const accuracy = agreement(reference.map((r, i) => ({ reference: r, candidate: candidate[i] as Float32Array })));
    // The workload is over for the servers: their peaks since ready.
    const peakFp32 = (await memoryMb(fp32.child.pid as number)).peak;
    const peakInt8 = (await memoryMb(int8.child.pid as number)).peak;

    const pairs = (await Promise.all(workload.map((r) => tokenizer.encodePairs(r.query, r.documents, { maxLength: serving.maxLength, withTypeIds: true })))).flat();
    const loopFp32 = await sortedLoop(fp32Path, pairs, tokenizer.padId);
    const loopInt8 = await sortedLoop(int8Path, pairs, tokenizer.padId);
    console.log(
      `length-sorted onnxruntime loop: fp32 ${fmt(loopFp32.pairsPerSecond)} pairs/s (${fmt(loopFp32.pairsPerCpuSecond, 2)} per CPU-second), ` +
        `int8 ${fmt(loopInt8.pairsPerSecond)} pairs/s (${fmt(loopInt8.pairsPerCpuSecond, 2)} per CPU-second), ${loopFp32.batches} batches`,
    );

    const best = (name: Server['name']) => Math.max(...blocks[name].map((b) => b.pairsPerSecond));
    const bestCpu = (name: Server['name']) => Math.max(...blocks[name].map((b) => b.pairsPerCpuSecond));
    const ratioToLoop = best('int8') / loopFp32.pairsPerSecond;
    const serverRatio = best('int8') / best('fp32');
    const rssRatio = peakInt8 / peakFp32;
    console.log('');
    console.log(`RAG workload: ${requests} requests × 100 documents (${pairCount} pairs), 1 client, ${rounds} alternating rounds`);
    console.log(`best block: server fp32 ${fmt(best('fp32'))} pairs/s, server int8 ${fmt(best('int8'))} pairs/s: int8 ÷ fp32 server ${fmt(serverRatio, 2)}`);
    console.log(`int8 server ÷ fp32 length-sorted loop: ${fmt(ratioToLoop, 2)} ${targets.check('int8 server ÷ fp32 length-sorted loop (RAG)', ratioToLoop, '>=', 2.0)}`);
    // Per CPU-second, the same ratios hardly move when other processes take CPU time: a check on the wall figures.
    console.log(
      `per CPU-second (less sensitive to other load): int8 ÷ fp32 server ${fmt(bestCpu('int8') / bestCpu('fp32'), 2)}, ` +
        `int8 server ÷ fp32 loop ${fmt(bestCpu('int8') / loopFp32.pairsPerCpuSecond, 2)}`,
    );
    console.log(
      `int8 against fp32 on the same pairs: max |Δlogit| ${fmt(accuracy.maxAbsDelta, 4)}, mean ${fmt(accuracy.meanAbsDelta, 4)} ` +
        `(fp32 logits std ${fmt(accuracy.referenceStd, 4)}), top-10 agreement ${fmt(accuracy.topKAgreement * 100)} % (worst query ${fmt(accuracy.minTopKAgreement * 100)} %)`,
    );
    console.log(
      `peak RSS under the workload: fp32 ${fmt(peakFp32)} MB, int8 ${fmt(peakInt8)} MB: ${fmt(rssRatio, 2)} ${targets.check('RSS int8 ÷ fp32 server', rssRatio, '<=', 0.6)} ` +
        `(start-up peaks ${fmt(fp32.startupPeakRssMb)} and ${fmt(int8.startupPeakRssMb)} MB: ${fmt(int8.startupPeakRssMb / fp32.startupPeakRssMb, 2)})`,
    );
    await writeFile(
      path.join(workDir, 'int8.json'),
      JSON.stringify({ shape, requests, pairCount, rounds, embeddings: args.embeddings, blocks, loopFp32, loopInt8, accuracy, runTokens: Number.isFinite(runTokens) ? runTokens : 'off', rss: { fp32: peakFp32, int8: peakInt8, startupFp32: fp32.startupPeakRssMb, startupInt8: int8.startupPeakRssMb }, targets: targets.results }, null, 2),
    );
    targets.report();
  } finally {
    for (const server of servers) {
      server.child.kill('SIGTERM');
      await once(server.child, 'exit');
    }
  }
}

await main();
