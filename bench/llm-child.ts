/**
 * One side of the LLM-reranker benchmark, in its own process so its peak RSS is its own:
 *
 *   node bench/llm-child.ts --mode prepared|naive --model DIR/model.onnx --pairs pairs.json [--batch 16]
 *
 * `prepared`: the cut graph (yes_no_logits [batch, 2]) over length-sorted, left-padded batches of `batch`.
 * `naive`: the full-vocabulary graph, one pair at a time, the last position's yes/no logits picked by hand.
 * Prints one JSON line: pairs/s, RSS after load, peak RSS, the largest RSS seen after a run, and the scores.
 */
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { decoderGeometry, paddedFeeds } from '../test/support/llm-reference.ts';

export interface ChildResult {
  mode: 'prepared' | 'naive';
  pairs: number;
  seconds: number;
  pairsPerSecond: number;
  /** RSS once the session is created, before any run. */
  loadedMb: number;
  /** getrusage's maxrss: the process's peak, load included. */
  peakMb: number;
  /** Largest RSS seen after a run, less `loadedMb`: the memory running takes. */
  runMb: number;
  /** Yes logit of each pair, in the pairs file's order. */
  yes: number[];
}

export interface PairsFile {
  rows: number[][];
  yesTokenId: number;
  noTokenId: number;
  padTokenId: number;
}

const mb = (bytes: number): number => bytes / 2 ** 20;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { mode: { type: 'string' }, model: { type: 'string' }, pairs: { type: 'string' }, batch: { type: 'string', default: '16' } },
  });
  const mode = values.mode;
  if ((mode !== 'prepared' && mode !== 'naive') || !values.model || !values.pairs) throw new Error('usage: --mode prepared|naive --model FILE --pairs FILE');
  const work = JSON.parse(await readFile(values.pairs, 'utf8')) as PairsFile;
  const session = await ort.InferenceSession.create(values.model);
  const geometry = await decoderGeometry(path.dirname(values.model), session);
  const loaded = process.memoryUsage().rss;
  let runPeak = loaded;
  const yes = new Array<number>(work.rows.length).fill(Number.NaN);

  let batches: number[][];
  if (mode === 'prepared') {
    const order = work.rows.map((_, i) => i).sort((a, b) => (work.rows[a] as number[]).length - (work.rows[b] as number[]).length);
    const size = Number(values.batch);
    batches = [];
    for (let i = 0; i < order.length; i += size) batches.push(order.slice(i, i + size));
  } else {
    batches = work.rows.map((_, i) => [i]);
  }

  const runBatch = async (batch: number[]): Promise<void> => {
    const rows = batch.map((i) => work.rows[i] as number[]);
    const feeds = paddedFeeds(rows, { side: 'left', padId: work.padTokenId, geometry });
    if (mode === 'prepared') {
      const out = (await session.run(feeds, ['yes_no_logits'])).yes_no_logits as ort.Tensor;
      const data = out.data as Float32Array;
      batch.forEach((i, k) => (yes[i] = data[k * 2] as number));
    } else {
      const logits = (await session.run(feeds, ['logits'])).logits as ort.Tensor;
      const [, seq, vocab] = logits.dims as [number, number, number];
      yes[batch[0] as number] = (logits.data as Float32Array)[(seq - 1) * vocab + work.yesTokenId] as number;
    }
    runPeak = Math.max(runPeak, process.memoryUsage().rss);
  };

  // One warm-up run (the longest batch: it sizes the arena), not timed.
  await runBatch(batches.reduce((a, b) => (Math.max(...a.map((i) => (work.rows[i] as number[]).length)) >= Math.max(...b.map((i) => (work.rows[i] as number[]).length)) ? a : b)));
  const started = performance.now();
  for (const batch of batches) await runBatch(batch);
  const seconds = (performance.now() - started) / 1000;
  const result: ChildResult = {
    mode,
    pairs: work.rows.length,
    seconds,
    pairsPerSecond: work.rows.length / seconds,
    loadedMb: mb(loaded),
    peakMb: process.resourceUsage().maxRSS / 1024,
    runMb: mb(runPeak - loaded),
    yes,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
