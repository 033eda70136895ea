import ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import type { HeadType, Normalization, PaddingSide } from '../config/head.ts';
import { fillInputs, InputBuffers, type FlatBatch } from './batch-inputs.ts';
import { CausalLmGraph } from './causal-lm-graph.ts';

/**
 * The graph side of a scoring head: what a session feeds a batch with and how it reads one logit per pair
 * from the graph's output. The session (onnx-model.ts) runs whichever head its version has; the
 * tokenizing side of the head is in scoring-head.ts.
 */

/** `batch1`: logits are `[batch, 1]`; `batch`: `[batch]`. */
export type LogitsLayout = 'batch1' | 'batch';
/** A causal LM's output: the whole vocabulary at every position, or the prepared yes/no logits of the last one. */
export type CausalLmForm = 'full-vocabulary' | 'prepared';

/** What a session needs to know of its head: plain data, so it crosses to the model worker. */
export type GraphHeadSpec = { type: 'cross-encoder' } | CausalLmGraphSpec;

export interface CausalLmGraphSpec {
  type: 'causal-lm-yes-no';
  yesId: number;
  /** Absent: a `logit` head with no "no" token. */
  noId?: number;
  normalize: Normalization;
  paddingSide: PaddingSide;
  /** Key/value heads and head size from config.json, for past_key_values inputs whose shape the graph leaves symbolic. */
  past?: { kvHeads: number; headDim: number };
}

/** What the graph is, as the session found it (logged, and shown in `/info`). */
export interface GraphForm {
  head: HeadType;
  /** Graph input names. */
  inputs: string[];
  /** The graph takes `token_type_ids` (BERT); XLM-R style graphs and decoders do not. */
  takesTypeIds: boolean;
  outputName: string;
  /** Cross-encoders: how the one logit per pair is laid out. */
  logits?: LogitsLayout;
  /** Causal LMs: which output form runs. */
  form?: CausalLmForm;
}

export interface GraphHead {
  readonly form: GraphForm;
  /** The inputs of one batch, in buffers the head reuses: valid until the next call. */
  feeds(batch: FlatBatch): Record<string, ort.Tensor>;
  /** One raw logit per pair, in batch order, from the output tensor. */
  logits(output: ort.Tensor, batch: FlatBatch): Float32Array;
}

/** The graph head for a session: checks that the graph is what the head reads, with errors that say what to change. */
export function createGraphHead(session: InferenceSession, spec: GraphHeadSpec, options: { padId: number; metadata: Record<string, string> }): GraphHead {
  return spec.type === 'cross-encoder' ? new CrossEncoderGraph(session, options.padId) : new CausalLmGraph(session, spec, options);
}

/** A classification head: input_ids, attention_mask (and token_type_ids) right-padded; one logit per pair out. */
class CrossEncoderGraph implements GraphHead {
  readonly form: GraphForm;
  readonly #padId: number;
  readonly #buffers = new InputBuffers();

  constructor(session: InferenceSession, padId: number) {
    this.#padId = padId;
    const inputs = [...session.inputNames];
    for (const required of ['input_ids', 'attention_mask']) {
      if (!inputs.includes(required)) throw new Error(`the graph has no ${required} input (inputs: ${inputs.join(', ')})`);
    }
    const unknown = inputs.filter((name) => !['input_ids', 'attention_mask', 'token_type_ids'].includes(name));
    if (unknown.length > 0) {
      const decoder = unknown.includes('position_ids') || unknown.some((name) => name.startsWith('past_key_values.'));
      throw new Error(
        `the graph takes inputs this server cannot feed: ${unknown.join(', ')}` +
          (decoder ? ' (a causal LM: give the version head type causal-lm-yes-no with its template)' : ''),
      );
    }
    const outputName = session.outputNames.includes('logits') ? 'logits' : session.outputNames[0];
    if (outputName === undefined) throw new Error('the graph has no outputs');
    const meta = session.outputMetadata.find((m) => m.name === outputName);
    let logits: LogitsLayout = 'batch1';
    if (meta?.isTensor) {
      if (meta.type !== 'float32') throw new Error(`output ${outputName} is ${meta.type}; float32 logits expected`);
      const dims = meta.shape;
      if (dims.length === 1) logits = 'batch';
      else if (dims.length !== 2 || (typeof dims[1] === 'number' && dims[1] !== 1)) {
        throw new Error(
          `output ${outputName} has shape [${dims.join(', ')}]; [batch, 1] or [batch] expected (one relevance logit per pair)` +
            (dims.length === 3 ? '; [batch, seq, vocab] is a causal LM: give the version head type causal-lm-yes-no' : ''),
        );
      }
    }
    this.form = { head: 'cross-encoder', inputs, takesTypeIds: inputs.includes('token_type_ids'), outputName, logits };
  }

  feeds(batch: FlatBatch): Record<string, ort.Tensor> {
    const withTypes = this.form.takesTypeIds;
    const size = fillInputs(batch, this.#padId, this.#buffers, withTypes);
    const dims = [batch.count, batch.width];
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', this.#buffers.ids.subarray(0, size), dims),
      attention_mask: new ort.Tensor('int64', this.#buffers.mask.subarray(0, size), dims),
    };
    if (withTypes) feeds.token_type_ids = new ort.Tensor('int64', this.#buffers.types.subarray(0, size), dims);
    return feeds;
  }

  logits(output: ort.Tensor, batch: FlatBatch): Float32Array {
    const data = output.data;
    if (!(data instanceof Float32Array) || data.length !== batch.count) {
      throw new Error(`output ${this.form.outputName} has shape [${output.dims.join(', ')}] for ${batch.count} pairs; one logit per pair expected`);
    }
    return Float32Array.from(data);
  }
}
