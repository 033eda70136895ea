/**
 * Batch limits: which `maxBatchSize` and `maxPaddingRatio` serve fastest, side by side in one run.
 *
 *   npm run bench:batch-limits [-- --shape minilm-l6 --variant int8 --settings 32/0.05,4096/0.05,32/0.15
 *                                  --workloads short,RAG --clients 1,4 --rounds 5 --short-requests 48 --rag-requests 2]
 *
 * --rag-requests is per client (each of 4 clients has its own), --short-requests in all.
 *
 * One `rerank-server` child per setting (maxBatchSize/maxPaddingRatio; the first is the baseline), all on
 * the same model files, none busy while another is measured. Each round draws fresh requests and runs them
 * through every server in turn, the order rotating from round to round, so a slow stretch of a shared
 * machine falls on each setting alike; each round's pairs/s is divided by the baseline's in the same round,
 * and the median of those ratios (with the lowest and highest) is what the table reports. A setting is
 * called faster only when its median ratio is at least --faster (default 1.05) and no round is below 1, over
 * at least 3 rounds: smaller differences are within what rounds of a few seconds measure on these machines.
 *
 * "Grow past maxBatchSize while the token budget allows" is the setting 4096/…: `maxBatchTokens` (16 384)
 * is then the only cap on a batch of short pairs.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ServingConfigSchema } from '../server/config/schema.ts';
import { PairTokenizer } from '../server/engine/pair-tokenizer.ts';
import { ensureModel, MODEL_SHAPES, type ModelShape } from '../server/modelgen/index.ts';
import { quantizeModelDir } from '../server/quantize/quantize-model.ts';
import { cpuLoadBetween, cpuSnapshot } from './cpu-load.ts';
import { drive, latencyPercentiles } from './contender.ts';
import { ServerContender } from './server-contender.ts';
import { wholeNumber } from './options.ts';
import { fmt, median, ratioVerdict } from './stats.ts';
import { buildWorkload, type RerankWorkloadRequest } from './workload.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const workDir = path.join(root, '.bench');

const { values: args } = parseArgs({
  options: {
    shape: { type: 'string', default: 'minilm-l6' },
    variant: { type: 'string', default: 'int8' },
    settings: { type: 'string', default: '32/0.05,4096/0.05,32/0.15,4096/0.15,4096/1' },
    workloads: { type: 'string', default: 'short,RAG' },
    clients: { type: 'string', default: '1,4' },
    rounds: { type: 'string', default: '5' },
    'short-requests': { type: 'string', default: '48' },
    'rag-requests': { type: 'string', default: '2' },
    faster: { type: 'string', default: '1.05' },
    seed: { type: 'string', default: '11' },
  },
});

const shape = args.shape as ModelShape;
if (!Object.hasOwn(MODEL_SHAPES, shape)) throw new Error(`--shape: one of ${Object.keys(MODEL_SHAPES).join(', ')}, not ${shape}`);
if (args.variant !== 'fp32' && args.variant !== 'int8') throw new Error(`--variant: fp32 or int8, not ${args.variant}`);
const variant = args.variant;

interface Setting {
  label: string;
  maxBatchSize: number;
  maxPaddingRatio: number;
}

const settings: Setting[] = args.settings.split(',').map((text) => {
  const [size = '', ratio = ''] = text.split('/');
  const maxPaddingRatio = Number(ratio);
  if (!(maxPaddingRatio >= 0 && maxPaddingRatio <= 1)) throw new Error(`--settings: maxBatchSize/maxPaddingRatio with a ratio in [0, 1], not ${text}`);
  return { label: `${size}/${ratio}`, maxBatchSize: wholeNumber('settings', size), maxPaddingRatio };
});
if (settings.length < 2) throw new Error('--settings: at least two, the first being the baseline');
const workloadNames = args.workloads.split(',');
for (const name of workloadNames) if (name !== 'short' && name !== 'RAG') throw new Error(`--workloads: short and/or RAG, not ${name}`);
const clientCounts = args.clients.split(',').map((c) => wholeNumber('clients', c));
const rounds = wholeNumber('rounds', args.rounds);
const fasterAt = Number(args.faster);
if (!(fasterAt > 1)) throw new Error(`--faster: a ratio above 1, not ${args.faster}`);
// Requests per round: RAG ones per client (so each client has its own), short ones in all.
const ragRequestsPerClient = wholeNumber('rag-requests', args['rag-requests']);
const shortRequests = wholeNumber('short-requests', args['short-requests']);
const seed = Number(args.seed);

interface Cell {
  pairsPerSecond: number;
  p50Ms: number;
  otherCpus: number;
}

async function main(): Promise<void> {
  const modelDir = path.join(workDir, 'compare', shape);
  await ensureModel({ shape, outDir: modelDir });
  if (variant === 'int8') await quantizeModelDir({ dir: modelDir, compare: false, embeddings: true });
  const tokenizer = PairTokenizer.load({ tokenizerPath: path.join(modelDir, 'tokenizer.json') });
  const countTokens = async (text: string) => (await tokenizer.encodePair('', text, { maxLength: 4096 })).length - 3;
  const requestsFor = (workload: string, round: number, clients: number): Promise<RerankWorkloadRequest[]> => {
    const roundSeed = seed + 1000 * round + 10 * clients + (workload === 'RAG' ? 1 : 0);
    return workload === 'RAG'
      ? buildWorkload({ requests: ragRequestsPerClient * clients, seed: roundSeed, minDocuments: 100, maxDocuments: 100, minDocTokens: 20, maxDocTokens: 400, countTokens })
      : buildWorkload({ requests: shortRequests, seed: roundSeed, minDocuments: 16, maxDocuments: 16, minDocTokens: 10, maxDocTokens: 60, countTokens });
  };

  console.log(`model: ${shape} ${variant}; settings maxBatchSize/maxPaddingRatio: ${settings.map((s) => s.label).join(', ')} (baseline ${settings[0]!.label}); ${rounds} rounds`);
  const servers: ServerContender[] = [];
  try {
    for (const setting of settings) {
      const serving = ServingConfigSchema.parse({
        maxLength: 512,
        maxBatchTokens: 16384,
        maxBatchSize: setting.maxBatchSize,
        maxPaddingRatio: setting.maxPaddingRatio,
        maxQueueWaitMs: 0,
        warmup: 'full',
        logLevel: 'warn',
      });
      const configFile = path.join(workDir, `batch-limits-${servers.length}.yaml`);
      servers.push(await ServerContender.start({ name: setting.label, root, configFile, modelDir, variant, serving }));
    }
    // One untimed request each: JIT, first allocations, the queue's first cost estimates.
    const warm = await requestsFor('RAG', -1, 1);
    for (const server of servers) await server.score(warm[0]!);

    console.log('');
    console.log(['workload', 'clients', 'setting'.padEnd(12), 'pairs/s', 'p50 ms', '÷ baseline (median, min–max)', 'verdict'].join('  '));
    for (const workload of workloadNames) {
      for (const clients of clientCounts) {
        const cells: Cell[][] = settings.map(() => []);
        for (let round = 0; round < rounds; round += 1) {
          const requests = await requestsFor(workload, round, clients);
          for (let k = 0; k < servers.length; k += 1) {
            const index = (round + k) % servers.length;
            const before = await cpuSnapshot();
            const run = await drive(servers[index]!, requests, clients);
            const load = cpuLoadBetween(before, await cpuSnapshot(), os.cpus().length);
            cells[index]!.push({ pairsPerSecond: run.pairs / run.seconds, p50Ms: latencyPercentiles(run.latenciesMs).p50Ms, otherCpus: load.otherCpus });
          }
        }
        settings.forEach((setting, index) => {
          const mine = cells[index]!;
          const ratios = mine.map((cell, round) => cell.pairsPerSecond / cells[0]![round]!.pairsPerSecond);
          const verdict = index === 0 ? 'baseline' : ratioVerdict(ratios, fasterAt);
          console.log(
            [
              workload.padEnd(8),
              String(clients).padEnd(7),
              setting.label.padEnd(12),
              fmt(median(mine.map((c) => c.pairsPerSecond))).padStart(7),
              fmt(median(mine.map((c) => c.p50Ms)), 0).padStart(6),
              `${fmt(median(ratios), 3)} (${fmt(Math.min(...ratios), 3)}–${fmt(Math.max(...ratios), 3)})`.padEnd(28),
              `${verdict}; others' CPUs ≤ ${fmt(Math.max(...mine.map((c) => c.otherCpus)), 2)}`,
            ].join('  '),
          );
        });
      }
    }
  } finally {
    await Promise.all(servers.map((server) => server.close()));
  }
}

await main();
