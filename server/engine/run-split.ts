import type { FlatBatch } from './batch-inputs.ts';

/**
 * On CPU a batch runs as several onnxruntime runs of a few thousand padded tokens each.
 *
 * What a run holds in memory grows with its padded tokens times its width: the attention scores alone are
 * pairs × heads × width² floats, several times over (scores, masked scores, softmax), so a batch at the full
 * token budget (16 384 tokens of 512) holds over a gigabyte of activations, and onnxruntime's arena keeps
 * its largest size for the life of the session. Matrix products on a CPU reach their speed long before that
 * (a run of 2 048 tokens is still 2 048 rows), and the element-wise work on activations that fit the caches
 * runs faster: measured on the RAG workload (bench/int8.bench.ts), runs of 2 048 tokens score as many pairs
 * per CPU-second as whole 16 384-token batches, or more, in float32 and int8 alike, with a fraction of the
 * memory. So the queue keeps packing batches under `maxBatchTokens` (for latency and admission), and the CPU
 * session runs each batch in slices; on CUDA a batch is one run, as the GPU wants.
 */

/** Padded tokens of one CPU run, unless a session or RERANK_CPU_RUN_TOKENS says otherwise. */
export const CPU_RUN_TOKENS = 2048;

/**
 * Past this width a run is bounded by its attention scores (pairs × width² per head) rather than its
 * tokens: at most as many as `maxTokens` pairs of this width hold. Runs of 2048 tokens of 512 held four
 * pairs (50 MB per attention tensor at 12 heads); bounded so they hold one, and a RAG run's peak memory
 * fell by some 190 MB at the same pairs per CPU-second.
 */
export const ATTENTION_WIDTH = 128;

/** Whether `count` pairs padded to `width` fit one run of `maxTokens`: their tokens, and past ATTENTION_WIDTH their attention scores. */
export function fitsRun(count: number, width: number, maxTokens: number): boolean {
  return count * width * Math.max(width, ATTENTION_WIDTH) <= maxTokens * ATTENTION_WIDTH;
}

/**
 * The run size of CPU sessions: RERANK_CPU_RUN_TOKENS (a whole number of tokens, or `off`: one run per
 * batch), else CPU_RUN_TOKENS. A value that is neither is an error naming the variable.
 */
export function cpuRunTokensSetting(env: Record<string, string | undefined> = process.env): number {
  const value = env.RERANK_CPU_RUN_TOKENS?.trim();
  if (value === undefined || value === '') return CPU_RUN_TOKENS;
  if (value === 'off') return Infinity;
  const tokens = Number(value);
  if (!Number.isInteger(tokens) || tokens < 1) throw new Error(`RERANK_CPU_RUN_TOKENS must be a whole number of tokens (at least 1) or "off", got "${value}"`);
  return tokens;
}

/**
 * The runs a batch goes as: indexes of its pairs, longest first, each run filled while it fits (`fitsRun`:
 * pairs × its longest within `maxTokens`, and pairs × its longest² within `maxTokens` × ATTENTION_WIDTH).
 * A pair that fits no run runs alone.
 *
 * @example planRuns([10, 300, 20, 290, 100], 600) // [[1], [3], [4, 2, 0]]
 */
export function planRuns(lengths: ArrayLike<number>, maxTokens: number): number[][] {
  const order = Array.from({ length: lengths.length }, (_, i) => i).sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
  const runs: number[][] = [];
  let run: number[] = [];
  let width = 0;
  for (const index of order) {
    if (run.length > 0 && !fitsRun(run.length + 1, width, maxTokens)) {
      runs.push(run);
      run = [];
    }
    if (run.length === 0) width = lengths[index] as number;
    run.push(index);
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** The pairs at `indexes` of a flat batch, in that order, as a flat batch of their own. */
export function sliceFlatBatch(batch: FlatBatch, indexes: readonly number[]): FlatBatch {
  const offsets = new Int32Array(batch.count + 1);
  for (let i = 0; i < batch.count; i += 1) offsets[i + 1] = (offsets[i] as number) + (batch.lengths[i] as number);
  const lengths = new Int32Array(indexes.length);
  let total = 0;
  let width = 0;
  indexes.forEach((index, i) => {
    const length = batch.lengths[index] as number;
    lengths[i] = length;
    total += length;
    if (length > width) width = length;
  });
  const ids = new Int32Array(total);
  const typeIds = batch.typeIds ? new Uint8Array(total) : undefined;
  let at = 0;
  for (const index of indexes) {
    const start = offsets[index] as number;
    const end = offsets[index + 1] as number;
    ids.set(batch.ids.subarray(start, end), at);
    if (typeIds && batch.typeIds) typeIds.set(batch.typeIds.subarray(start, end), at);
    at += end - start;
  }
  const count = indexes.length;
  return typeIds ? { count, width, lengths, ids, typeIds } : { count, width, lengths, ids };
}
