/**
 * Overload benchmark: first-come batching against the mixed order, and admission by expected wait.
 *
 *   npm run bench:overload [-- --waves 3 --seconds 30 --factor 2 --max-wait-ms 2000 --shape tiny --only orders|overload]
 *
 * 1. First come against mixed, in this process: the server's own BatchQueue over one ONNX session, fed
 *    waves of 4 RAG requests (1 query × 100 documents of 20–400 tokens) sent at once, the two orders
 *    alternating wave by wave (ABBA) on the same pairs. Each order's p50 latency and pairs/s.
 * 2. Overload: `rerank-server` in a child process with `maxQueueWaitMs`. One client measures the idle
 *    latency, two the capacity (requests/s); then requests arrive at random (Poisson) at `factor` ×
 *    capacity for `seconds`, each from its own client, which on a 429 waits Retry-After and retries once.
 *    Reports the accepted requests' latency and queue time (the server's x-queue-time, from being queued
 *    after tokenizing until the first batch; admission bounds the wait from admission, before tokenizing,
 *    which is x-tokenization-time + x-queue-time and a little more: both are reported, and the server's
 *    reranker_queue_wait_ratio, that wait over the one expected), the refusal share, the accepted
 *    throughput, and how the retries that waited Retry-After fared. Then, with nothing else
 *    arriving, a burst of more requests than the queue admits; of the refused clients, the one told to
 *    wait longest waits its Retry-After and retries: an honest Retry-After has it accepted.
 * Prints PASS/FAIL per target and writes `.bench/overload-orders.json` and `.bench/overload.json`.
 * The default tiny model keeps a run near 2 minutes; `--shape minilm-l6` costs what a real MiniLM reranker
 * costs (far fewer requests in the same time).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { dump as toYaml } from 'js-yaml';
import { ServingConfigSchema } from '../server/config/schema.ts';
import type { BatchOrder } from '../server/engine/batch-order.ts';
import { BatchQueue } from '../server/engine/batch-queue.ts';
import { loadOnnxModel } from '../server/engine/onnx-model.ts';
import { PairTokenizer, type EncodedPair } from '../server/engine/pair-tokenizer.ts';
import { silentLogger } from '../server/logger.ts';
import { ensureModel, type ModelShape } from '../server/modelgen/index.ts';
import { freePort } from './process.ts';
import { fmt, metricSum, percentile } from './stats.ts';
import { Targets } from './targets.ts';
import { buildWorkload, mulberry32, type RerankWorkloadRequest } from './workload.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workDir = path.join(root, '.bench');

const { values: args } = parseArgs({
  options: {
    shape: { type: 'string', default: 'tiny' },
    waves: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '30' },
    factor: { type: 'string', default: '2' },
    'max-wait-ms': { type: 'string', default: '2000' },
    'calibrate-seconds': { type: 'string', default: '8' },
    'honesty-rounds': { type: 'string', default: '4' },
    only: { type: 'string' },
    seed: { type: 'string', default: '11' },
  },
});
const only = args.only as 'orders' | 'overload' | undefined;
if (only !== undefined && only !== 'orders' && only !== 'overload') throw new Error(`--only: orders or overload, not ${only}`);
const shape = args.shape as ModelShape;
const waves = Number(args.waves);
const overloadSeconds = Number(args.seconds);
const factor = Number(args.factor);
const maxQueueWaitMs = Number(args['max-wait-ms']);
const calibrateSeconds = Number(args['calibrate-seconds']);
const seed = Number(args.seed);
const honestyRounds = Number(args['honesty-rounds']);

const RAG = { minDocuments: 100, maxDocuments: 100, minDocTokens: 20, maxDocTokens: 400 };
const serving = ServingConfigSchema.parse({ maxLength: 512, maxBatchTokens: 16384, maxBatchSize: 32, maxQueueWaitMs, logLevel: 'warn' });
const limits = { maxBatchTokens: serving.maxBatchTokens, maxBatchSize: serving.maxBatchSize, maxQueuedPairs: serving.maxQueuedPairs };

interface OrderResult {
  order: BatchOrder;
  latenciesMs: number[];
  pairs: number;
  seconds: number;
}

/** Waves of concurrent requests through one queue per wave; the orders alternate (ABBA) on the same session. */
async function compareOrders(modelDir: string, tokenizer: PairTokenizer, workload: RerankWorkloadRequest[]): Promise<Record<BatchOrder, OrderResult>> {
  const model = await loadOnnxModel({ modelPath: path.join(modelDir, 'model.onnx'), device: 'cpu', padId: tokenizer.padId, logger: silentLogger() });
  try {
    const encoded: EncodedPair[][] = [];
    for (const request of workload) encoded.push(await tokenizer.encodePairs(request.query, request.documents, { maxLength: serving.maxLength, withTypeIds: model.description.takesTypeIds }));
    const results: Record<BatchOrder, OrderResult> = {
      'first-come': { order: 'first-come', latenciesMs: [], pairs: 0, seconds: 0 },
      mixed: { order: 'mixed', latenciesMs: [], pairs: 0, seconds: 0 },
    };
    const wave = async (order: BatchOrder) => {
      const queue = new BatchQueue({ version: 'bench', model, order, limits: () => limits });
      const started = performance.now();
      const done = await Promise.all(encoded.map((pairs) => queue.score(pairs).then(() => performance.now() - started)));
      const result = results[order];
      result.latenciesMs.push(...done);
      result.seconds += Math.max(...done) / 1000;
      result.pairs += encoded.reduce((n, pairs) => n + pairs.length, 0);
      return done;
    };
    await wave('first-come'); // warm-up, untimed
    results['first-come'] = { order: 'first-come', latenciesMs: [], pairs: 0, seconds: 0 };
    for (let w = 0; w < waves; w += 1) {
      for (const order of (w % 2 === 0 ? ['first-come', 'mixed'] : ['mixed', 'first-come']) as BatchOrder[]) {
        const done = await wave(order);
        console.log(`  wave ${w + 1} ${order.padEnd(10)}: answered at ${done.map((ms) => fmt(ms / 1000, 2)).join(', ')} s`);
      }
    }
    return results;
  } finally {
    await model.close();
  }
}

async function waitReady(url: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return;
    await sleep(200);
  }
  throw new Error(`server at ${url} not ready after ${timeoutMs} ms`);
}

interface Attempt {
  retry: boolean;
  /** Sent while arrivals were still coming (the overload phase), rather than after they stopped. */
  duringLoad: boolean;
  status: number;
  latencyMs: number;
  /** The server's x-queue-time of an answered request. */
  queueMs: number;
  /** Its x-tokenization-time. */
  tokenizeMs: number;
  retryAfterSeconds: number;
}

/** `body` is the JSON text: serialized once per workload request, so the client (on the same cores) costs little. */
async function send(url: string, body: string): Promise<{ status: number; latencyMs: number; queueMs: number; tokenizeMs: number; retryAfterSeconds: number }> {
  const started = performance.now();
  try {
    const response = await fetch(`${url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    await response.arrayBuffer();
    return {
      status: response.status,
      latencyMs: performance.now() - started,
      queueMs: Number(response.headers.get('x-queue-time') ?? Number.NaN),
      tokenizeMs: Number(response.headers.get('x-tokenization-time') ?? Number.NaN),
      retryAfterSeconds: Number(response.headers.get('retry-after') ?? Number.NaN),
    };
  } catch {
    return { status: 0, latencyMs: performance.now() - started, queueMs: Number.NaN, tokenizeMs: Number.NaN, retryAfterSeconds: Number.NaN };
  }
}

/** Share of the observations in a histogram's delta between two scrapes that fell at or below `le`. */
function shareAtMost(before: string, after: string, name: string, le: string): number {
  const delta = (suffix: string, filter = '') => metricSum(after, `${name}${suffix}`, filter) - metricSum(before, `${name}${suffix}`, filter);
  const count = delta('_count');
  return count > 0 ? delta('_bucket', `le="${le}"`) / count : Number.NaN;
}

/** The machine's 1-minute load average: the cores are shared, so figures are read against it. */
function load(): string {
  return `${fmt(os.loadavg()[0] as number, 2)} on ${os.availableParallelism()} cores`;
}

/**
 * `clients` closed-loop clients for `seconds`: requests/s and latencies. One client gives the latency of a
 * request that never queues; two keep the model busy while the next request is parsed and tokenized,
 * which is the server's capacity.
 */
async function calibrate(url: string, bodies: readonly string[], seconds: number, clients: number) {
  const latenciesMs: number[] = [];
  const started = performance.now();
  let i = 0;
  // At least a few requests each, however long they take (a MiniLM-sized request takes seconds).
  const minRequests = 6 * clients;
  let refused = 0;
  const client = async () => {
    while (performance.now() - started < seconds * 1000 || i < minRequests) {
      const result = await send(url, bodies[i++ % bodies.length] as string);
      if (result.status === 429) {
        // One request ahead can pass maxQueueWaitMs on a slow (or busy) machine: wait as told, it is still capacity.
        refused += 1;
        await sleep(result.retryAfterSeconds * 1000);
        continue;
      }
      if (result.status !== 200) throw new Error(`calibration request answered ${result.status}`);
      latenciesMs.push(result.latencyMs);
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  const elapsedSeconds = (performance.now() - started) / 1000;
  return { requestsPerSecond: latenciesMs.length / elapsedSeconds, latenciesMs, elapsedSeconds, refused };
}

/** Poisson arrivals at `rate`/s for `seconds`; each client retries once after Retry-After on a 429. */
async function overload(url: string, bodies: readonly string[], rate: number, seconds: number): Promise<{ attempts: Attempt[]; arrivals: number; loadSeconds: number }> {
  const random = mulberry32(seed);
  const attempts: Attempt[] = [];
  const clients: Promise<void>[] = [];
  const started = performance.now();
  const endAt = started + seconds * 1000;
  let nextAt = started;
  let arrivals = 0;
  const client = async (body: string) => {
    const first = await send(url, body);
    attempts.push({ retry: false, duringLoad: true, ...first });
    if (first.status !== 429) return;
    await sleep(first.retryAfterSeconds * 1000);
    const duringLoad = performance.now() < endAt;
    attempts.push({ retry: true, duringLoad, ...(await send(url, body)) });
  };
  while (performance.now() < endAt) {
    nextAt += (-Math.log(1 - random()) / rate) * 1000;
    const wait = nextAt - performance.now();
    if (wait > 0) await sleep(wait);
    if (performance.now() >= endAt) break;
    clients.push(client(bodies[arrivals++ % bodies.length] as string));
  }
  const loadSeconds = (performance.now() - started) / 1000;
  await Promise.all(clients);
  return { attempts, arrivals, loadSeconds };
}

/**
 * Retry-After on a quiet server: a burst of `burst` requests at once, more than the queue admits; of the
 * refused ones, the client told to wait longest (it saw the queue fullest) waits its Retry-After and sends
 * again, while nothing else arrives. Honest: accepted then.
 */
async function honestyProbe(url: string, bodies: readonly string[], rounds: number, firstBurst: number): Promise<{ retryAfterSeconds: number; status: number; burst: number }[]> {
  const outcomes: { retryAfterSeconds: number; status: number; burst: number }[] = [];
  let burst = firstBurst;
  for (let round = 0; round < rounds; round += 1) {
    const refused: { retryAfterSeconds: number; body: string }[] = [];
    const sent = Array.from({ length: burst }, (_, i) => {
      const body = bodies[(round * burst + i) % bodies.length] as string;
      return send(url, body).then((result) => {
        if (result.status === 429) refused.push({ retryAfterSeconds: result.retryAfterSeconds, body });
      });
    });
    // Refusals come back at once (before or right after tokenizing); the admitted ones take seconds.
    await sleep(1000);
    const longest = refused.reduce<(typeof refused)[number] | undefined>((a, b) => (a === undefined || b.retryAfterSeconds > a.retryAfterSeconds ? b : a), undefined);
    if (longest === undefined) {
      // The queue took the whole burst (its estimate was low after the quiet spell): say so, and try a bigger one.
      console.log(`  a burst of ${burst} requests was admitted whole; the next burst is twice as big`);
      await Promise.all(sent);
      if (burst >= firstBurst * 8) throw new Error(`bursts up to ${burst} requests were admitted whole: the queue never refused`);
      burst *= 2;
      round -= 1;
      continue;
    }
    await sleep(longest.retryAfterSeconds * 1000 - 1000);
    outcomes.push({ retryAfterSeconds: longest.retryAfterSeconds, status: (await send(url, longest.body)).status, burst });
    await Promise.all(sent);
  }
  return outcomes;
}

async function main(): Promise<void> {
  const targets = new Targets();
  await mkdir(workDir, { recursive: true });
  const modelDir = path.join(workDir, 'models', shape);
  const { generated } = await ensureModel({ shape, outDir: modelDir });
  console.log(`model: ${shape} at ${path.relative(root, modelDir)}${generated ? ' (generated)' : ''}`);
  const tokenizer = PairTokenizer.load({ tokenizerPath: path.join(modelDir, 'tokenizer.json') });
  const countTokens = async (text: string) => (await tokenizer.encodePair('', text, { maxLength: 4096 })).length - 3;
  const workload = await buildWorkload({ requests: 12, seed, countTokens, ...RAG });

  // 1. First come against mixed.
  if (only !== 'overload') await ordersPart(targets, modelDir, tokenizer, workload);
  if (only !== 'orders') await overloadPart(targets, modelDir, workload);
  targets.report();
}

async function ordersPart(targets: Targets, modelDir: string, tokenizer: PairTokenizer, workload: RerankWorkloadRequest[]): Promise<void> {
  console.log(`\nfirst-come against mixed: waves of 4 concurrent RAG requests (1 × 100 documents of 20–400 tokens), ${waves} waves each`);
  const orders = await compareOrders(modelDir, tokenizer, workload.slice(0, 4));
  const summary = (r: OrderResult) => ({ p50Ms: percentile(r.latenciesMs, 50), p99Ms: percentile(r.latenciesMs, 99), pairsPerSecond: r.pairs / r.seconds });
  const firstCome = summary(orders['first-come']);
  const mixed = summary(orders.mixed);
  for (const [name, s] of [['first-come', firstCome], ['mixed', mixed]] as const) {
    console.log(`${name.padEnd(10)}: p50 ${fmt(s.p50Ms / 1000, 2)} s, p99 ${fmt(s.p99Ms / 1000, 2)} s, ${fmt(s.pairsPerSecond)} pairs/s`);
  }
  const p50Ratio = firstCome.p50Ms / mixed.p50Ms;
  const throughputRatio = firstCome.pairsPerSecond / mixed.pairsPerSecond;
  console.log(`p50 first-come ÷ mixed: ${fmt(p50Ratio, 3)} ${targets.check('4 concurrent RAG: p50 first-come ÷ mixed', p50Ratio, '<=', 0.65)}`);
  console.log(`throughput first-come ÷ mixed: ${fmt(throughputRatio, 3)} ${targets.check('4 concurrent RAG: throughput first-come ÷ mixed', throughputRatio, '>=', 0.95)}`);
  await writeFile(
    path.join(workDir, 'overload-orders.json'),
    JSON.stringify({ shape, waves, firstCome, mixed, p50Ratio, throughputRatio, latenciesMs: { firstCome: orders['first-come'].latenciesMs, mixed: orders.mixed.latenciesMs } }, null, 2),
  );
}

async function overloadPart(targets: Targets, modelDir: string, workload: RerankWorkloadRequest[]): Promise<void> {
  const configFile = path.join(workDir, 'overload-config.yaml');
  await writeFile(configFile, toYaml({ defaultVersion: 'bench', versions: { bench: { model: modelDir } }, serving }));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = spawn(process.execPath, [path.join(root, 'server/cli/main.ts'), 'start', '--config', configFile, '--port', String(port), '--host', '127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await waitReady(url);
    const bodies = workload.map((r) => JSON.stringify({ query: r.query, texts: r.documents }));
    await send(url, bodies[0] as string); // warm-up: the queue measures its first batches
    const idle = await calibrate(url, bodies, calibrateSeconds / 2, 1);
    const beforeCapacity = await fetch(`${url}/metrics`).then((r) => r.text());
    const busy = await calibrate(url, bodies, calibrateSeconds, 2);
    const afterCapacity = await fetch(`${url}/metrics`).then((r) => r.text());
    const modelSeconds = (from: string, to: string) => metricSum(to, 'reranker_inference_duration_seconds_sum') - metricSum(from, 'reranker_inference_duration_seconds_sum');
    const pairsRun = (from: string, to: string) => metricSum(to, 'reranker_batch_size_sum') - metricSum(from, 'reranker_batch_size_sum');
    const capacityBusy = modelSeconds(beforeCapacity, afterCapacity) / busy.elapsedSeconds;
    const capacityPairsPerModelSecond = pairsRun(beforeCapacity, afterCapacity) / modelSeconds(beforeCapacity, afterCapacity);
    const idleP99 = percentile(idle.latenciesMs, 99);
    const capacity = busy.requestsPerSecond;
    const rate = factor * capacity;
    console.log(
      `\noverload: one client ${idle.latenciesMs.length} requests, latency p50 ${fmt(percentile(idle.latenciesMs, 50))} ms, p99 ${fmt(idleP99)} ms; ` +
        `capacity (two clients) ${fmt(capacity, 2)} requests/s${busy.refused + idle.refused > 0 ? ` (${busy.refused + idle.refused} calibration requests refused 429 and sent again)` : ''}; ${fmt(rate, 2)} requests/s arriving for ${overloadSeconds} s, maxQueueWaitMs ${maxQueueWaitMs}`,
    );
    const before = await fetch(`${url}/metrics`).then((r) => r.text());
    const loadBefore = load();
    const run = await overload(url, bodies, rate, overloadSeconds);
    const loadAfter = load();
    const after = await fetch(`${url}/metrics`).then((r) => r.text());
    const withinExpected = shareAtMost(before, after, 'reranker_queue_wait_ratio', '1');
    const batches = metricSum(after, 'reranker_inference_duration_seconds_count') - metricSum(before, 'reranker_inference_duration_seconds_count');
    const batchMs = ((metricSum(after, 'reranker_inference_duration_seconds_sum') - metricSum(before, 'reranker_inference_duration_seconds_sum')) / batches) * 1000;
    // Where throughput goes: the share of the time the model ran, and the pairs it ran per second of its own time.
    const overloadBusy = modelSeconds(before, after) / run.loadSeconds;
    const overloadPairsPerModelSecond = pairsRun(before, after) / modelSeconds(before, after);

    const firsts = run.attempts.filter((a) => !a.retry);
    const accepted = run.attempts.filter((a) => a.status === 200);
    const acceptedDuringLoad = firsts.filter((a) => a.status === 200).length + run.attempts.filter((a) => a.retry && a.duringLoad && a.status === 200).length;
    const refusedFirst = firsts.filter((a) => a.status === 429);
    const retries = run.attempts.filter((a) => a.retry);
    const retriesAfterLoad = retries.filter((a) => !a.duringLoad);
    const failures = run.attempts.filter((a) => a.status !== 200 && a.status !== 429).length;
    const latencyP99 = percentile(accepted.map((a) => a.latencyMs), 99);
    const queueP99 = percentile(accepted.map((a) => a.queueMs), 99);
    const admittedWaitP99 = percentile(accepted.map((a) => a.tokenizeMs + a.queueMs), 99);
    const share = (part: number, whole: number) => (whole > 0 ? part / whole : Number.NaN);
    const refusalShare = share(refusedFirst.length, firsts.length);
    const retryAccepted = share(retries.filter((a) => a.status === 200).length, retries.length);
    const retryAfterLoadAccepted = share(retriesAfterLoad.filter((a) => a.status === 200).length, retriesAfterLoad.length);
    const acceptedRate = acceptedDuringLoad / run.loadSeconds;
    const retryAfterValues = refusedFirst.map((a) => a.retryAfterSeconds);

    console.log(
      `arrivals ${run.arrivals} in ${fmt(run.loadSeconds)} s; attempts ${run.attempts.length} (${retries.length} retries); accepted ${accepted.length}; ` +
        `refused first attempts ${refusedFirst.length} (${fmt(refusalShare * 100)} %); other failures ${failures}; ${batches} batches of ${fmt(batchMs)} ms on average`,
    );
    console.log(`Retry-After given: ${retryAfterValues.length > 0 ? `${Math.min(...retryAfterValues)}–${Math.max(...retryAfterValues)} s` : 'none'}`);
    console.log(`machine load (1 min) before the overload phase ${loadBefore}, after ${loadAfter}`);
    console.log(
      `model busy: ${fmt(capacityBusy * 100)} % of the capacity run, ${fmt(overloadBusy * 100)} % of the overload; ` +
        `pairs per second of model time: ${fmt(capacityPairsPerModelSecond)} and ${fmt(overloadPairsPerModelSecond)}`,
    );
    console.log(
      `accepted: latency p50 ${fmt(percentile(accepted.map((a) => a.latencyMs), 50))} ms, p99 ${fmt(latencyP99)} ms; queue time p99 ${fmt(queueP99)} ms; ` +
        `tokenization + queue time p99 ${fmt(admittedWaitP99)} ms; admitted requests whose wait was at most the one expected: ${fmt(withinExpected * 100)} %`,
    );
    const queueLimit = maxQueueWaitMs + batchMs;
    console.log(`queue time p99 of accepted: ${fmt(queueP99)} ms ${targets.check('overload: accepted queue time p99 (ms) vs maxQueueWaitMs + one batch', queueP99, '<=', Math.round(queueLimit), ' ms')}`);
    const latencyLimit = maxQueueWaitMs + batchMs + idleP99;
    console.log(
      `latency p99 of accepted: ${fmt(latencyP99)} ms ${targets.check('overload: accepted latency p99 (ms) vs maxQueueWaitMs + one batch + idle p99', latencyP99, '<=', Math.round(latencyLimit), ' ms')}`,
    );
    console.log(
      `accepted throughput under overload: ${fmt(acceptedRate, 2)} requests/s = ${fmt(acceptedRate / capacity, 3)} × capacity ` +
        targets.check('overload: accepted throughput ÷ capacity', acceptedRate / capacity, '>=', 0.95),
    );
    console.log(`refusal share of first attempts: ${fmt(refusalShare * 100)} % (at ${factor}× capacity about ${fmt((1 - 1 / factor) * 100)} % must be refused)`);
    console.log(
      `retries after Retry-After: ${retries.filter((a) => a.status === 200).length} of ${retries.length} accepted (${fmt(retryAccepted * 100)} %); ` +
        `of those sent once arrivals stopped: ${retriesAfterLoad.filter((a) => a.status === 200).length} of ${retriesAfterLoad.length}`,
    );
    console.log(`other failures: ${failures} ${targets.check('overload: answers other than 200 and 429', failures, '<=', 0)}`);
    // Enough that the queue cannot take them all: twice what fits in maxQueueWaitMs, and a few more.
    const burst = Math.ceil((2 * maxQueueWaitMs) / percentile(idle.latenciesMs, 50)) + 4;
    const honesty = await honestyProbe(url, bodies, honestyRounds, burst);
    const honestShare = share(honesty.filter((o) => o.status === 200).length, honesty.length);
    console.log(
      `quiet server, bursts of ${honesty.map((o) => o.burst).join('/')}: the refused client told to wait longest retries after Retry-After (${honesty.map((o) => `${o.retryAfterSeconds} s → ${o.status}`).join(', ')}): ` +
        `${fmt(honestShare * 100)} % accepted ${targets.check('Retry-After honest: retries accepted on a quiet server', honestShare, '>=', 0.9)}`,
    );

    const result = {
      shape,
      overload: {
        maxQueueWaitMs,
        factor,
        capacityRequestsPerSecond: capacity,
        idleLatencyP99Ms: idleP99,
        arrivals: run.arrivals,
        loadSeconds: run.loadSeconds,
        batches,
        batchMs,
        accepted: accepted.length,
        refusalShare,
        acceptedRate,
        latencyP99Ms: latencyP99,
        queueP99Ms: queueP99,
        admittedWaitP99Ms: admittedWaitP99,
        withinExpectedShare: withinExpected,
        loadBefore,
        loadAfter,
        capacityBusy,
        overloadBusy,
        capacityPairsPerModelSecond,
        overloadPairsPerModelSecond,
        retries: retries.length,
        retryAccepted,
        retriesAfterLoad: retriesAfterLoad.length,
        retryAfterLoadAccepted,
        failures,
        honesty,
      },
    };
    await writeFile(path.join(workDir, 'overload.json'), JSON.stringify(result, null, 2));
  } finally {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
}

await main();
