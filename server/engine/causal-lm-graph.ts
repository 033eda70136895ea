import ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { DecoderBuffers, fillDecoderInputs, type FlatBatch } from './batch-inputs.ts';
import type { CausalLmGraphSpec, GraphForm, GraphHead } from './graph-head.ts';

/**
 * The graph side of a `causal-lm-yes-no` head: a decoder-only LM as `optimum-cli export onnx --task
 * text-generation[-with-past]` writes it, run once over each padded prompt (never generating).
 *
 * Inputs: input_ids and attention_mask padded on the configured side, position_ids (the mask's running sum
 * minus one, clipped at 0), `past_key_values.{i}.key/value` empty ([batch, kv_heads, 0, head_dim]) when the
 * graph has them, and `use_cache_branch` false for optimum's merged decoders. Output, either:
 * - `yes_no_logits` [batch, 2] (yes, no) of a graph cut by `rerank-server models prepare`: the last real
 *   position and the two columns are gathered inside the graph; or
 * - `logits` [batch, seq, vocab] of an un-cut export (the full-vocabulary form): the last real position's
 *   row is read here. ORT still materializes batch × seq × vocab floats, which is why `models prepare` exists.
 *
 * One raw logit per pair comes out: the yes logit (`normalize: logit`), or yes − no (`softmax`), whose
 * sigmoid — the engine's normalized score — is P(yes) of a softmax over (no, yes).
 */

export const PREPARED_OUTPUT = 'yes_no_logits';
/** metadata_props of a prepared graph (server/models/prepare-graph.ts writes them). */
export const PREPARED_METADATA = { form: 'rerank.prepared', yes: 'rerank.yes_token_id', no: 'rerank.no_token_id' } as const;

const PAST = /^past_key_values\.(\d+)\.(key|value)$/;
const FLOAT_TYPES = new Set(['float32', 'float16']);

interface PastInput {
  name: string;
  type: 'float32' | 'float16';
  kvHeads: number;
  headDim: number;
}

export class CausalLmGraph implements GraphHead {
  readonly form: GraphForm;
  readonly #spec: CausalLmGraphSpec;
  readonly #padId: number;
  readonly #buffers = new DecoderBuffers();
  readonly #pasts: PastInput[];
  readonly #takesPositions: boolean;
  readonly #takesCacheBranch: boolean;

  constructor(session: InferenceSession, spec: CausalLmGraphSpec, options: { padId: number; metadata: Record<string, string> }) {
    this.#spec = spec;
    this.#padId = options.padId;
    const inputs = [...session.inputNames];
    for (const required of ['input_ids', 'attention_mask']) {
      if (!inputs.includes(required)) throw new Error(`the graph has no ${required} input (inputs: ${inputs.join(', ')})`);
    }
    const unknown = inputs.filter((name) => !['input_ids', 'attention_mask', 'position_ids', 'use_cache_branch'].includes(name) && !PAST.test(name));
    if (unknown.length > 0) {
      const encoder = unknown.includes('token_type_ids');
      throw new Error(
        `the graph takes inputs a causal-lm-yes-no head cannot feed: ${unknown.join(', ')}` + (encoder ? ' (an encoder cross-encoder: give the version head type cross-encoder)' : ''),
      );
    }
    this.#takesPositions = inputs.includes('position_ids');
    this.#takesCacheBranch = inputs.includes('use_cache_branch');
    this.#pasts = session.inputMetadata.filter((m) => PAST.test(m.name)).map((m) => pastInput(m, spec));

    const prepared = session.outputNames.includes(PREPARED_OUTPUT);
    const outputName = prepared ? PREPARED_OUTPUT : 'logits';
    if (!session.outputNames.includes(outputName)) {
      throw new Error(`the graph has neither ${PREPARED_OUTPUT} nor logits outputs (outputs: ${session.outputNames.join(', ')}); is it a causal-LM export?`);
    }
    const meta = session.outputMetadata.find((m) => m.name === outputName);
    if (meta?.isTensor) {
      if (!FLOAT_TYPES.has(meta.type)) throw new Error(`output ${outputName} is ${meta.type}; float32 or float16 expected`);
      const dims = meta.shape;
      if (prepared && (dims.length !== 2 || (typeof dims[1] === 'number' && dims[1] !== 2))) {
        throw new Error(`output ${outputName} has shape [${dims.join(', ')}]; [batch, 2] (yes, no) expected`);
      }
      if (!prepared) {
        if (dims.length !== 3) {
          throw new Error(
            `output logits has shape [${dims.join(', ')}]; [batch, seq, vocab] expected of a causal LM` +
              (dims.length <= 2 ? ' (one logit per pair is a classification head: give the version head type cross-encoder)' : ''),
          );
        }
        const vocab = dims[2];
        for (const [role, id] of [['yes', spec.yesId], ['no', spec.noId]] as const) {
          if (id !== undefined && typeof vocab === 'number' && id >= vocab) throw new Error(`the ${role} token id ${id} is outside the graph's vocabulary (${vocab} logits)`);
        }
      }
    }
    if (prepared) checkPreparedFor(options.metadata, spec);
    this.form = { head: 'causal-lm-yes-no', inputs, takesTypeIds: false, outputName, form: prepared ? 'prepared' : 'full-vocabulary' };
  }

  feeds(batch: FlatBatch): Record<string, ort.Tensor> {
    const size = fillDecoderInputs(batch, this.#padId, this.#spec.paddingSide, this.#buffers);
    const dims = [batch.count, batch.width];
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', this.#buffers.ids.subarray(0, size), dims),
      attention_mask: new ort.Tensor('int64', this.#buffers.mask.subarray(0, size), dims),
    };
    if (this.#takesPositions) feeds.position_ids = new ort.Tensor('int64', this.#buffers.positions.subarray(0, size), dims);
    if (this.#takesCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', [false], [1]);
    for (const past of this.#pasts) {
      const shape = [batch.count, past.kvHeads, 0, past.headDim];
      feeds[past.name] = past.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), shape) : new ort.Tensor('float32', new Float32Array(0), shape);
    }
    return feeds;
  }

  logits(output: ort.Tensor, batch: FlatBatch): Float32Array {
    const values = floats(output);
    const { count, width, lengths } = batch;
    const { yesId, noId, normalize } = this.#spec;
    const out = new Float32Array(count);
    if (this.form.form === 'prepared') {
      if (values.length !== count * 2) throw new Error(`output ${PREPARED_OUTPUT} has shape [${output.dims.join(', ')}] for ${count} pairs; [${count}, 2] expected`);
      for (let row = 0; row < count; row += 1) {
        const yes = values[2 * row] as number;
        out[row] = normalize === 'softmax' ? yes - (values[2 * row + 1] as number) : yes;
      }
      return out;
    }
    const [rows, seq, vocab] = output.dims as [number, number, number];
    if (output.dims.length !== 3 || rows !== count || seq !== width) {
      throw new Error(`output logits has shape [${output.dims.join(', ')}] for ${count} pairs of width ${width}; [${count}, ${width}, vocab] expected`);
    }
    for (let row = 0; row < count; row += 1) {
      // The last real token: the row's end when left-padded, its length − 1 when right-padded.
      const last = this.#spec.paddingSide === 'left' ? seq - 1 : (lengths[row] as number) - 1;
      const base = (row * seq + last) * vocab;
      const yes = values[base + yesId] as number;
      out[row] = normalize === 'softmax' ? yes - (values[base + (noId as number)] as number) : yes;
    }
    return out;
  }
}

function pastInput(meta: InferenceSession.ValueMetadata, spec: CausalLmGraphSpec): PastInput {
  if (!meta.isTensor) throw new Error(`input ${meta.name} is not a tensor`);
  if (!FLOAT_TYPES.has(meta.type)) throw new Error(`input ${meta.name} is ${meta.type}; float32 or float16 expected`);
  const [, heads, , size] = meta.shape;
  const kvHeads = typeof heads === 'number' && heads > 0 ? heads : spec.past?.kvHeads;
  const headDim = typeof size === 'number' && size > 0 ? size : spec.past?.headDim;
  if (meta.shape.length !== 4 || kvHeads === undefined || headDim === undefined) {
    throw new Error(
      `input ${meta.name} has shape [${meta.shape.join(', ')}]: cannot tell its key/value heads and head size (config.json has no num_key_value_heads / head_dim either)`,
    );
  }
  return { name: meta.name, type: meta.type as PastInput['type'], kvHeads, headDim };
}

/** A prepared graph gathered fixed token columns: they must be the head's. */
function checkPreparedFor(metadata: Record<string, string>, spec: CausalLmGraphSpec): void {
  const yes = metadata[PREPARED_METADATA.yes];
  const no = metadata[PREPARED_METADATA.no];
  const wrong: string[] = [];
  if (yes !== undefined && Number(yes) !== spec.yesId) wrong.push(`yes id ${yes} (the head's is ${spec.yesId})`);
  if (no !== undefined && spec.noId !== undefined && Number(no) !== spec.noId) wrong.push(`no id ${no} (the head's is ${spec.noId})`);
  if (wrong.length > 0) {
    throw new Error(`the graph was prepared for other tokens: ${wrong.join(', ')}; prepare it again from the export with this head's tokens, or fix the head`);
  }
}

/** The output as float32 values: fp16 exports give IEEE half floats. */
function floats(output: ort.Tensor): Float32Array {
  const data = output.data;
  if (data instanceof Float32Array) return data;
  if (output.type === 'float16' && data instanceof Uint16Array) return Float32Array.from(data, halfToFloat);
  throw new Error(`output is ${output.type}; float32 or float16 expected`);
}

function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? Number.NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
