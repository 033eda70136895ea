/**
 * Serving benchmark: who wins, side by side in one run on the same pairs.
 *
 *   npm run bench [-- --shape minilm-l6 --rag-requests 4 --short-requests 32 --clients 1,4 --rounds 3 --repeats 2
 *                    --max-other-cpus 0.25 --waves 2 --no-embeddings --peak-gflops N --rss-shape bert-base]
 *   npm run bench -- --quick          (smoke run: tiny model, fewer requests, no repeats)
 *
 * 1. Generates (once) a cross-encoder of the shape asked (default MiniLM-L6: the cost of
 *    ms-marco-MiniLM-L-6-v2, random weights) into .bench/compare/<shape>, and quantizes it afresh with
 *    `rerank-server models quantize --embeddings` (model_int8.onnx; word embeddings int8 too, as bench:int8
 *    and the int8 exports Hugging Face repos ship; `--no-embeddings` keeps them float32).
 * 2. Contenders, all on those two files: `rerank-server` in a child process with `variant: fp32` and
 *    `variant: int8` (HTTP on loopback); a hand-written length-sorted onnxruntime loop with each graph,
 *    one `session.run` per batch, and the FP32 loop again with the server's own run slicing, for the
 *    server's overhead over the same kernels (sorted-loop-contender.ts); transformers.js with dtype fp32 and q8 (transformers-contender.ts: its
 *    model_quantized.onnx is our model_int8.onnx).
 * 3. Workloads: RAG (1 query × 100 documents of 20–400 tokens) and short (1 query × 16 documents of 10–60
 *    tokens), each with 1 and 4 concurrent clients. Per workload and client count every contender runs one
 *    block over the same requests in each of --rounds rounds (default 3), in turn, the order rotating from
 *    round to round; a ratio between two contenders is the median over the rounds of the ratio within a
 *    round (roundRatio). A block during which other processes used more than
 *    --max-other-cpus of CPU time (/proc/stat less this process tree) is run again, up to --repeats times,
 *    and the quietest attempt kept (blocks.ts).
 * 4. First-come against mixed order with four concurrent RAG requests: `bench/overload.bench.ts --only
 *    orders` in a child process, on the same shape, as one block.
 * 5. Memory on the size of model rerankers are: the FP32 and the int8 server on `--rss-shape` (default
 *    BERT-base, generated and quantized like the first), each under one RAG request, for the RSS target
 *    (see rssOnShape: on MiniLM-L6 the runtime under both servers is most of their memory).
 * Prints per block pairs/s, p50/p99 per request, achieved GFLOP/s (flops.ts, from the model's shape and
 * each pair's tokens) and its share of this CPU's nominal FP32 peak (cpu-peak.ts), padding, others' CPU
 * load and the servers' peak RSS; then how far each contender's logits are from the FP32 server's, and
 * PASS/FAIL per target. Writes `.bench/serving.json`; exits 1 when a target is missed.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ServingConfigSchema } from '../server/config/schema.ts';
import { PairTokenizer } from '../server/engine/pair-tokenizer.ts';
import { ensureModel, MODEL_SHAPES, type ModelShape } from '../server/modelgen/index.ts';
import { agreement, type Agreement } from '../server/quantize/agreement.ts';
import { quantizeModelDir } from '../server/quantize/quantize-model.ts';
import { describeAttempts, measureBlock, type Block, type BlockPolicy } from './blocks.ts';
import { drive, latencyPercentiles, type Contender } from './contender.ts';
import { cpuPeak } from './cpu-peak.ts';
import { encoderFlops, readEncoderShape } from './flops.ts';
import { withPeakRss } from './process.ts';
import { ServerContender } from './server-contender.ts';
import { SortedLoopContender } from './sorted-loop-contender.ts';
import { wholeNumber } from './options.ts';
import { fmt, median } from './stats.ts';
import { Targets } from './targets.ts';
import { buildTransformersLayout, TransformersContender } from './transformers-contender.ts';
import { buildWorkload, type RerankWorkloadRequest } from './workload.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workDir = path.join(root, '.bench');

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    quick: { type: 'boolean', default: false },
    shape: { type: 'string' },
    'rag-requests': { type: 'string' },
    'short-requests': { type: 'string' },
    clients: { type: 'string', default: '1,4' },
    repeats: { type: 'string' },
    rounds: { type: 'string' },
    'max-other-cpus': { type: 'string', default: '0.25' },
    waves: { type: 'string' },
    embeddings: { type: 'boolean', default: true },
    'peak-gflops': { type: 'string' },
    'rss-shape': { type: 'string' },
    seed: { type: 'string', default: '7' },
  },
});
const quick = args.quick;
const shape = (args.shape ?? (quick ? 'tiny' : 'minilm-l6')) as ModelShape;
if (!Object.hasOwn(MODEL_SHAPES, shape)) throw new Error(`--shape: one of ${Object.keys(MODEL_SHAPES).join(', ')}, not ${shape}`);
const ragRequests = wholeNumber('rag-requests', args['rag-requests'] ?? '4');
const shortRequests = wholeNumber('short-requests', args['short-requests'] ?? (quick ? '8' : '32'));
const rssShape = (args['rss-shape'] ?? (quick ? shape : 'bert-base')) as ModelShape;
if (!Object.hasOwn(MODEL_SHAPES, rssShape)) throw new Error(`--rss-shape: one of ${Object.keys(MODEL_SHAPES).join(', ')}, not ${rssShape}`);
const clientCounts = args.clients.split(',').map((c) => wholeNumber('clients', c));
const policy: BlockPolicy = { maxOtherCpus: Number(args['max-other-cpus']), repeats: wholeNumber('repeats', args.repeats ?? (quick ? '0' : '2'), 0) };
const rounds = wholeNumber('rounds', args.rounds ?? (quick ? '1' : '3'));
const waves = wholeNumber('waves', args.waves ?? (quick ? '1' : '2'));
const seed = Number(args.seed);

// The server's limits, which the loop and transformers.js batch under too. `warmup: full` runs one
// full-budget batch at start, so ORT's memory arena is at its working size before the first block.
// maxQueueWaitMs 0: every request of a block is admitted however long the queue (bench:overload measures refusals).
const serving = ServingConfigSchema.parse({ maxLength: 512, maxBatchTokens: 16384, maxBatchSize: 32, maxQueueWaitMs: 0, warmup: 'full', logLevel: 'warn' });
const limits = { maxLength: serving.maxLength, maxBatchTokens: serving.maxBatchTokens, maxBatchSize: serving.maxBatchSize };

interface Workload {
  name: 'RAG' | 'short';
  description: string;
  requests: RerankWorkloadRequest[];
  /** Floating-point work of all its pairs (actual tokens). */
  flops: number;
  pairs: number;
  meanTokens: number;
}

interface BlockFigures {
  pairsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  latenciesMs: number[];
  gflops: number;
  peakShare: number;
  paddingWaste: number;
  peakRssMb?: number;
  seconds: number;
  logits: Float32Array[];
}

/** One contender on one workload and client count: a block per round, round r of every row run within minutes of the others'. */
interface BlockRow {
  workload: Workload['name'];
  clients: number;
  contender: string;
  rounds: Block<BlockFigures>[];
}

/** What the table shows of a row: the median round's pairs/s, latencies pooled over the rounds, the most RSS and others' load. */
interface RowSummary {
  pairsPerSecond: number;
  ownCpus: number;
  p50Ms: number;
  p99Ms: number;
  gflops: number;
  peakShare: number;
  paddingWaste: number;
  peakRssMb?: number;
  otherCpus: number;
}

function summarize(row: BlockRow): RowSummary {
  const kept = row.rounds.map((b) => b.kept);
  const results = kept.map((k) => k.result);
  const rss = results.flatMap((r) => (r.peakRssMb === undefined ? [] : [r.peakRssMb]));
  return {
    pairsPerSecond: median(results.map((r) => r.pairsPerSecond)),
    ownCpus: median(kept.map((k) => k.load.ownCpus)),
    ...latencyPercentiles(results.flatMap((r) => r.latenciesMs)),
    gflops: median(results.map((r) => r.gflops)),
    peakShare: median(results.map((r) => r.peakShare)),
    paddingWaste: median(results.map((r) => r.paddingWaste)),
    ...(rss.length === 0 ? {} : { peakRssMb: Math.max(...rss) }),
    otherCpus: Math.max(...kept.map((k) => k.load.otherCpus)),
  };
}

/**
 * `a`'s pairs/s ÷ `b`'s, round by round, and the median of those ratios. The speed of these shared machines
 * shifts by a third from one minute to the next (the same block measured 75 and 46 pairs/s a minute
 * apart), so a ratio is taken between blocks run next to each other, never between two medians.
 */
function roundRatio(a: BlockRow, b: BlockRow): number {
  return median(a.rounds.map((block, r) => block.kept.result.pairsPerSecond / (b.rounds[r]?.kept.result.pairsPerSecond ?? Number.NaN)));
}

function describeRounds(row: BlockRow): string {
  return row.rounds.map((block) => describeAttempts(block)).join(', ');
}

async function buildWorkloads(tokenizer: PairTokenizer, configPath: string): Promise<Workload[]> {
  const countTokens = async (text: string) => (await tokenizer.encodePair('', text, { maxLength: 4096 })).length - 3;
  const encoder = await readEncoderShape(configPath);
  const make = async (name: Workload['name'], description: string, requests: RerankWorkloadRequest[]): Promise<Workload> => {
    let flops = 0;
    let tokens = 0;
    let pairs = 0;
    for (const request of requests) {
      for (const pair of await tokenizer.encodePairs(request.query, request.documents, { maxLength: limits.maxLength, withTypeIds: true })) {
        flops += encoderFlops(encoder, pair.length);
        tokens += pair.length;
        pairs += 1;
      }
    }
    return { name, description, requests, flops, pairs, meanTokens: tokens / pairs };
  };
  const rag = await buildWorkload({ requests: ragRequests, seed, minDocuments: 100, maxDocuments: 100, minDocTokens: 20, maxDocTokens: 400, countTokens });
  const short = await buildWorkload({ requests: shortRequests, seed: seed + 1, minDocuments: 16, maxDocuments: 16, minDocTokens: 10, maxDocTokens: 60, countTokens });
  return [
    await make('RAG', `${ragRequests} requests of 1 query × 100 documents of 20–400 tokens`, rag),
    await make('short', `${shortRequests} requests of 1 query × 16 documents of 10–60 tokens`, short),
  ];
}

async function runBlock(contender: Contender, workload: Workload, clients: number, peakGflops: number): Promise<BlockFigures> {
  const before = await contender.padding();
  const pid = contender.pid;
  const work = () => drive(contender, workload.requests, clients);
  const { result: run, peakRssMb } = pid === undefined ? { result: await work(), peakRssMb: undefined } : await withPeakRss(pid, work);
  const after = await contender.padding();
  const slots = after.slots - before.slots;
  const gflops = workload.flops / run.seconds / 1e9;
  return {
    pairsPerSecond: run.pairs / run.seconds,
    ...latencyPercentiles(run.latenciesMs),
    latenciesMs: run.latenciesMs,
    gflops,
    peakShare: gflops / peakGflops,
    paddingWaste: slots > 0 ? 1 - (after.tokens - before.tokens) / slots : Number.NaN,
    ...(peakRssMb === undefined ? {} : { peakRssMb }),
    seconds: run.seconds,
    logits: run.logits,
  };
}

/**
 * Peak RSS of the FP32 and the int8 server on another model shape (`--rss-shape`, default BERT-base), one
 * after the other, each under one RAG request after its full-budget warm-up. Under both servers sit Node,
 * its model worker, the tokenizer and onnxruntime's libraries, about 240 MB whatever the model; on a
 * MiniLM-L6-sized model (91 MB of float32 weights) that alone keeps int8 ÷ FP32 above 0.7, while on the
 * models rerankers are (BERT-base and larger) the weights and their activations are most of it.
 */
async function rssOnShape(request: RerankWorkloadRequest): Promise<{ fp32Mb: number; int8Mb: number; fp32FileMb: number; int8FileMb: number }> {
  const modelDir = path.join(workDir, 'compare', rssShape);
  await mkdir(modelDir, { recursive: true });
  await ensureModel({ shape: rssShape, outDir: modelDir });
  const quantized = await quantizeModelDir({ dir: modelDir, compare: false, embeddings: args.embeddings });
  const peak: Record<'fp32' | 'int8', number> = { fp32: Number.NaN, int8: Number.NaN };
  for (const variant of ['fp32', 'int8'] as const) {
    const server = await ServerContender.start({ name: `server ${variant} (${rssShape})`, root, configFile: path.join(workDir, `compare-rss-${variant}.yaml`), modelDir, variant, serving });
    try {
      peak[variant] = (await withPeakRss(server.pid, () => server.score(request))).peakRssMb;
    } finally {
      await server.close();
    }
  }
  return { fp32Mb: peak.fp32, int8Mb: peak.int8, fp32FileMb: (await stat(path.join(modelDir, 'model.onnx'))).size / 1e6, int8FileMb: quantized.outputBytes / 1e6 };
}

interface OrdersFigures {
  p50Ratio: number;
  throughputRatio: number;
  firstCome: { p50Ms: number; pairsPerSecond: number };
  mixed: { p50Ms: number; pairsPerSecond: number };
}

/** bench:overload's first-come against mixed comparison, in its own process on the same shape. */
async function runOrders(): Promise<OrdersFigures> {
  const started = Date.now();
  const child = spawn(process.execPath, [path.join(root, 'bench/overload.bench.ts'), '--only', 'orders', '--shape', shape, '--waves', String(waves)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const file = path.join(workDir, 'overload-orders.json');
  const written = await stat(file).then((s) => s.mtimeMs, () => 0);
  if (written < started) throw new Error(`bench/overload.bench.ts --only orders exited ${code} without writing ${file}:\n${output}`);
  for (const line of output.split('\n')) if (/^(first-come|mixed)\s*:/.test(line)) console.log(`  ${line}`);
  return JSON.parse(await readFile(file, 'utf8')) as OrdersFigures;
}

const pad = (text: string, width: number) => text.padStart(width);

function printTable(rows: readonly BlockRow[], workloads: readonly Workload[]): void {
  const header = ['workload', 'clients', 'contender', 'pairs/s', '× loop FP32', 'per CPU-s', 'p50 ms', 'p99 ms', 'GFLOP/s', '% peak', 'pad %', 'RSS MB', 'others\' CPUs'];
  const widths = [8, 7, 20, 8, 11, 9, 8, 8, 8, 7, 6, 7, 0];
  console.log('');
  for (const w of workloads) console.log(`${w.name}: ${w.description}; ${w.pairs} pairs, ${fmt(w.meanTokens)} tokens per pair on average, ${fmt(w.flops / w.pairs / 1e9, 3)} GFLOP per pair`);
  console.log('');
  console.log(header.map((h, i) => (i < 3 ? h.padEnd(widths[i] as number) : pad(h, widths[i] as number))).join('  '));
  for (const row of rows) {
    const figures = summarize(row);
    const loop = rows.find((r) => r.workload === row.workload && r.clients === row.clients && r.contender === 'loop FP32');
    const cells = [
      row.workload.padEnd(widths[0] as number),
      String(row.clients).padEnd(widths[1] as number),
      row.contender.padEnd(widths[2] as number),
      pad(fmt(figures.pairsPerSecond), widths[3] as number),
      pad(loop ? fmt(roundRatio(row, loop), 2) : 'n/a', widths[4] as number),
      pad(fmt(figures.pairsPerSecond / figures.ownCpus), widths[5] as number),
      pad(fmt(figures.p50Ms, 0), widths[6] as number),
      pad(fmt(figures.p99Ms, 0), widths[7] as number),
      pad(fmt(figures.gflops), widths[8] as number),
      pad(fmt(figures.peakShare * 100), widths[9] as number),
      pad(fmt(figures.paddingWaste * 100), widths[10] as number),
      pad(figures.peakRssMb === undefined ? '' : fmt(figures.peakRssMb, 0), widths[11] as number),
      describeRounds(row),
    ];
    console.log(cells.join('  '));
  }
}

async function main(): Promise<void> {
  const targets = new Targets();
  const peak = cpuPeak();
  const peakGflops = args['peak-gflops'] === undefined ? peak.gflops : Number(args['peak-gflops']);
  console.log(`nominal FP32 peak: ${args['peak-gflops'] === undefined ? peak.how : `${peakGflops} GFLOP/s (--peak-gflops; derived: ${peak.how})`}`);

  const modelDir = path.join(workDir, 'compare', shape);
  await mkdir(modelDir, { recursive: true });
  const { generated } = await ensureModel({ shape, outDir: modelDir });
  // Quantized afresh each run, so the options of this run are the ones measured.
  const quantized = await quantizeModelDir({ dir: modelDir, compare: false, embeddings: args.embeddings });
  const fp32Path = path.join(modelDir, 'model.onnx');
  console.log(
    `model: ${shape} at ${path.relative(root, modelDir)}${generated ? ' (generated)' : ''}; fp32 ${fmt((await stat(fp32Path)).size / 1e6)} MB, ` +
      `int8 ${fmt(quantized.outputBytes / 1e6)} MB (models quantize: ${quantized.summary.quantized.length} layers int8${args.embeddings ? ', word embeddings int8' : ''})`,
  );
  const tokenizer = PairTokenizer.load({ tokenizerPath: path.join(modelDir, 'tokenizer.json') });
  const workloads = await buildWorkloads(tokenizer, path.join(modelDir, 'config.json'));
  const layout = await buildTransformersLayout({ modelDir, int8Path: quantized.output, root: path.join(workDir, 'compare', `${shape}-transformers`) });
  console.log(
    `transformers.js model: ${path.relative(root, path.join(layout.localModelPath, layout.id))}, onnx/model.onnx → ${path.relative(root, fp32Path)} (dtype fp32), ` +
      `onnx/model_quantized.onnx → ${path.relative(root, quantized.output)} (dtype q8): the same files the server and the loop run`,
  );

  const contenders: Contender[] = [];
  try {
    console.log('starting the servers (each runs one full-budget warm-up batch) and loading the in-process contenders');
    for (const variant of ['fp32', 'int8'] as const) {
      contenders.push(
        await ServerContender.start({ name: `server ${variant === 'fp32' ? 'FP32' : 'int8'}`, root, configFile: path.join(workDir, `compare-${variant}.yaml`), modelDir, variant, serving }),
      );
    }
    contenders.push(await SortedLoopContender.load({ name: 'loop FP32', modelPath: fp32Path, tokenizer, limits, sliced: false }));
    contenders.push(await SortedLoopContender.load({ name: 'loop int8', modelPath: quantized.output, tokenizer, limits, sliced: false }));
    contenders.push(await SortedLoopContender.load({ name: 'loop FP32 sliced', modelPath: fp32Path, tokenizer, limits, sliced: true }));
    for (const dtype of ['fp32', 'q8'] as const) {
      contenders.push(await TransformersContender.load({ name: `transformers.js ${dtype === 'fp32' ? 'FP32' : 'q8'}`, ...layout, dtype, batchSize: limits.maxBatchSize, maxLength: limits.maxLength }));
    }
    console.log(`contenders loaded; one untimed request each`);
    // One untimed request each: JIT, first-request allocations, the queue's first cost estimates.
    for (const contender of contenders) await contender.score(workloads[0]!.requests[0]!);
    console.log(`contenders ready: ${contenders.map((c) => c.name).join(', ')}; blocks with others using over ${policy.maxOtherCpus} CPUs run again, up to ${policy.repeats} times`);

    const rows: BlockRow[] = [];
    for (const workload of workloads) {
      for (const clients of clientCounts) {
        const group: BlockRow[] = contenders.map((contender) => ({ workload: workload.name, clients, contender: contender.name, rounds: [] }));
        // Every contender once per round, the order rotating from round to round.
        for (let round = 0; round < rounds; round += 1) {
          for (let k = 0; k < contenders.length; k += 1) {
            const index = (round + k) % contenders.length;
            const contender = contenders[index] as Contender;
            const block = await measureBlock(() => runBlock(contender, workload, clients, peakGflops), policy);
            const f = block.kept.result;
            console.log(
              `${workload.name} × ${clients} round ${round + 1}/${rounds} ${contender.name}: ${fmt(f.pairsPerSecond)} pairs/s, p50 ${fmt(f.p50Ms, 0)} ms, p99 ${fmt(f.p99Ms, 0)} ms, ` +
                `${fmt(f.gflops)} GFLOP/s; others' CPUs ${describeAttempts(block)}`,
            );
            (group[index] as BlockRow).rounds.push(block);
          }
        }
        rows.push(...group);
      }
    }

    console.log(`\nfirst-come against mixed order, waves of 4 concurrent RAG requests (bench/overload.bench.ts --only orders --shape ${shape} --waves ${waves}):`);
    const orders = await measureBlock(runOrders, policy);
    console.log(`  others' CPUs ${describeAttempts(orders)}`);

    let rss: Awaited<ReturnType<typeof rssOnShape>> | undefined;
    if (rssShape !== shape) {
      console.log(`\npeak RSS on the ${rssShape} shape: the FP32 and the int8 server in turn, one RAG request each after the full-budget warm-up`);
      rss = await rssOnShape(workloads[0]!.requests[0]!);
      console.log(`  model files: fp32 ${fmt(rss.fp32FileMb)} MB, int8 ${fmt(rss.int8FileMb)} MB; peak RSS: server FP32 ${fmt(rss.fp32Mb)} MB, server int8 ${fmt(rss.int8Mb)} MB`);
    }

    printTable(rows, workloads);
    const row = (workload: Workload['name'], clients: number, contender: string) => rows.find((r) => r.workload === workload && r.clients === clients && r.contender === contender);
    const ratio = (workload: Workload['name'], clients: number, a: string, b: string) => {
      const [rowA, rowB] = [row(workload, clients, a), row(workload, clients, b)];
      return rowA && rowB ? roundRatio(rowA, rowB) : Number.NaN;
    };

    // How far each contender's logits are from the FP32 server's on the same pairs (RAG, the first client count, the first round).
    const logitsOf = (contender: string) => row('RAG', clientCounts[0]!, contender)?.rounds[0]?.kept.result.logits ?? [];
    const reference = logitsOf('server FP32');
    const agreements = new Map<string, Agreement>();
    console.log('\nlogits against the FP32 server on the same RAG pairs:');
    for (const contender of contenders.filter((c) => c.name !== 'server FP32')) {
      const candidate = logitsOf(contender.name);
      const a = agreement(reference.map((r, i) => ({ reference: r, candidate: candidate[i] as Float32Array })));
      agreements.set(contender.name, a);
      console.log(
        `  ${contender.name.padEnd(20)} max |Δlogit| ${a.maxAbsDelta.toExponential(2)}, mean ${a.meanAbsDelta.toExponential(2)} (FP32 logits std ${fmt(a.referenceStd, 4)}), ` +
          `top-10 agreement ${fmt(a.topKAgreement * 100)} % (worst query ${fmt(a.minTopKAgreement * 100)} %)`,
      );
    }
    console.log('  (random weights do not judge int8 quality: `rerank-server models quantize DIR --sample pairs.json` on a real model does)');

    console.log('');
    const one = clientCounts[0]!;
    const check = (name: string, value: number, op: '<=' | '>=', limit: number, unit = '') => console.log(`${name}: ${fmt(value, 3)}${unit} ${targets.check(name, value, op, limit, unit)}`);
    check(`RAG, ${one} client: server int8 ÷ loop FP32 (length-sorted, session.run per batch)`, ratio('RAG', one, 'server int8', 'loop FP32'), '>=', 2.0);
    console.log(`  (server int8 ÷ loop FP32 sliced, the server's own run slicing in the loop: ${fmt(ratio('RAG', one, 'server int8', 'loop FP32 sliced'), 3)})`);
    check(`RAG, ${one} client: server int8 ÷ transformers.js q8`, ratio('RAG', one, 'server int8', 'transformers.js q8'), '>=', 1.3);
    const orderFigures = orders.kept.result;
    check('4 concurrent RAG requests: p50 first-come ÷ mixed', orderFigures.p50Ratio, '<=', 0.65);
    check('4 concurrent RAG requests: throughput first-come ÷ mixed', orderFigures.throughputRatio, '>=', 0.95);
    const serverPeak = (name: string) => Math.max(...rows.filter((r) => r.contender === name).map((r) => summarize(r).peakRssMb ?? Number.NaN));
    const blocksRss = serverPeak('server int8') / serverPeak('server FP32');
    console.log(`peak RSS over all blocks (${shape}): server FP32 ${fmt(serverPeak('server FP32'))} MB, server int8 ${fmt(serverPeak('server int8'))} MB, int8 ÷ FP32 ${fmt(blocksRss, 3)}`);
    if (rss === undefined) check(`RSS server int8 ÷ server FP32 (${shape}, peak over all blocks)`, blocksRss, '<=', 0.6);
    else {
      console.log(`  (not a target on ${shape}: the runtime under both servers is most of it; see rssOnShape)`);
      check(`RSS server int8 ÷ server FP32 (${rssShape}, one RAG request)`, rss.int8Mb / rss.fp32Mb, '<=', 0.6);
    }
    for (const workload of workloads) {
      for (const clients of clientCounts) {
        check(
          `${workload.name}, ${clients} client${clients === 1 ? '' : 's'}: server FP32 ÷ loop FP32 sliced (the server's overhead)`,
          ratio(workload.name, clients, 'server FP32', 'loop FP32 sliced'),
          '>=',
          0.95,
        );
      }
    }
    for (const server of ['server FP32', 'server int8']) {
      for (const clients of clientCounts) {
        const waste = row('RAG', clients, server);
        check(`RAG, ${clients} client${clients === 1 ? '' : 's'}: ${server} padding waste`, (waste ? summarize(waste).paddingWaste : Number.NaN) * 100, '<=', 10, ' %');
      }
      const rss = rows.filter((r) => r.contender === server && r.workload === 'RAG').flatMap((r) => r.rounds.map((b) => b.kept.result.peakRssMb ?? Number.NaN));
      check(`${server}: peak RSS spread over its RAG blocks`, ((Math.max(...rss) - Math.min(...rss)) / Math.min(...rss)) * 100, '<=', 10, ' %');
    }
    for (const name of ['loop FP32', 'loop FP32 sliced', 'transformers.js FP32']) check(`${name} agrees with server FP32: max |Δlogit|`, agreements.get(name)?.maxAbsDelta ?? Number.NaN, '<=', 1e-3);

    const blocks = [
      ...rows.flatMap((r) => r.rounds.map((block, i) => ({ what: `${r.workload} × ${r.clients} ${r.contender} round ${i + 1}`, block: block as Block<unknown> }))),
      { what: 'orders', block: orders as Block<unknown> },
    ];
    const repeated = blocks.filter(
      (r) => r.block.attempts.length > 1,
    );
    console.log(
      `\nblocks repeated for others' load (over ${policy.maxOtherCpus} CPUs): ${repeated.length === 0 ? 'none' : repeated.map((r) => `${r.what} (${describeAttempts(r.block)})`).join('; ')}`,
    );
    const quietMisses = blocks.filter(({ block }) => block.kept.load.otherCpus > policy.maxOtherCpus).length;
    if (quietMisses > 0) console.log(`${quietMisses} block(s) found no quiet attempt: their figures carry others' load; run again on a quiet machine`);

    await writeFile(
      path.join(workDir, 'serving.json'),
      JSON.stringify(
        {
          shape,
          quick,
          peak: { ...peak, used: peakGflops },
          policy,
          rounds,
          cpus: os.cpus().length,
          workloads: workloads.map(({ requests: _, ...w }) => w),
          blocks: rows.map((r) => ({
            workload: r.workload,
            clients: r.clients,
            contender: r.contender,
            rounds: r.rounds.map((block) => ({ attempts: block.attempts.map((a) => ({ load: a.load, ...withoutLogits(a.result) })), kept: block.attempts.indexOf(block.kept) })),
          })),
          orders: { attempts: orders.attempts, kept: orders.attempts.indexOf(orders.kept) },
          ...(rss === undefined ? {} : { rss: { shape: rssShape, ...rss } }),
          agreement: Object.fromEntries(agreements),
          quantize: { file: quantized.output, bytes: quantized.outputBytes, options: quantized.options },
          targets: targets.results,
        },
        null,
        2,
      ),
    );
    targets.report();
  } finally {
    for (const contender of contenders) await contender.close();
  }
}

function withoutLogits({ logits: _, latenciesMs: __, ...rest }: BlockFigures): Omit<BlockFigures, 'logits' | 'latenciesMs'> {
  return rest;
}

// Ctrl-C or a kill ends the run through process.exit, so the servers' exit handlers stop them.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
await main();
