/**
 * LLM-reranker benchmark: the prepared graph, batched, against the naive loop over the full-vocabulary graph.
 *
 *   npm run bench:llm [-- --pairs 48 --vocab 65536,262144 --shape small --batch 16 --min 32 --max 160]
 *
 * A generated Qwen3-shaped random decoder (`small`: hidden 256, 4 layers, 8 query / 2 key-value heads) at two
 * vocabulary sizes. The same pairs (token rows of `min`..`max` tokens, a prompt's length) are scored twice, each
 * in its own child process (bench/llm-child.ts) so each peak RSS is its own:
 *  - prepared: the graph `rerank-server models prepare` leaves (yes_no_logits [batch, 2]), length-sorted
 *    left-padded batches of `batch`;
 *  - naive: the export as optimum writes it (logits [1, seq, vocab]), one pair at a time, the last position's
 *    yes logit picked by hand.
 * Reports pairs/s of each and their ratio, RSS after load, peak RSS, and the RSS a run adds on top of the
 * loaded model (weights grow with the vocabulary in both; what running costs must not, for the prepared graph).
 * Models are generated once into .bench/llm (about 1 GB) and reused; delete it after changing the generator.
 */
import { execFile } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { SeededRandom } from '../server/modelgen/graph.ts';
import { decoderTokenIds, DECODER_SHAPES, generateDecoderModel, type DecoderShape, type DecoderTokenIds } from '../server/modelgen/index.ts';
import type { ChildResult, PairsFile } from './llm-child.ts';
import { fmt } from './stats.ts';
import { Targets } from './targets.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    pairs: { type: 'string', default: '48' },
    vocab: { type: 'string', default: '65536,262144' },
    shape: { type: 'string', default: 'small' },
    batch: { type: 'string', default: '16' },
    min: { type: 'string', default: '32' },
    max: { type: 'string', default: '160' },
  },
});

const SPEEDUP_TARGET = 3;
/** Run memory of the prepared graph may differ between the vocabulary sizes by this much (allocator noise). */
const FLAT_MB = 16;
const AGREEMENT = 1e-3;

const vocabs = args.vocab.split(',').map(Number);
const shape = args.shape as DecoderShape;
if (!Object.hasOwn(DECODER_SHAPES, shape)) throw new Error(`--shape must be one of ${Object.keys(DECODER_SHAPES).join(', ')}`);
if (vocabs.length !== 2 || vocabs.some((v) => !Number.isInteger(v))) throw new Error('--vocab takes two sizes, e.g. 65536,262144');
const workDir = path.join(root, '.bench', 'llm');
await mkdir(workDir, { recursive: true });

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** Generated once per (shape, vocab, form) and kept in .bench/llm: same options, same bytes. */
async function model(vocabSize: number, form: 'full' | 'prepared'): Promise<{ modelPath: string; cached: boolean }> {
  const outDir = path.join(workDir, `qwen3-${shape}-v${vocabSize}-${form}`);
  const modelPath = path.join(outDir, 'model.onnx');
  if (await exists(modelPath)) return { modelPath, cached: true };
  await generateDecoderModel({ flavour: 'qwen3', shape, vocabSize, form, withPast: true, outDir });
  return { modelPath, cached: false };
}

function workload(count: number, min: number, max: number, ids: DecoderTokenIds): PairsFile {
  const random = new SeededRandom(11);
  const rows = Array.from({ length: count }, () => Array.from({ length: min + Math.floor(random.uniform() * (max - min + 1)) }, () => 4 + Math.floor(random.uniform() * (ids.tokenizerSize - 16))));
  return { rows, yesTokenId: ids.yesTokenId, noTokenId: ids.noTokenId, padTokenId: ids.padTokenId };
}

const run = promisify(execFile);

async function child(mode: 'prepared' | 'naive', modelPath: string, pairsPath: string): Promise<ChildResult> {
  const { stdout } = await run(process.execPath, [path.join(root, 'bench', 'llm-child.ts'), '--mode', mode, '--model', modelPath, '--pairs', pairsPath, '--batch', args.batch], {
    maxBuffer: 64 * 2 ** 20,
  });
  return JSON.parse(stdout.trim().split('\n').pop() as string) as ChildResult;
}

const targets = new Targets();
const pairCount = Number(args.pairs);
console.log(`LLM reranker: ${pairCount} pairs of ${args.min}-${args.max} tokens, qwen3-shaped random decoder "${shape}" (${JSON.stringify(DECODER_SHAPES[shape])})`);
console.log('prepared = cut graph, length-sorted left-padded batches of', args.batch, '| naive = full-vocabulary graph, one pair at a time\n');

const ids = decoderTokenIds('qwen3');
const rows: { vocab: number; prepared: ChildResult; naive: ChildResult; diff: number }[] = [];
for (const vocab of vocabs) {
  const started = performance.now();
  const full = await model(vocab, 'full');
  const prepared = await model(vocab, 'prepared');
  if (!full.cached || !prepared.cached) console.log(`generated vocab ${vocab} models in ${fmt((performance.now() - started) / 1000)} s (kept in ${workDir})`);
  const pairsPath = path.join(workDir, `pairs-${vocab}.json`);
  await writeFile(pairsPath, JSON.stringify(workload(pairCount, Number(args.min), Number(args.max), ids)));
  const p = await child('prepared', prepared.modelPath, pairsPath);
  const n = await child('naive', full.modelPath, pairsPath);
  const diff = Math.max(...p.yes.map((y, i) => Math.abs(y - (n.yes[i] as number))));
  rows.push({ vocab, prepared: p, naive: n, diff });
  console.log(`vocab ${vocab}:`);
  for (const r of [p, n]) {
    console.log(
      `  ${r.mode.padEnd(8)} ${fmt(r.pairsPerSecond, 2).padStart(8)} pairs/s  ${fmt(r.seconds, 2)} s  ` +
        `RSS loaded ${fmt(r.loadedMb, 0)} MB, peak ${fmt(r.peakMb, 0)} MB, run adds ${fmt(r.runMb, 0)} MB`,
    );
  }
  const speedup = p.pairsPerSecond / n.pairsPerSecond;
  console.log(`  speedup ${fmt(speedup, 2)}x ${targets.check(`speedup at vocab ${vocab}`, speedup, '>=', SPEEDUP_TARGET, 'x')}`);
  console.log(`  max |prepared - naive| yes logit ${diff.toExponential(2)} ${targets.check(`scores agree at vocab ${vocab}`, diff, '<=', AGREEMENT)}\n`);
}

const [small, large] = rows as [(typeof rows)[0], (typeof rows)[0]];
const preparedGrowth = large.prepared.runMb - small.prepared.runMb;
const naiveGrowth = large.naive.runMb - small.naive.runMb;
console.log(`run memory from vocab ${small.vocab} to ${large.vocab}: prepared ${fmt(preparedGrowth, 0)} MB, naive ${fmt(naiveGrowth, 0)} MB`);
console.log(`  ${targets.check('prepared run memory growth with the vocabulary', Math.abs(preparedGrowth), '<=', FLAT_MB, ' MB')}`);
console.log(
  `peak RSS (weights included) from vocab ${small.vocab} to ${large.vocab}: prepared ${fmt(small.prepared.peakMb, 0)} -> ${fmt(large.prepared.peakMb, 0)} MB, ` +
    `naive ${fmt(small.naive.peakMb, 0)} -> ${fmt(large.naive.peakMb, 0)} MB`,
);
await writeFile(path.join(workDir, 'llm.json'), JSON.stringify(rows.map((r) => ({ ...r, prepared: { ...r.prepared, yes: undefined }, naive: { ...r.naive, yes: undefined } })), null, 2));
targets.report();
