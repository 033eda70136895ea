import { readFile } from 'node:fs/promises';
import path from 'node:path';
import ort from 'onnxruntime-node';

/**
 * An independent yes/no scorer for decoder-only LLM rerankers, for checking batched serving against:
 * one token sequence at a time, no padding, the full-vocabulary graph's logits [1, seq, vocab], and the
 * last token's `yes` / `no` columns picked by hand. Nothing here is shared with the engine or with the
 * graph cut, so agreement means both are right.
 */

export type PaddingSide = 'left' | 'right';
export type Normalisation = 'logit' | 'softmax';

export interface DecoderGeometry {
  /** `past_key_values.*` inputs of the graph (fed empty); none for an export without past. */
  pastInputs: string[];
  numKvHeads: number;
  headDim: number;
}

export interface YesNoLogits {
  yes: number;
  no: number;
}

/** The score a reranker reports: the yes logit, or P(yes) from a softmax over (yes, no). */
export function normalise(logits: YesNoLogits, mode: Normalisation): number {
  if (mode === 'logit') return logits.yes;
  const top = Math.max(logits.yes, logits.no);
  const yes = Math.exp(logits.yes - top);
  return yes / (yes + Math.exp(logits.no - top));
}

/** Key/value geometry from config.json (num_key_value_heads, head_dim or hidden_size / num_attention_heads). */
export async function decoderGeometry(modelDir: string, session: ort.InferenceSession): Promise<DecoderGeometry> {
  const config = JSON.parse(await readFile(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, number>;
  const numHeads = config.num_attention_heads as number;
  return {
    pastInputs: session.inputNames.filter((name) => name.startsWith('past_key_values.')),
    numKvHeads: config.num_key_value_heads ?? numHeads,
    headDim: config.head_dim ?? (config.hidden_size as number) / numHeads,
  };
}

function int64(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), (v) => BigInt(v)), [rows.length, rows[0]?.length ?? 0]);
}

/**
 * Feeds for token-id rows padded to the longest on `side`. Position ids follow Hugging Face's
 * `cumsum(attention_mask) - 1` (1 on padding), so a row's real tokens are numbered from 0 wherever they sit.
 */
export function paddedFeeds(rows: number[][], options: { side: PaddingSide; padId: number; geometry: DecoderGeometry }): Record<string, ort.Tensor> {
  const width = Math.max(...rows.map((r) => r.length));
  const ids: number[][] = [];
  const mask: number[][] = [];
  const positions: number[][] = [];
  for (const row of rows) {
    const pad = width - row.length;
    const padIds = Array<number>(pad).fill(options.padId);
    const real = row.map((_, i) => i);
    if (options.side === 'left') {
      ids.push([...padIds, ...row]);
      mask.push([...Array<number>(pad).fill(0), ...row.map(() => 1)]);
      positions.push([...Array<number>(pad).fill(1), ...real]);
    } else {
      ids.push([...row, ...padIds]);
      mask.push([...row.map(() => 1), ...Array<number>(pad).fill(0)]);
      positions.push([...real, ...Array<number>(pad).fill(1)]);
    }
  }
  const feeds: Record<string, ort.Tensor> = { input_ids: int64(ids), attention_mask: int64(mask), position_ids: int64(positions) };
  const { numKvHeads, headDim, pastInputs } = options.geometry;
  for (const name of pastInputs) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [rows.length, numKvHeads, 0, headDim]);
  return feeds;
}

/** The reference: a full-vocabulary graph run on one unpadded sequence at a time. */
export class DecoderReference {
  readonly #session: ort.InferenceSession;
  readonly #geometry: DecoderGeometry;

  private constructor(session: ort.InferenceSession, geometry: DecoderGeometry) {
    this.#session = session;
    this.#geometry = geometry;
  }

  /** `modelPath` must be an un-cut graph (output `logits` [batch, seq, vocab]); config.json beside it. */
  static async load(modelPath: string): Promise<DecoderReference> {
    const session = await ort.InferenceSession.create(modelPath);
    if (!session.outputNames.includes('logits')) throw new Error(`${modelPath} has no logits output: the reference needs the full-vocabulary graph`);
    return new DecoderReference(session, await decoderGeometry(path.dirname(modelPath), session));
  }

  /** Logits of `yesId` and `noId` after the last token of `ids`. */
  async yesNo(ids: number[], yesId: number, noId: number): Promise<YesNoLogits> {
    if (ids.length === 0) throw new Error('empty sequence');
    const { logits } = await this.#session.run(paddedFeeds([ids], { side: 'right', padId: 0, geometry: this.#geometry }), ['logits']);
    if (!logits) throw new Error('no logits');
    const [batch, seq, vocab] = logits.dims as [number, number, number];
    if (batch !== 1 || seq !== ids.length) throw new Error(`logits [${logits.dims.join(', ')}] for one sequence of ${ids.length}`);
    const data = logits.data as Float32Array;
    const last = (seq - 1) * vocab;
    return { yes: data[last + yesId] as number, no: data[last + noId] as number };
  }

  async release(): Promise<void> {
    await this.#session.release();
  }
}
