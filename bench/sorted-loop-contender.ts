import { OnnxSession, flattenBatch } from '../server/engine/onnx-model.ts';
import type { EncodedPair, PairTokenizer } from '../server/engine/pair-tokenizer.ts';
import type { Contender } from './contender.ts';
import type { RerankWorkloadRequest } from './workload.ts';

/**
 * A hand-written length-sorted onnxruntime loop: what a careful user writes without a server. Each request
 * is tokenized (the server's tokenizer), its pairs sorted by length and cut into consecutive batches under
 * the same limits the server has (padded slots ≤ maxBatchTokens, pairs ≤ maxBatchSize), and each batch
 * run with one `session.run`. One run at a time (the session serializes them), so concurrent requests
 * interleave their batches.
 *
 * `sliced: true` gives the loop the server's own CPU run slicing (run-split.ts: each batch run as slices of
 * RERANK_CPU_RUN_TOKENS, attention-bounded past 128 tokens), which no hand-written loop has: the same
 * kernels the server runs, one after another, with no queue, HTTP or process around them. Against it the
 * server's figures are its own overhead; against the plain loop, what a user gains from the server.
 */

export interface LoopLimits {
  maxLength: number;
  maxBatchTokens: number;
  maxBatchSize: number;
}

/** Indices of `lengths` sorted longest first, cut into consecutive batches under the limits. */
export function lengthSortedBatches(lengths: readonly number[], limits: Pick<LoopLimits, 'maxBatchTokens' | 'maxBatchSize'>): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
  const batches: number[][] = [];
  let current: number[] = [];
  let width = 0;
  for (const index of order) {
    const length = lengths[index] as number;
    const nextWidth = Math.max(width, length);
    if (current.length > 0 && (current.length >= limits.maxBatchSize || (current.length + 1) * nextWidth > limits.maxBatchTokens)) {
      batches.push(current);
      current = [];
    }
    width = current.length === 0 ? length : Math.max(width, length);
    current.push(index);
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export class SortedLoopContender implements Contender {
  readonly name: string;
  readonly #session: OnnxSession;
  readonly #tokenizer: PairTokenizer;
  readonly #limits: LoopLimits;
  #slots = 0;
  #tokens = 0;

  private constructor(name: string, session: OnnxSession, tokenizer: PairTokenizer, limits: LoopLimits) {
    this.name = name;
    this.#session = session;
    this.#tokenizer = tokenizer;
    this.#limits = limits;
  }

  static async load(options: { name: string; modelPath: string; tokenizer: PairTokenizer; limits: LoopLimits; sliced: boolean }): Promise<SortedLoopContender> {
    const session = await OnnxSession.load({
      modelPath: options.modelPath,
      device: 'cpu',
      padId: options.tokenizer.padId,
      // One run per batch, as `session.run` on the batch; else the server's slicing (RERANK_CPU_RUN_TOKENS or its default).
      ...(options.sliced ? {} : { cpuRunTokens: Infinity }),
    });
    return new SortedLoopContender(options.name, session, options.tokenizer, options.limits);
  }

  async score(request: RerankWorkloadRequest): Promise<Float32Array> {
    const withTypeIds = this.#session.description.takesTypeIds;
    const pairs = await this.#tokenizer.encodePairs(request.query, request.documents, { maxLength: this.#limits.maxLength, withTypeIds });
    const logits = new Float32Array(pairs.length);
    for (const batch of lengthSortedBatches(pairs.map((p) => p.length), this.#limits)) {
      const flat = flattenBatch(batch.map((i) => pairs[i] as EncodedPair), withTypeIds);
      const result = await this.#session.runFlat(flat);
      batch.forEach((pairIndex, row) => (logits[pairIndex] = result.logits[row] as number));
      this.#slots += flat.count * flat.width;
      for (const length of flat.lengths) this.#tokens += length;
    }
    return logits;
  }

  async padding(): Promise<{ slots: number; tokens: number }> {
    return { slots: this.#slots, tokens: this.#tokens };
  }

  close(): Promise<void> {
    return this.#session.release();
  }
}
