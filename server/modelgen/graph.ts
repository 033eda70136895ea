import onnxProto from 'onnx-proto';

/**
 * Builds the ONNX graph of a BERT-style cross-encoder with deterministic random weights: the I/O contract
 * and the compute cost of a real exported reranker (Optimum/Xenova export of ms-marco-MiniLM, or of an
 * XLM-RoBERTa reranker such as bge-reranker-v2-m3), without any pretrained weights.
 */

const { onnx } = onnxProto;
type NodeAttribute = onnxProto.onnx.IAttributeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type NodeProto = onnxProto.onnx.INodeProto;

export type ModelShape = 'tiny' | 'minilm-l6' | 'bert-base';
export type ModelArch = 'bert' | 'xlmr';
export type LogitsLayout = 'batch1' | 'batch';

export interface ShapeDims {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  /** Longest sequence the model accepts, special tokens included. */
  maxPositions: number;
}

export const MODEL_SHAPES: Readonly<Record<ModelShape, ShapeDims>> = {
  tiny: { vocabSize: 30522, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 512 },
  'minilm-l6': { vocabSize: 30522, hiddenSize: 384, numLayers: 6, numHeads: 12, intermediateSize: 1536, maxPositions: 512 },
  'bert-base': { vocabSize: 30522, hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072, maxPositions: 512 },
};

export const OPSET_VERSION = 17;
export const IR_VERSION = 8;

export interface GraphSpec {
  dims: ShapeDims;
  arch: ModelArch;
  logits: LogitsLayout;
  seed: number;
  /** Token id the tokenizer pads with; XLM-R derives position ids from it. */
  padTokenId: number;
}

/** Per-architecture constants that config.json reports too. */
export function archConstants(arch: ModelArch, dims: ShapeDims): {
  layerNormEps: number;
  typeVocabSize: number;
  positionTableSize: number;
} {
  return arch === 'bert'
    ? { layerNormEps: 1e-12, typeVocabSize: 2, positionTableSize: dims.maxPositions }
    : // RoBERTa numbers positions from padding_idx + 1, so its table is padding_idx + 1 rows longer (514 for 512).
      { layerNormEps: 1e-5, typeVocabSize: 1, positionTableSize: dims.maxPositions + XLMR_PAD_ID + 1 };
}

/** XLM-R's `<pad>` id; the position table offset depends on it. */
export const XLMR_PAD_ID = 1;

/** A small seeded PRNG (mulberry32) with Box-Muller normals: same seed, same weights, on every platform. */
export class SeededRandom {
  #state: number;
  #spare: number | undefined;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  normal(): number {
    if (this.#spare !== undefined) {
      const spare = this.#spare;
      this.#spare = undefined;
      return spare;
    }
    const u1 = 1 - this.uniform(); // (0, 1]: log stays finite
    const u2 = this.uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    this.#spare = radius * Math.sin(2 * Math.PI * u2);
    return radius * Math.cos(2 * Math.PI * u2);
  }

  fillNormal(values: Float32Array, std: number): Float32Array {
    for (let i = 0; i < values.length; i++) values[i] = this.normal() * std;
    return values;
  }
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

export function floatTensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return { name, dims, dataType: FLOAT, rawData: littleEndianBytes(values) };
}

export function int64Tensor(name: string, dims: number[], values: number[]): TensorProto {
  return { name, dims, dataType: INT64, rawData: littleEndianBytes(BigInt64Array.from(values, (v) => BigInt(v))) };
}

/** ONNX raw_data is little-endian; typed arrays use the host's order, so swap on a big-endian host. */
function littleEndianBytes(values: Float32Array | BigInt64Array): Uint8Array {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (HOST_IS_LITTLE_ENDIAN) return bytes;
  const swapped = new Uint8Array(bytes.length);
  const width = values.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += width) {
    for (let j = 0; j < width; j++) swapped[i + j] = bytes[i + width - 1 - j] as number;
  }
  return swapped;
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function intAttr(name: string, value: number): NodeAttribute {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i: value };
}

export function floatAttr(name: string, value: number): NodeAttribute {
  return { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: value };
}

export function intsAttr(name: string, values: number[]): NodeAttribute {
  return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: values };
}

/** Collects nodes and initializers; every node output gets a unique, readable name. */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly #random: SeededRandom;
  #counter = 0;

  constructor(random: SeededRandom) {
    this.#random = random;
  }

  node(opType: string, inputs: string[], scope: string, attribute: NodeAttribute[] = []): string {
    const name = `${scope}/${opType}_${this.#counter++}`;
    const output = `${name}_output_0`;
    this.nodes.push({ name, opType, input: inputs, output: [output], attribute });
    return output;
  }

  /** The final node of the graph writes to a fixed output name. */
  namedNode(opType: string, inputs: string[], output: string, attribute: NodeAttribute[] = []): string {
    this.nodes.push({ name: `/${output}/${opType}`, opType, input: inputs, output: [output], attribute });
    return output;
  }

  normal(name: string, dims: number[], std: number): string {
    const values = this.#random.fillNormal(new Float32Array(product(dims)), std);
    this.initializers.push(floatTensor(name, dims, values));
    return name;
  }

  filled(name: string, dims: number[], value: number): string {
    this.initializers.push(floatTensor(name, dims, new Float32Array(product(dims)).fill(value)));
    return name;
  }

  int64(name: string, dims: number[], values: number[]): string {
    this.initializers.push(int64Tensor(name, dims, values));
    return name;
  }

  /** y = x·W + b, W of shape [fanIn, fanOut]. */
  dense(x: string, prefix: string, fanIn: number, fanOut: number): string {
    // Weights scaled by 1/sqrt(fanIn) keep every sublayer's output on the scale of the residual stream, so a
    // random model still attends over the whole pair and different documents get clearly different logits.
    // (BERT's 0.02 init would leave the first token's state, and so the logit, nearly input-independent.)
    const weight = this.normal(`${prefix}.weight`, [fanIn, fanOut], 1 / Math.sqrt(fanIn));
    const bias = this.filled(`${prefix}.bias`, [fanOut], 0);
    return this.node('Add', [this.node('MatMul', [x, weight], prefix), bias], prefix);
  }

  layerNorm(x: string, prefix: string, hidden: number, epsilon: number): string {
    const gamma = this.filled(`${prefix}.weight`, [hidden], 1);
    const beta = this.filled(`${prefix}.bias`, [hidden], 0);
    return this.node('LayerNormalization', [x, gamma, beta], prefix, [intAttr('axis', -1), floatAttr('epsilon', epsilon)]);
  }
}

function product(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

const EMBEDDING_STD = 0.02;
/** Added to attention scores of padded keys: exp() of it is exactly 0 in float32, and it stays finite in fp16. */
const MASKED_SCORE = -10000;

/** The complete ModelProto for a spec. Pure: the same spec gives the same message, and so the same bytes. */
export function buildModelProto(spec: GraphSpec): onnxProto.onnx.ModelProto {
  const { dims, arch } = spec;
  if (dims.hiddenSize % dims.numHeads !== 0) {
    throw new Error(`hidden size ${dims.hiddenSize} is not a multiple of ${dims.numHeads} heads`);
  }
  const headSize = dims.hiddenSize / dims.numHeads;
  const constants = archConstants(arch, dims);
  const g = new GraphBuilder(new SeededRandom(spec.seed));
  const prefix = arch === 'bert' ? 'bert' : 'roberta';

  // Shared constants.
  const zero = g.int64('const_zero', [], [0]);
  const one = g.int64('const_one', [], [1]);
  const maskAxes = g.int64('const_axes_1_2', [2], [1, 2]);
  const oneFloat = g.filled('const_one_float', [], 1);
  const maskedScore = g.filled('const_masked_score', [], MASKED_SCORE);
  const headShape = g.int64('const_head_shape', [4], [0, 0, dims.numHeads, headSize]);
  const hiddenShape = g.int64('const_hidden_shape', [3], [0, 0, dims.hiddenSize]);
  const scoreScale = g.filled('const_score_scale', [], Math.sqrt(headSize));
  const sqrtTwo = g.filled('const_sqrt_two', [], Math.SQRT2);
  const half = g.filled('const_half', [], 0.5);

  // Embeddings.
  const emb = `${prefix}.embeddings`;
  const wordTable = g.normal(`${emb}.word_embeddings.weight`, [dims.vocabSize, dims.hiddenSize], EMBEDDING_STD);
  const positionTable = g.normal(`${emb}.position_embeddings.weight`, [constants.positionTableSize, dims.hiddenSize], EMBEDDING_STD);
  const typeTable = g.normal(`${emb}.token_type_embeddings.weight`, [constants.typeVocabSize, dims.hiddenSize], EMBEDDING_STD);

  const words = g.node('Gather', [wordTable, 'input_ids'], `/${emb}/word_embeddings`);
  let positionIds: string;
  if (arch === 'bert') {
    const shape = g.node('Shape', ['input_ids'], `/${emb}`);
    const seqLen = g.node('Gather', [shape, one], `/${emb}`, [intAttr('axis', 0)]);
    positionIds = g.node('Range', [zero, seqLen, one], `/${emb}`); // [seq]
  } else {
    // RoBERTa: positions count non-pad tokens from padding_idx + 1; pad tokens sit at padding_idx.
    const padId = g.int64('const_pad_id', [], [spec.padTokenId]);
    const isPad = g.node('Equal', ['input_ids', padId], `/${emb}`);
    const notPad = g.node('Cast', [g.node('Not', [isPad], `/${emb}`)], `/${emb}`, [intAttr('to', INT64)]);
    const counted = g.node('CumSum', [notPad, one], `/${emb}`);
    positionIds = g.node('Add', [g.node('Mul', [counted, notPad], `/${emb}`), padId], `/${emb}`); // [batch, seq]
  }
  const positions = g.node('Gather', [positionTable, positionIds], `/${emb}/position_embeddings`);
  // XLM-R has one token type, so its embedding is a constant row added to every token.
  const types = arch === 'bert' ? g.node('Gather', [typeTable, 'token_type_ids'], `/${emb}/token_type_embeddings`) : typeTable;
  const summed = g.node('Add', [g.node('Add', [words, types], `/${emb}`), positions], `/${emb}`);
  let hidden = g.layerNorm(summed, `${emb}.LayerNorm`, dims.hiddenSize, constants.layerNormEps);

  // Additive attention bias [batch, 1, 1, seq]: 0 where attention_mask is 1, MASKED_SCORE where it is 0.
  const maskFloat = g.node('Cast', ['attention_mask'], '/mask', [intAttr('to', FLOAT)]);
  const maskExpanded = g.node('Unsqueeze', [maskFloat, maskAxes], '/mask');
  const attentionBias = g.node('Mul', [g.node('Sub', [oneFloat, maskExpanded], '/mask'), maskedScore], '/mask');

  for (let layer = 0; layer < dims.numLayers; layer++) {
    const p = `${prefix}.encoder.layer.${layer}`;
    const scope = `/${p}`;
    const heads = (x: string, perm: number[]): string =>
      g.node('Transpose', [g.node('Reshape', [x, headShape], scope)], scope, [intsAttr('perm', perm)]);
    const query = heads(g.dense(hidden, `${p}.attention.self.query`, dims.hiddenSize, dims.hiddenSize), [0, 2, 1, 3]);
    const keyT = heads(g.dense(hidden, `${p}.attention.self.key`, dims.hiddenSize, dims.hiddenSize), [0, 2, 3, 1]);
    const value = heads(g.dense(hidden, `${p}.attention.self.value`, dims.hiddenSize, dims.hiddenSize), [0, 2, 1, 3]);
    const scores = g.node('Div', [g.node('MatMul', [query, keyT], scope), scoreScale], scope);
    const probs = g.node('Softmax', [g.node('Add', [scores, attentionBias], scope)], scope, [intAttr('axis', -1)]);
    const context = g.node('MatMul', [probs, value], scope);
    const merged = g.node('Reshape', [g.node('Transpose', [context], scope, [intsAttr('perm', [0, 2, 1, 3])]), hiddenShape], scope);
    const attended = g.dense(merged, `${p}.attention.output.dense`, dims.hiddenSize, dims.hiddenSize);
    hidden = g.layerNorm(g.node('Add', [attended, hidden], scope), `${p}.attention.output.LayerNorm`, dims.hiddenSize, constants.layerNormEps);

    const inner = g.dense(hidden, `${p}.intermediate.dense`, dims.hiddenSize, dims.intermediateSize);
    // Exact GELU, 0.5·x·(1 + erf(x/√2)), spelled out: opset 17 has no Gelu operator.
    const erf = g.node('Erf', [g.node('Div', [inner, sqrtTwo], scope)], scope);
    const gelu = g.node('Mul', [g.node('Mul', [inner, half], scope), g.node('Add', [erf, oneFloat], scope)], scope);
    const out = g.dense(gelu, `${p}.output.dense`, dims.intermediateSize, dims.hiddenSize);
    hidden = g.layerNorm(g.node('Add', [out, hidden], scope), `${p}.output.LayerNorm`, dims.hiddenSize, constants.layerNormEps);
  }

  // Head on the first token ([CLS] / <s>): Dense + Tanh, then one output unit. BERT calls the first half the
  // pooler, XLM-R's classification head has the same two layers.
  const first = g.node('Gather', [hidden, zero], '/head', [intAttr('axis', 1)]); // [batch, hidden]
  const head = arch === 'bert' ? 'bert.pooler.dense' : 'classifier.dense';
  const pooled = g.node('Tanh', [g.dense(first, head, dims.hiddenSize, dims.hiddenSize)], '/head');
  const classifier = arch === 'bert' ? 'classifier' : 'classifier.out_proj';
  const scored = g.dense(pooled, classifier, dims.hiddenSize, 1); // [batch, 1]
  if (spec.logits === 'batch1') {
    g.namedNode('Identity', [scored], 'logits');
  } else {
    g.namedNode('Squeeze', [scored, g.int64('const_axis_1', [1], [1])], 'logits');
  }

  const inputNames = arch === 'bert' ? ['input_ids', 'attention_mask', 'token_type_ids'] : ['input_ids', 'attention_mask'];
  const batchSeq = { dim: [{ dimParam: 'batch_size' }, { dimParam: 'sequence_length' }] };
  const logitsShape = spec.logits === 'batch1' ? { dim: [{ dimParam: 'batch_size' }, { dimValue: 1 }] } : { dim: [{ dimParam: 'batch_size' }] };

  return onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET_VERSION }],
    producerName: 'rerank-operator modelgen (random weights, not pretrained)',
    producerVersion: '1',
    docString: 'Synthetic cross-encoder with deterministic random weights; its scores carry no meaning.',
    metadataProps: [
      { key: 'synthetic', value: 'true' },
      { key: 'arch', value: arch },
      { key: 'seed', value: String(spec.seed) },
    ],
    graph: {
      name: `synthetic-${arch}-cross-encoder`,
      node: g.nodes,
      initializer: g.initializers,
      input: inputNames.map((name) => ({ name, type: { tensorType: { elemType: INT64, shape: batchSeq } } })),
      output: [{ name: 'logits', type: { tensorType: { elemType: FLOAT, shape: logitsShape } } }],
    },
  });
}

/** Serialized model.onnx bytes. */
export function encodeModel(spec: GraphSpec): Uint8Array {
  return onnx.ModelProto.encode(buildModelProto(spec)).finish();
}
