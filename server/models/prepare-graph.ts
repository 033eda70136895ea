import { open } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';

/**
 * Cuts a causal LM's full-vocabulary output down to what a yes/no reranker reads: the logits of the `yes`
 * and `no` tokens at the last real position of each row. The LM head's MatMul is replaced by
 *
 *   last[b]  = max_j(attention_mask[b, j] · j) − past_length        (right or left padding alike)
 *   h[b]     = GatherND(hidden, last, batch_dims = 1)                 [batch, hidden]
 *   out[b]   = h[b] · W[:, (yes, no)]                                 [batch, 2]
 *
 * so the [batch, seq, vocab] tensor is never made, and the head's weight shrinks to two columns. Element-wise
 * steps after the MatMul with scalar operands (a Cast, Gemma 2's tanh soft-capping) are applied to the two
 * columns too. `present.*` outputs are dropped; `past_key_values.*` inputs stay (fed empty).
 */

const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.IModelProto;
type GraphProto = onnxProto.onnx.IGraphProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;
const DataType = onnx.TensorProto.DataType;

export const PREPARED_OUTPUT = 'yes_no_logits';
/** metadata_props keys a prepared graph carries. */
export const PREPARED_KEYS = {
  form: 'rerank.prepared',
  yes: 'rerank.yes_token_id',
  no: 'rerank.no_token_id',
  output: 'rerank.output',
  sourceVocab: 'rerank.source_vocab_size',
} as const;
export const PREPARED_FORM = 'yes-no';

export class PrepareError extends Error {
  override name = 'PrepareError';
}

export interface PrepareGraphOptions {
  yesTokenId: number;
  noTokenId: number;
  /** Directory external data `location`s are relative to (the source model's directory). */
  modelDir: string;
}

export interface PreparedGraph {
  model: onnxProto.onnx.ModelProto;
  /** Rows of the LM head that was cut. */
  vocabSize: number;
  hiddenSize: number;
  /** Whether the head weight was the embedding behind a Transpose (tied) or its own [hidden, vocab] initializer. */
  headWeight: 'transposed-embedding' | 'matrix';
  /** Element-wise ops kept after the cut MatMul (e.g. Tanh soft-capping). */
  epilogue: string[];
}

/** What a model's metadata says about its form: undefined for an un-cut graph. */
export function preparedInfo(model: ModelProto): { yesTokenId: number; noTokenId: number; output: string } | undefined {
  const meta = new Map((model.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']));
  if (meta.get(PREPARED_KEYS.form) !== PREPARED_FORM) return undefined;
  return { yesTokenId: Number(meta.get(PREPARED_KEYS.yes)), noTokenId: Number(meta.get(PREPARED_KEYS.no)), output: meta.get(PREPARED_KEYS.output) ?? PREPARED_OUTPUT };
}

const ELEMENTWISE_UNARY = new Set(['Identity', 'Cast', 'Tanh']);
const ELEMENTWISE_SCALAR = new Set(['Mul', 'Div', 'Add', 'Sub']);
const ELEMENT_BYTES: Partial<Record<number, number>> = { [DataType.FLOAT]: 4, [DataType.FLOAT16]: 2, [DataType.BFLOAT16]: 2, [DataType.DOUBLE]: 8 };

/** protobufjs decodes int64 fields as Long objects when the `long` package is present. */
type Long = { toNumber(): number };

function num(value: number | Long): number {
  return typeof value === 'number' ? value : value.toNumber();
}

function product(dims: readonly (number | Long)[]): number {
  return dims.reduce<number>((a, b) => a * num(b), 1);
}

function opsetVersion(model: ModelProto): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry?.version ? num(entry.version) : 0;
}

/** The rewritten model (a new message; the input is not changed). */
export async function prepareYesNoProto(source: ModelProto, options: PrepareGraphOptions): Promise<PreparedGraph> {
  if (preparedInfo(source)) throw new PrepareError('the graph is already prepared (its metadata says rerank.prepared=yes-no)');
  const model = onnx.ModelProto.decode(onnx.ModelProto.encode(source).finish());
  const graph = model.graph;
  if (!graph) throw new PrepareError('the model has no graph');
  graph.input ??= [];
  graph.output ??= [];
  graph.node ??= [];
  graph.initializer ??= [];
  const opset = opsetVersion(model);
  if (opset < 13) throw new PrepareError(`opset ${opset} is too old to cut (need 13 or later)`);
  const inputs = new Set(graph.input.map((i) => i.name));
  for (const name of ['input_ids', 'attention_mask']) {
    if (!inputs.has(name)) throw new PrepareError(`the graph has no ${name} input (inputs: ${[...inputs].join(', ')})`);
  }
  if (!graph.output.some((o) => o.name === 'logits')) {
    throw new PrepareError(`the graph has no logits output (outputs: ${graph.output.map((o) => o.name).join(', ')}); is it a causal-LM export?`);
  }

  const declared = graph.output.find((o) => o.name === 'logits')?.type?.tensorType?.shape?.dim;
  if (declared && declared.length !== 3) {
    const shape = declared.map((d) => d.dimParam || (d.dimValue === undefined || d.dimValue === null ? '?' : String(d.dimValue))).join(', ');
    throw new PrepareError(`the logits output is [${shape}], not [batch, seq, vocab]: not a causal-LM export (a cross-encoder?)`);
  }

  const producers = new Map<string, NodeProto>();
  for (const node of graph.node) for (const out of node.output ?? []) producers.set(out, node);
  const initializers = new Map(graph.initializer.map((t) => [t.name ?? '', t]));
  const isScalar = (name: string): boolean => {
    const init = initializers.get(name);
    if (init) return product(init.dims ?? []) <= 1;
    const node = producers.get(name);
    const value = node?.opType === 'Constant' ? node.attribute?.find((a) => a.name === 'value')?.t : undefined;
    return value ? product(value.dims ?? []) <= 1 : false;
  };

  // Walk back from logits over element-wise steps with scalar operands to the head's MatMul.
  const epilogue: NodeProto[] = [];
  let current = 'logits';
  let node = producers.get(current);
  while (node && node.opType !== 'MatMul') {
    const op = node.opType ?? '';
    const ins = node.input ?? [];
    const unary = ELEMENTWISE_UNARY.has(op) && ins.length === 1;
    const scalarBinary = ELEMENTWISE_SCALAR.has(op) && ins.length === 2 && ins.some(isScalar);
    if (op === 'If') {
      throw new PrepareError(
        `cannot cut: ${current} comes from an If node (optimum's merged decoder, use_cache_branch); prepare the un-merged ` +
          'decoder_model.onnx, or export again with --no-post-process',
      );
    }
    if (!unary && !scalarBinary) throw new PrepareError(`cannot cut: ${current} comes from a ${op} node, not from the LM head's MatMul`);
    epilogue.unshift(node);
    current = (unary ? ins[0] : ins.find((i) => !isScalar(i))) as string;
    node = producers.get(current);
  }
  if (!node) throw new PrepareError(`cannot cut: no MatMul produces ${current}`);
  const matmul = node;
  const [hiddenName, weightName] = matmul.input as [string, string];

  // The head weight: an initializer [hidden, vocab], or a tied embedding [vocab, hidden] behind Transpose(perm 1,0).
  let weight = initializers.get(weightName);
  let transposed = false;
  if (!weight) {
    const transpose = producers.get(weightName);
    const perm = transpose?.attribute?.find((a) => a.name === 'perm')?.ints?.map(num);
    const embedded = transpose?.opType === 'Transpose' ? initializers.get(transpose.input?.[0] ?? '') : undefined;
    if (!embedded || (perm && (perm[0] !== 1 || perm[1] !== 0))) {
      throw new PrepareError(`cannot cut: the LM head's weight ${weightName} is neither an initializer nor a transposed one`);
    }
    weight = embedded;
    transposed = true;
  }
  const dims = (weight.dims ?? []).map(num);
  if (dims.length !== 2) throw new PrepareError(`cannot cut: the LM head's weight ${weight.name} has shape [${dims.join(', ')}], not 2-D`);
  const [hiddenSize, vocabSize] = (transposed ? [dims[1], dims[0]] : dims) as [number, number];
  for (const [which, id] of [
    ['yes', options.yesTokenId],
    ['no', options.noTokenId],
  ] as const) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new PrepareError(`${which} token id ${id} is outside the LM head's vocabulary (0..${vocabSize - 1})`);
  }
  const elementBytes = ELEMENT_BYTES[weight.dataType ?? 0];
  if (elementBytes === undefined) throw new PrepareError(`cannot cut: the LM head's weight has data type ${DataType[weight.dataType ?? 0] ?? weight.dataType}, not a float type`);

  // Element offsets of W[h, yes], W[h, no] for every h, in the [hidden, 2] layout of the new weight.
  const offsets: number[] = [];
  for (let h = 0; h < hiddenSize; h++) {
    for (const id of [options.yesTokenId, options.noTokenId]) offsets.push(transposed ? id * hiddenSize + h : h * vocabSize + id);
  }
  const columns = await readElements(weight, offsets, elementBytes, options.modelDir);

  const prefix = '/rerank_prepare';
  const name = (suffix: string): string => `${prefix}/${suffix}`;
  const int64 = (n: string, values: number[], shape: number[]): TensorProto => ({
    name: name(n),
    dims: shape,
    dataType: DataType.INT64,
    rawData: littleEndian(BigInt64Array.from(values, BigInt)),
  });
  const intAttr = (n: string, i: number): AttributeProto => ({ name: n, type: onnx.AttributeProto.AttributeType.INT, i });
  const newInits: TensorProto[] = [
    int64('zero', [0], []),
    int64('one', [1], []),
    int64('axis_1', [1], [1]),
    { name: name('head_yes_no.weight'), dims: [hiddenSize, 2], dataType: weight.dataType ?? DataType.FLOAT, rawData: columns },
  ];
  const n = (opType: string, ins: string[], out: string, attribute: AttributeProto[] = []): NodeProto => ({
    name: name(`${opType}_${out}`),
    opType,
    input: ins,
    output: [name(out)],
    attribute,
  });
  const reduceMax =
    opset >= 18
      ? n('ReduceMax', [name('weighted'), name('axis_1')], 'last_slot', [intAttr('keepdims', 1)])
      : n('ReduceMax', [name('weighted')], 'last_slot', [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [1] }, intAttr('keepdims', 1)]);
  const newNodes: NodeProto[] = [
    n('Cast', ['attention_mask'], 'mask', [intAttr('to', DataType.INT64)]),
    n('Shape', [name('mask')], 'mask_shape'),
    n('Gather', [name('mask_shape'), name('one')], 'total_length', [intAttr('axis', 0)]),
    n('Shape', ['input_ids'], 'ids_shape'),
    n('Gather', [name('ids_shape'), name('one')], 'seq_length', [intAttr('axis', 0)]),
    n('Sub', [name('total_length'), name('seq_length')], 'past_length'),
    n('Range', [name('zero'), name('total_length'), name('one')], 'slots'),
    n('Mul', [name('mask'), name('slots')], 'weighted'),
    reduceMax,
    n('Sub', [name('last_slot'), name('past_length')], 'last_index'), // [batch, 1]
    n('GatherND', [hiddenName, name('last_index')], 'last_hidden', [intAttr('batch_dims', 1)]), // [batch, hidden]
    n('MatMul', [name('last_hidden'), name('head_yes_no.weight')], 'head'),
  ];
  let tail = name('head');
  for (const step of epilogue) {
    const out = `epilogue_${newNodes.length}`;
    newNodes.push({ ...step, name: name(`${step.opType}_${out}`), input: (step.input ?? []).map((i) => (i === current ? tail : i)), output: [name(out)] });
    current = step.output?.[0] ?? '';
    tail = name(out);
  }
  newNodes.push({ name: name('output'), opType: 'Identity', input: [tail], output: [PREPARED_OUTPUT] });

  const logitsInfo = graph.output.find((o) => o.name === 'logits');
  const elemType = logitsInfo?.type?.tensorType?.elemType ?? DataType.FLOAT;
  graph.node = [...graph.node.filter((x) => x !== matmul && !epilogue.includes(x)), ...newNodes];
  graph.initializer = [...graph.initializer, ...newInits];
  graph.output = [
    { name: PREPARED_OUTPUT, type: { tensorType: { elemType, shape: { dim: [{ dimParam: 'batch_size' }, { dimValue: 2 }] } } } },
  ];
  pruneDead(graph);
  model.metadataProps = [
    ...(model.metadataProps ?? []).filter((p) => !(p.key ?? '').startsWith('rerank.')),
    { key: PREPARED_KEYS.form, value: PREPARED_FORM },
    { key: PREPARED_KEYS.yes, value: String(options.yesTokenId) },
    { key: PREPARED_KEYS.no, value: String(options.noTokenId) },
    { key: PREPARED_KEYS.output, value: PREPARED_OUTPUT },
    { key: PREPARED_KEYS.sourceVocab, value: String(vocabSize) },
  ];
  return { model, vocabSize, hiddenSize, headWeight: transposed ? 'transposed-embedding' : 'matrix', epilogue: epilogue.map((e) => e.opType ?? '') };
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function littleEndian(values: BigInt64Array | Float32Array | Float64Array): Uint8Array {
  const bytes = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  if (HOST_IS_LITTLE_ENDIAN) return bytes;
  const width = values.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
  return bytes;
}

/** Raw little-endian bytes of the elements at `offsets`, from raw_data, the typed fields, or external data. */
async function readElements(tensor: TensorProto, offsets: number[], size: number, modelDir: string): Promise<Uint8Array> {
  const out = new Uint8Array(offsets.length * size);
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const entries = new Map((tensor.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = entries.get('location');
    if (!location) throw new PrepareError(`external tensor ${tensor.name} names no location`);
    const file = path.resolve(modelDir, location);
    const base = Number(entries.get('offset') ?? 0);
    let handle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      throw new PrepareError(`cannot read the external data of ${tensor.name}: ${(error as Error).message}`);
    }
    try {
      for (let i = 0; i < offsets.length; i++) {
        const { bytesRead } = await handle.read(out, i * size, size, base + (offsets[i] as number) * size);
        if (bytesRead !== size) throw new PrepareError(`external data ${file} ends before ${tensor.name}'s element ${offsets[i]}`);
      }
    } finally {
      await handle.close();
    }
    return out;
  }
  const raw = tensor.rawData;
  if (raw && raw.length > 0) {
    for (let i = 0; i < offsets.length; i++) out.set(raw.subarray((offsets[i] as number) * size, (offsets[i] as number) * size + size), i * size);
    return out;
  }
  if (tensor.dataType === DataType.FLOAT && tensor.floatData?.length) {
    return littleEndian(Float32Array.from(offsets, (o) => tensor.floatData?.[o] as number));
  }
  if (tensor.dataType === DataType.DOUBLE && tensor.doubleData?.length) {
    return littleEndian(Float64Array.from(offsets, (o) => tensor.doubleData?.[o] as number));
  }
  if ((tensor.dataType === DataType.FLOAT16 || tensor.dataType === DataType.BFLOAT16) && tensor.int32Data?.length) {
    const view = new DataView(out.buffer);
    offsets.forEach((o, i) => view.setUint16(i * 2, tensor.int32Data?.[o] as number, true));
    return out;
  }
  throw new PrepareError(`cannot read the values of ${tensor.name}: no raw_data, typed data or external data`);
}

/** Removes nodes and initializers no output needs (the cut head, the dropped present.* chains). */
function pruneDead(graph: GraphProto): void {
  const needed = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const producers = new Map<string, NodeProto>();
  for (const node of graph.node ?? []) for (const out of node.output ?? []) producers.set(out, node);
  const kept = new Set<NodeProto>();
  const stack = [...needed];
  while (stack.length > 0) {
    const tensor = stack.pop() as string;
    const node = producers.get(tensor);
    if (!node || kept.has(node)) continue;
    kept.add(node);
    for (const input of [...(node.input ?? []), ...subgraphInputs(node)]) {
      if (input && !needed.has(input)) {
        needed.add(input);
        stack.push(input);
      }
    }
  }
  graph.node = (graph.node ?? []).filter((node) => kept.has(node));
  graph.initializer = (graph.initializer ?? []).filter((t) => needed.has(t.name ?? ''));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => needed.has(v.name ?? ''));
}

/** Names a node's subgraphs (If, Loop, Scan) read, which may come from the enclosing graph. */
function subgraphInputs(node: NodeProto): string[] {
  const names: string[] = [];
  const visit = (g: GraphProto | null | undefined): void => {
    for (const inner of g?.node ?? []) {
      names.push(...(inner.input ?? []));
      for (const attr of inner.attribute ?? []) {
        visit(attr.g);
        for (const sub of attr.graphs ?? []) visit(sub);
      }
    }
  };
  for (const attr of node.attribute ?? []) {
    visit(attr.g);
    for (const sub of attr.graphs ?? []) visit(sub);
  }
  return names;
}
