import onnxProto from 'onnx-proto';
import { floatTensor, GraphBuilder, intAttr, intsAttr, IR_VERSION, OPSET_VERSION, SeededRandom } from './graph.ts';

/**
 * Builds the ONNX graph of a decoder-only language model in the Llama / Qwen2 / Gemma shape with
 * deterministic random weights: RMSNorm, rotary position embeddings driven by `position_ids`,
 * grouped-query attention under a causal mask combined with `attention_mask`, a SwiGLU MLP, a final
 * RMSNorm and an LM head tied to the token embedding. Its I/O contract is what
 * `optimum-cli export onnx --task text-generation` writes (with `-with-past`: `past_key_values.{i}.*`
 * inputs and `present.{i}.*` outputs), so an LLM reranker's serving path can be tested without weights.
 */

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

export type DecoderShape = 'tiny' | 'small';

export interface DecoderDims {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** Fewer key/value heads than query heads: grouped-query attention. */
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  /** Longest sequence config.json reports (rotary positions have no table, so nothing enforces it). */
  maxPositions: number;
  ropeTheta: number;
  rmsNormEps: number;
}

export const DECODER_SHAPES: Readonly<Record<DecoderShape, DecoderDims>> = {
  tiny: { hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 128, maxPositions: 8192, ropeTheta: 10000, rmsNormEps: 1e-6 },
  small: { hiddenSize: 256, numLayers: 4, numHeads: 8, numKvHeads: 2, headDim: 32, intermediateSize: 768, maxPositions: 8192, ropeTheta: 10000, rmsNormEps: 1e-6 },
};

export interface DecoderGraphSpec {
  dims: DecoderDims;
  vocabSize: number;
  /** With `past_key_values.{i}.key/value` inputs and `present.{i}.key/value` outputs (optimum's `-with-past`). */
  withPast: boolean;
  /** Gemma multiplies the embedded tokens by sqrt(hidden size); Llama and Qwen do not. */
  scaleEmbeddings: boolean;
  seed: number;
  /** Written into the graph's metadata_props (e.g. the flavour). */
  metadata?: Record<string, string>;
}

/** Added to attention scores of masked keys: exp() of it is exactly 0 in float32, and it stays finite in fp16. */
const MASKED_SCORE = -10000;

export function pastKeyName(layer: number, kind: 'key' | 'value'): string {
  return `past_key_values.${layer}.${kind}`;
}

export function presentName(layer: number, kind: 'key' | 'value'): string {
  return `present.${layer}.${kind}`;
}

function checkDims(dims: DecoderDims, vocabSize: number): void {
  if (dims.numHeads % dims.numKvHeads !== 0) throw new Error(`${dims.numHeads} query heads are not a multiple of ${dims.numKvHeads} key/value heads`);
  if (dims.headDim % 2 !== 0) throw new Error(`head dim ${dims.headDim} must be even for rotary embeddings`);
  if (!Number.isInteger(vocabSize) || vocabSize < 2) throw new Error(`vocab size must be an integer >= 2, got ${vocabSize}`);
}

/** The complete ModelProto for a spec. Pure: the same spec gives the same message, and so the same bytes. */
export function buildDecoderProto(spec: DecoderGraphSpec): onnxProto.onnx.ModelProto {
  const { dims, vocabSize } = spec;
  checkDims(dims, vocabSize);
  const { hiddenSize: hidden, headDim: d, numHeads, numKvHeads } = dims;
  const groups = numHeads / numKvHeads;
  const g = new GraphBuilder(new SeededRandom(spec.seed));

  const one = g.int64('const_one', [], [1]);
  const zero = g.int64('const_zero', [], [0]);
  const oneFloat = g.filled('const_one_float', [], 1);
  const maskedScore = g.filled('const_masked_score', [], MASKED_SCORE);
  const epsilon = g.filled('const_rms_eps', [], dims.rmsNormEps);
  const scoreScale = g.filled('const_score_scale', [], 1 / Math.sqrt(d));
  const qShape = g.int64('const_q_shape', [5], [0, 0, numKvHeads, groups, d]);
  const kvShape = g.int64('const_kv_shape', [4], [0, 0, numKvHeads, d]);
  const mergedShape = g.int64('const_merged_shape', [3], [0, 0, numHeads * d]);
  const halfStart = g.int64('const_half_start', [1], [0]);
  const halfMid = g.int64('const_half_mid', [1], [d / 2]);
  const halfEnd = g.int64('const_half_end', [1], [d]);
  const lastAxis = g.int64('const_last_axis', [1], [-1]);
  const axes0 = g.int64('const_axes_0', [1], [0]);
  const axes1 = g.int64('const_axes_1', [1], [1]);
  const axes2 = g.int64('const_axes_2', [1], [2]);
  const axes12 = g.int64('const_axes_1_2', [2], [1, 2]);
  const invFreq = 'const_inv_freq';
  g.initializers.push(floatTensor(invFreq, [d / 2], Float32Array.from({ length: d / 2 }, (_, i) => dims.ropeTheta ** (-(2 * i) / d))));

  const rmsNorm = (x: string, name: string): string => {
    const weight = g.filled(`${name}.weight`, [hidden], 1);
    const meanSquare = g.node('ReduceMean', [g.node('Mul', [x, x], `/${name}`)], `/${name}`, [intsAttr('axes', [-1]), intAttr('keepdims', 1)]);
    const rms = g.node('Sqrt', [g.node('Add', [meanSquare, epsilon], `/${name}`)], `/${name}`);
    return g.node('Mul', [g.node('Div', [x, rms], `/${name}`), weight], `/${name}`);
  };
  const linear = (x: string, name: string, fanIn: number, fanOut: number): string =>
    g.node('MatMul', [x, g.normal(`${name}.weight`, [fanIn, fanOut], 1 / Math.sqrt(fanIn))], `/${name}`);

  // Token embedding, tied with the LM head below. Unit-scale rows keep the tied logits on a readable scale.
  const embedding = g.normal('model.embed_tokens.weight', [vocabSize, hidden], 1 / Math.sqrt(hidden));
  let state = g.node('Gather', [embedding, 'input_ids'], '/model/embed_tokens');
  if (spec.scaleEmbeddings) state = g.node('Mul', [state, g.filled('const_embed_scale', [], Math.sqrt(hidden))], '/model/embed_tokens');

  // Attention bias [batch, 1, 1, seq, total]: query i (absolute slot past + i) sees key j when j <= past + i and
  // attention_mask[j] is 1. Slots, not position ids, order the keys, so padding on either side is only masked.
  const seqLen = g.node('Gather', [g.node('Shape', ['input_ids'], '/mask'), one], '/mask', [intAttr('axis', 0)]);
  const totalLen = g.node('Gather', [g.node('Shape', ['attention_mask'], '/mask'), one], '/mask', [intAttr('axis', 0)]);
  const pastLen = g.node('Sub', [totalLen, seqLen], '/mask');
  const keySlots = g.node('Unsqueeze', [g.node('Range', [zero, totalLen, one], '/mask'), axes0], '/mask'); // [1, total]
  const querySlots = g.node('Unsqueeze', [g.node('Range', [pastLen, totalLen, one], '/mask'), axes1], '/mask'); // [seq, 1]
  const causal = g.node('Cast', [g.node('LessOrEqual', [keySlots, querySlots], '/mask')], '/mask', [intAttr('to', FLOAT)]);
  const padding = g.node('Unsqueeze', [g.node('Cast', ['attention_mask'], '/mask', [intAttr('to', FLOAT)]), axes1], '/mask'); // [batch, 1, total]
  const allowed = g.node('Unsqueeze', [g.node('Mul', [causal, padding], '/mask'), axes12], '/mask');
  const bias = g.node('Mul', [g.node('Sub', [oneFloat, allowed], '/mask'), maskedScore], '/mask');

  // Rotary embeddings (rotate-half form, as Llama, Qwen2 and Gemma): angle = position_id * inv_freq.
  const positions = g.node('Unsqueeze', [g.node('Cast', ['position_ids'], '/rotary', [intAttr('to', FLOAT)]), axes2], '/rotary'); // [b, s, 1]
  const freqs = g.node('Mul', [positions, invFreq], '/rotary');
  const angles = g.node('Concat', [freqs, freqs], '/rotary', [intAttr('axis', -1)]); // [b, s, d]
  const cos = g.node('Cos', [angles], '/rotary');
  const sin = g.node('Sin', [angles], '/rotary');
  const cosKv = g.node('Unsqueeze', [cos, axes1], '/rotary'); // [b, 1, s, d]
  const sinKv = g.node('Unsqueeze', [sin, axes1], '/rotary');
  const cosQ = g.node('Unsqueeze', [cos, axes12], '/rotary'); // [b, 1, 1, s, d]
  const sinQ = g.node('Unsqueeze', [sin, axes12], '/rotary');
  const rotate = (x: string, c: string, s: string, scope: string): string => {
    const first = g.node('Slice', [x, halfStart, halfMid, lastAxis], scope);
    const second = g.node('Slice', [x, halfMid, halfEnd, lastAxis], scope);
    const rotated = g.node('Concat', [g.node('Neg', [second], scope), first], scope, [intAttr('axis', -1)]);
    return g.node('Add', [g.node('Mul', [x, c], scope), g.node('Mul', [rotated, s], scope)], scope);
  };

  const pastInputs: string[] = [];
  const presentOutputs: string[] = [];
  for (let layer = 0; layer < dims.numLayers; layer++) {
    const p = `model.layers.${layer}`;
    const scope = `/${p}/self_attn`;
    const normed = rmsNorm(state, `${p}.input_layernorm`);
    // Queries as [b, kv_heads, groups, s, d] and keys/values as [b, kv_heads, 1, t, d]: MatMul broadcasts each
    // key/value head over its group of query heads (query head h uses kv head h / groups, as repeat_kv does).
    const query = g.node('Transpose', [g.node('Reshape', [linear(normed, `${p}.self_attn.q_proj`, hidden, numHeads * d), qShape], scope)], scope, [
      intsAttr('perm', [0, 2, 3, 1, 4]),
    ]);
    const kvHeads = (x: string): string => g.node('Transpose', [g.node('Reshape', [x, kvShape], scope)], scope, [intsAttr('perm', [0, 2, 1, 3])]);
    let key = rotate(kvHeads(linear(normed, `${p}.self_attn.k_proj`, hidden, numKvHeads * d)), cosKv, sinKv, scope);
    let value = kvHeads(linear(normed, `${p}.self_attn.v_proj`, hidden, numKvHeads * d));
    const rotatedQuery = rotate(query, cosQ, sinQ, scope);
    if (spec.withPast) {
      pastInputs.push(pastKeyName(layer, 'key'), pastKeyName(layer, 'value'));
      key = g.node('Concat', [pastKeyName(layer, 'key'), key], scope, [intAttr('axis', 2)]);
      value = g.node('Concat', [pastKeyName(layer, 'value'), value], scope, [intAttr('axis', 2)]);
      presentOutputs.push(g.namedNode('Identity', [key], presentName(layer, 'key')), g.namedNode('Identity', [value], presentName(layer, 'value')));
    }
    const keyT = g.node('Transpose', [g.node('Unsqueeze', [key, axes2], scope)], scope, [intsAttr('perm', [0, 1, 2, 4, 3])]);
    const scores = g.node('Add', [g.node('Mul', [g.node('MatMul', [rotatedQuery, keyT], scope), scoreScale], scope), bias], scope);
    const probs = g.node('Softmax', [scores], scope, [intAttr('axis', -1)]);
    const context = g.node('MatMul', [probs, g.node('Unsqueeze', [value, axes2], scope)], scope); // [b, kv, groups, s, d]
    const merged = g.node('Reshape', [g.node('Transpose', [context], scope, [intsAttr('perm', [0, 3, 1, 2, 4])]), mergedShape], scope);
    state = g.node('Add', [state, linear(merged, `${p}.self_attn.o_proj`, numHeads * d, hidden)], `/${p}`);

    const mlpIn = rmsNorm(state, `${p}.post_attention_layernorm`);
    const gate = linear(mlpIn, `${p}.mlp.gate_proj`, hidden, dims.intermediateSize);
    const up = linear(mlpIn, `${p}.mlp.up_proj`, hidden, dims.intermediateSize);
    const silu = g.node('Mul', [gate, g.node('Sigmoid', [gate], `/${p}/mlp`)], `/${p}/mlp`);
    state = g.node('Add', [state, linear(g.node('Mul', [silu, up], `/${p}/mlp`), `${p}.mlp.down_proj`, dims.intermediateSize, hidden)], `/${p}`);
  }

  // LM head tied to the embedding: logits = hidden · embeddingᵀ, [batch, seq, vocab].
  const final = rmsNorm(state, 'model.norm');
  const headWeight = g.node('Transpose', [embedding], '/lm_head', [intsAttr('perm', [1, 0])]);
  g.namedNode('MatMul', [final, headWeight], 'logits');

  const batchSeq = { dim: [{ dimParam: 'batch_size' }, { dimParam: 'sequence_length' }] };
  const intInput = (name: string, shape: typeof batchSeq) => ({ name, type: { tensorType: { elemType: INT64, shape } } });
  const kvTensor = (name: string, length: string) => ({
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: 'batch_size' }, { dimValue: numKvHeads }, { dimParam: length }, { dimValue: d }] } } },
  });

  return onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET_VERSION }],
    producerName: 'rerank-operator modelgen (random weights, not pretrained)',
    producerVersion: '1',
    docString: 'Synthetic decoder-only language model with deterministic random weights; its outputs carry no meaning.',
    metadataProps: [
      { key: 'synthetic', value: 'true' },
      { key: 'arch', value: 'decoder' },
      { key: 'seed', value: String(spec.seed) },
      ...Object.entries(spec.metadata ?? {}).map(([key, value]) => ({ key, value })),
    ],
    graph: {
      name: 'synthetic-decoder-lm',
      node: g.nodes,
      initializer: g.initializers,
      input: [
        intInput('input_ids', batchSeq),
        intInput('attention_mask', { dim: [{ dimParam: 'batch_size' }, { dimParam: 'total_sequence_length' }] }),
        intInput('position_ids', batchSeq),
        ...pastInputs.map((name) => kvTensor(name, 'past_sequence_length')),
      ],
      output: [
        {
          name: 'logits',
          type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: 'batch_size' }, { dimParam: 'sequence_length' }, { dimValue: vocabSize }] } } },
        },
        ...presentOutputs.map((name) => kvTensor(name, 'total_sequence_length')),
      ],
    },
  });
}

export function encodeDecoder(spec: DecoderGraphSpec): Uint8Array {
  return onnx.ModelProto.encode(buildDecoderProto(spec)).finish();
}
