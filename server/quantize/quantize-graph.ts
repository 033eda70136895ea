import onnxProto from 'onnx-proto';
import { DataType, dimsOf, floatTensor, int8Tensor, readFloatTensor } from './tensors.ts';
import { quantizeWeight, transpose, type WeightQuantOptions } from './quantize-weights.ts';
import { findAttentionBlocks, type AttentionBlock } from './attention-pattern.ts';

/**
 * Dynamic int8 quantization of an ONNX graph, the way onnxruntime's `quantize_dynamic` does it: the
 * constant weights of MatMul and Gemm become int8 (per tensor or per output channel), and activations are
 * quantized at run time (uint8, asymmetric, per tensor).
 *
 * Two spellings of the same arithmetic:
 * - `contrib` (default): one com.microsoft `DynamicQuantizeMatMul` per layer, the bias Add that follows
 *   folded into it. This is what onnxruntime's CPU provider fuses the standard spelling into anyway.
 * - `standard`: `DynamicQuantizeLinear` → `MatMulInteger` → `Cast` → `Mul` by the two scales (ONNX ops
 *   only: any runtime can run it).
 *
 * In `contrib`, each self-attention block (attention-pattern.ts) becomes one com.microsoft `QAttention`: the
 * query, key and value weights packed into one int8 matrix with one scale, and the scores, mask, softmax
 * and weighted sum computed per batch and head in one kernel. Per-channel weights keep the attention
 * unfused (QAttention takes one scale), as does `fuseAttention: false`.
 *
 * Kept in float32: the head (the last linear layer before each output, and layers named classifier,
 * pooler or score; those run once per pair, not per token, so they cost little and carry the score), and
 * anything `exclude` names. Embedding tables stay float32 unless `embeddings` is set; then large ones
 * (≥ 4096 rows: the word embeddings) are stored int8 with one scale per row and dequantized after the
 * Gather.
 */

const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.IModelProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;

export type QuantFormat = 'contrib' | 'standard';

export interface QuantizeOptions extends WeightQuantOptions {
  /** One scale per output channel (default per tensor). */
  perChannel: boolean;
  format: QuantFormat;
  /** Also store large embedding tables as int8 (per row). */
  embeddings: boolean;
  /** Nodes kept float32 when their name, or the name of their weight, matches. */
  exclude?: RegExp;
  /** Where external data files lie (the model's directory). */
  modelDir: string;
  /** Fuse self-attention into com.microsoft QAttention (`contrib`, per tensor); default true. */
  fuseAttention?: boolean;
}

export interface QuantizeSummary {
  /** Linear layers now int8, by node name. */
  quantized: string[];
  /** Linear layers with constant weights left float32, and why. */
  kept: Array<{ node: string; reason: string }>;
  /** Embedding tables now int8. */
  embeddings: string[];
  /** Self-attention blocks now one QAttention, by their Softmax's name. */
  attention: string[];
  /** Softmax nodes left as they were, and why. */
  attentionKept: Array<{ node: string; reason: string }>;
}

/** Names of head layers: run once per pair and decide the score, so they stay float32. */
const HEAD_NAME = /(^|[./_:])(classifier|pooler|score)([./_:]|$)/i;
/** Embedding tables with fewer rows stay float32 (position and type tables): no gain worth an error. */
const MIN_EMBEDDING_ROWS = 4096;
const CONTRIB_DOMAIN = 'com.microsoft';

/** A node's name for messages: its name, else its first output, else its op. */
function labelOf(node: NodeProto): string {
  return node.name || node.output?.[0] || node.opType || 'node';
}

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

function intAttr(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.i === undefined || a.i === null ? fallback : Number(a.i.toString());
}

function floatAttr(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a?.f === undefined || a.f === null ? fallback : a.f;
}

interface Linear {
  node: NodeProto;
  weight: TensorProto;
  /** The weight as MatMul's B: [K, N]. */
  k: number;
  n: number;
  transB: boolean;
  /** Gemm's alpha, folded into the scales. */
  alpha: number;
  /** A 1-D [N] constant added to the output (Gemm's beta·C, or the Add after a MatMul in `contrib`). */
  bias?: { values: Float32Array; name: string };
  /** The Add folded into the quantized node (its output replaces the MatMul's). */
  foldedAdd?: NodeProto;
}

/** Quantizes a model in place of a copy: returns the new ModelProto and what was done. */
export function quantizeModelProto(source: ModelProto, options: QuantizeOptions): { model: onnxProto.onnx.ModelProto; summary: QuantizeSummary } {
  if (!source.graph) throw new Error('the model has no graph');
  // A copy of the two levels it rewrites; tensors and nodes it keeps are shared with the source, never changed.
  const graph = onnx.GraphProto.create({ ...source.graph });
  const model = onnx.ModelProto.create({ ...source, graph });
  const defaultOpset = Number((model.opsetImport ?? []).find((o) => !o.domain)?.version?.toString() ?? 0);
  if (defaultOpset < 11) throw new Error(`opset ${defaultOpset}: dynamic quantization needs opset 11 or later (DynamicQuantizeLinear)`);

  const initializers = new Map<string, TensorProto>((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const nodes = graph.node ?? [];
  const consumers = new Map<string, NodeProto[]>();
  for (const node of nodes) for (const input of node.input ?? []) if (input) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const isConstFloat2d = (name: string | undefined) => {
    const t = name === undefined ? undefined : initializers.get(name);
    return t !== undefined && t.dataType === DataType.FLOAT && dimsOf(t).length === 2 ? t : undefined;
  };

  const summary: QuantizeSummary = { quantized: [], kept: [], embeddings: [], attention: [], attentionKept: [] };
  const candidates = new Map<NodeProto, Linear>();
  for (const node of nodes) {
    if (node.domain && node.domain !== 'ai.onnx') continue;
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    const weight = isConstFloat2d(node.input?.[1]);
    if (!weight || initializers.has(node.input?.[0] ?? '')) continue;
    const label = labelOf(node);
    const [rows, cols] = dimsOf(weight) as [number, number];
    if (node.opType === 'MatMul') {
      candidates.set(node, { node, weight, k: rows, n: cols, transB: false, alpha: 1 });
      continue;
    }
    if (intAttr(node, 'transA', 0) !== 0) {
      summary.kept.push({ node: label, reason: 'Gemm with transA' });
      continue;
    }
    const transB = intAttr(node, 'transB', 0) === 1;
    const n = transB ? rows : cols;
    const linear: Linear = { node, weight, k: transB ? cols : rows, n, transB, alpha: floatAttr(node, 'alpha', 1) };
    const cName = node.input?.[2];
    if (cName) {
      const c = initializers.get(cName);
      const cDims = c ? dimsOf(c) : [];
      if (!c || c.dataType !== DataType.FLOAT || !(cDims.length === 1 && (cDims[0] === n || cDims[0] === 1))) {
        summary.kept.push({ node: label, reason: 'Gemm whose C is not a constant vector' });
        continue;
      }
      const beta = floatAttr(node, 'beta', 1);
      const values = readFloatTensor(c, options.modelDir);
      const bias = new Float32Array(n);
      for (let i = 0; i < n; i += 1) bias[i] = beta * (values[values.length === 1 ? 0 : i] as number);
      linear.bias = { values: bias, name: cName };
    }
    candidates.set(node, linear);
  }

  // The head: linear layers with no other linear layer between them and an output.
  const feedsLinear = new Map<string, boolean>();
  const reachesLinear = (tensor: string, seen: Set<string>): boolean => {
    const known = feedsLinear.get(tensor);
    if (known !== undefined) return known;
    if (seen.has(tensor)) return false;
    seen.add(tensor);
    const result = (consumers.get(tensor) ?? []).some((c) => candidates.has(c) || (c.output ?? []).some((o) => reachesLinear(o, seen)));
    feedsLinear.set(tensor, result);
    return result;
  };
  for (const linear of [...candidates.values()]) {
    const { node } = linear;
    const label = labelOf(node);
    const names: string[] = [label, linear.weight.name ?? '', ...(consumers.get(node.output?.[0] ?? '') ?? []).flatMap((c) => c.input ?? [])];
    let reason: string | undefined;
    if (options.exclude && names.some((name) => options.exclude?.test(name))) reason = 'excluded';
    else if (names.some((name) => HEAD_NAME.test(name))) reason = 'head (classifier/pooler/score)';
    else if (!(node.output ?? []).some((o) => reachesLinear(o, new Set()))) reason = 'head (last linear layer before the output)';
    if (reason !== undefined) {
      candidates.delete(node);
      summary.kept.push({ node: label, reason });
    }
  }

  // contrib: self-attention blocks whose projections are still to quantize become QAttention.
  const blocks: AttentionBlock[] = [];
  const found = findAttentionBlocks(graph, options.modelDir);
  summary.attentionKept.push(...found.missed);
  for (const block of found.blocks) {
    const projections = [block.q, block.k, block.v];
    const keep = (reason: string) => summary.attentionKept.push({ node: block.label, reason });
    if (options.format !== 'contrib') keep('standard ops (QAttention is a com.microsoft op)');
    else if (options.fuseAttention === false) keep('fusion turned off');
    else if (options.perChannel) keep('per-channel weights (QAttention takes one scale)');
    else if (!projections.every((p) => candidates.has(p.matmul))) keep('a projection is kept float32');
    else {
      blocks.push(block);
      summary.attention.push(block.label);
      for (const p of projections) {
        candidates.delete(p.matmul);
        summary.quantized.push(labelOf(p.matmul));
      }
    }
  }
  const fusedBy = new Map<NodeProto, AttentionBlock>(blocks.flatMap((block) => [...block.nodes].map((node) => [node, block] as const)));
  const maskCasts = new Map<string, string>();

  // contrib: fold a MatMul's bias Add (a constant [N] on the other side) into the quantized node.
  if (options.format === 'contrib') {
    for (const linear of candidates.values()) {
      if (linear.bias || linear.node.opType !== 'MatMul') continue;
      const output = linear.node.output?.[0] ?? '';
      const users = consumers.get(output) ?? [];
      const add = users[0];
      if (users.length !== 1 || !add || add.opType !== 'Add' || (add.domain && add.domain !== 'ai.onnx') || graphOutputs.has(output)) continue;
      const other = add.input?.[0] === output ? add.input?.[1] : add.input?.[0];
      const tensor = other === undefined ? undefined : initializers.get(other);
      if (!tensor || tensor.dataType !== DataType.FLOAT) continue;
      const dims = dimsOf(tensor);
      if (dims.length !== 1 || dims[0] !== linear.n) continue;
      linear.bias = { values: readFloatTensor(tensor, options.modelDir), name: other ?? '' };
      linear.foldedAdd = add;
    }
  }

  const added: TensorProto[] = [];
  const replacedWeights = new Map<string, { q: string; scale: string; zeroPoint: string }>();
  let counter = 0;
  const unique = (base: string) => `${base}_q${counter++}`;
  const folded = new Set([...candidates.values()].flatMap((l) => (l.foldedAdd ? [l.foldedAdd] : [])));
  const rewritten: NodeProto[] = [];

  for (const node of nodes) {
    if (folded.has(node)) continue;
    const block = fusedBy.get(node);
    if (block) {
      // The merge Reshape is the block's last node: everything it needs is made by then.
      if (node.output?.[0] === block.output) rewritten.push(...qAttention(block));
      continue;
    }
    const linear = candidates.get(node);
    if (linear) {
      rewritten.push(...quantizeLinear(linear));
      summary.quantized.push(labelOf(node));
      continue;
    }
    const table = options.embeddings && node.opType === 'Gather' && !node.domain && intAttr(node, 'axis', 0) === 0 ? isConstFloat2d(node.input?.[0]) : undefined;
    if (table && (dimsOf(table)[0] ?? 0) >= MIN_EMBEDDING_ROWS && !initializers.has(node.input?.[1] ?? '')) {
      rewritten.push(...quantizeGather(node, table));
      summary.embeddings.push(table.name ?? '');
      continue;
    }
    rewritten.push(node);
  }

  function quantizeLinear(linear: Linear): NodeProto[] {
    const { node } = linear;
    const base = unique(node.name || node.output?.[0] || 'linear');
    const weightName = linear.weight.name ?? '';
    const key = `${weightName}|${linear.transB}|${linear.alpha}`;
    let weight = replacedWeights.get(key);
    if (!weight) {
      const [rows, cols] = dimsOf(linear.weight) as [number, number];
      const raw = readFloatTensor(linear.weight, options.modelDir);
      const kn = linear.transB ? transpose(raw, rows, cols) : raw;
      const q = quantizeWeight(kn, linear.k, linear.n, { ...options, ...(options.perChannel ? { channelAxis: 1 as const } : {}) });
      const scales = linear.alpha === 1 ? q.scales : q.scales.map((s) => s * linear.alpha);
      const channelDims = options.perChannel ? [linear.n] : [];
      weight = { q: `${base}_weight_int8`, scale: `${base}_weight_scale`, zeroPoint: `${base}_weight_zero_point` };
      added.push(int8Tensor(weight.q, [linear.k, linear.n], q.values));
      added.push(floatTensor(weight.scale, channelDims, scales));
      added.push(int8Tensor(weight.zeroPoint, channelDims, q.zeroPoints));
      replacedWeights.set(key, weight);
    }
    const output = linear.foldedAdd?.output?.[0] ?? node.output?.[0] ?? '';
    let bias: string | undefined;
    if (linear.bias) {
      bias = `${base}_bias`;
      added.push(floatTensor(bias, [linear.n], linear.bias.values));
    }
    const input = node.input?.[0] ?? '';
    if (options.format === 'contrib') {
      return [
        {
          name: `${base}/DynamicQuantizeMatMul`,
          opType: 'DynamicQuantizeMatMul',
          domain: CONTRIB_DOMAIN,
          input: [input, weight.q, weight.scale, weight.zeroPoint, ...(bias ? [bias] : [])],
          output: [output],
        },
      ];
    }
    const [aq, aScale, aZero, yInt, yFloat, scale] = ['a_quant', 'a_scale', 'a_zero_point', 'y_int32', 'y_float', 'scale'].map((s) => `${base}_${s}`) as [
      string, string, string, string, string, string,
    ];
    const scaled = bias ? `${base}_y_scaled` : output;
    const out: NodeProto[] = [
      { name: `${base}/DynamicQuantizeLinear`, opType: 'DynamicQuantizeLinear', input: [input], output: [aq, aScale, aZero] },
      { name: `${base}/MatMulInteger`, opType: 'MatMulInteger', input: [aq, weight.q, aZero, weight.zeroPoint], output: [yInt] },
      { name: `${base}/Cast`, opType: 'Cast', input: [yInt], output: [yFloat], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DataType.FLOAT }] },
      { name: `${base}/ScaleMul`, opType: 'Mul', input: [aScale, weight.scale], output: [scale] },
      { name: `${base}/Mul`, opType: 'Mul', input: [yFloat, scale], output: [scaled] },
    ];
    if (bias) out.push({ name: `${base}/BiasAdd`, opType: 'Add', input: [scaled, bias], output: [output] });
    return out;
  }

  /** DynamicQuantizeLinear → QAttention, the three projections packed [K, 3N] (the query's scaled to 1/√head size). */
  function qAttention(block: AttentionBlock): NodeProto[] {
    const base = unique(block.label);
    const out: NodeProto[] = [];
    let mask = maskCasts.get(block.maskInput);
    if (mask === undefined) {
      mask = `${block.maskInput}_int32`;
      maskCasts.set(block.maskInput, mask);
      const to = { name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DataType.INT32 };
      out.push({ name: `${mask}/Cast`, opType: 'Cast', input: [block.maskInput], output: [mask], attribute: [to] });
    }
    const [k, n] = dimsOf(block.q.weight) as [number, number];
    const queryFactor = block.scoreScale * Math.sqrt(block.headSize);
    const packed = new Float32Array(k * 3 * n);
    const bias = new Float32Array(3 * n);
    [block.q, block.k, block.v].forEach((p, part) => {
      const factor = part === 0 && Math.abs(queryFactor - 1) > 1e-6 ? queryFactor : 1;
      const w = readFloatTensor(p.weight, options.modelDir);
      for (let r = 0; r < k; r += 1) for (let c = 0; c < n; c += 1) packed[r * 3 * n + part * n + c] = (w[r * n + c] as number) * factor;
      for (let c = 0; c < n; c += 1) bias[part * n + c] = (p.bias?.[c] ?? 0) * factor;
    });
    const q = quantizeWeight(packed, k, 3 * n, options);
    const [x, xScale, xZero, weight, weightScale, weightZero, biasName] = ['input_uint8', 'input_scale', 'input_zero_point', 'qkv_weight_int8', 'qkv_weight_scale', 'qkv_weight_zero_point', 'qkv_bias'].map(
      (s) => `${base}_${s}`,
    ) as [string, string, string, string, string, string, string];
    added.push(int8Tensor(weight, [k, 3 * n], q.values), floatTensor(weightScale, [], q.scales), int8Tensor(weightZero, [], q.zeroPoints), floatTensor(biasName, [3 * n], bias));
    out.push(
      { name: `${base}/DynamicQuantizeLinear`, opType: 'DynamicQuantizeLinear', input: [block.input], output: [x, xScale, xZero] },
      {
        name: `${base}/QAttention`,
        opType: 'QAttention',
        domain: CONTRIB_DOMAIN,
        input: [x, weight, biasName, xScale, weightScale, mask, xZero, weightZero],
        output: [block.output],
        attribute: [{ name: 'num_heads', type: onnx.AttributeProto.AttributeType.INT, i: block.numHeads }],
      },
    );
    return out;
  }

  function quantizeGather(node: NodeProto, table: TensorProto): NodeProto[] {
    const base = unique(node.name || node.output?.[0] || 'gather');
    const [rows, cols] = dimsOf(table) as [number, number];
    const q = quantizeWeight(readFloatTensor(table, options.modelDir), rows, cols, { symmetric: true, reduceRange: false, channelAxis: 0 });
    const [qTable, scales, rowsQ, rowsF, rowScales] = ['table_int8', 'row_scales', 'rows_int8', 'rows_float', 'rows_scale'].map((s) => `${base}_${s}`) as [
      string, string, string, string, string,
    ];
    added.push(int8Tensor(qTable, [rows, cols], q.values));
    added.push(floatTensor(scales, [rows, 1], q.scales));
    const ids = node.input?.[1] ?? '';
    return [
      { name: `${base}/Gather`, opType: 'Gather', input: [qTable, ids], output: [rowsQ], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      { name: `${base}/Cast`, opType: 'Cast', input: [rowsQ], output: [rowsF], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DataType.FLOAT }] },
      { name: `${base}/GatherScale`, opType: 'Gather', input: [scales, ids], output: [rowScales], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      { name: `${base}/Dequantize`, opType: 'Mul', input: [rowsF, rowScales], output: [node.output?.[0] ?? ''] },
    ];
  }

  // Nodes whose every reader was fused away (the float mask bias of fused attention), then the initializers
  // it replaced or left unread (weights, folded biases, tables, the constants of fused attention). Nodes are
  // in topological order, so walking back, every reader of a node's outputs has been decided. A node nothing
  // read before is left alone: it may feed a subgraph, whose reads are not node inputs.
  const used = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const gone = new Set(fusedBy.keys());
  const live: NodeProto[] = [];
  const orphaned = new Set(blocks.flatMap((b) => [...b.nodes].flatMap((n) => n.input ?? [])));
  for (const node of [...rewritten].reverse()) {
    const readers = (node.output ?? []).flatMap((o) => consumers.get(o) ?? []);
    if (readers.length > 0 && readers.every((r) => gone.has(r)) && !(node.output ?? []).some((o) => used.has(o))) {
      gone.add(node);
      for (const input of node.input ?? []) orphaned.add(input);
      continue;
    }
    live.push(node);
    for (const input of node.input ?? []) used.add(input);
  }
  rewritten.splice(0, rewritten.length, ...live.reverse());
  const replaced = new Set([
    ...[...candidates.values()].flatMap((l) => [l.weight.name ?? '', l.bias?.name ?? '']),
    ...orphaned,
  ]);
  for (const name of summary.embeddings) replaced.add(name);
  // Initializers only: a graph input the fused attention no longer reads stays an input, as callers feed it.
  const dropped = new Set([...replaced].filter((name) => initializers.has(name) && !used.has(name)));
  const kept = (graph.initializer ?? []).filter((t) => !dropped.has(t.name ?? ''));
  graph.node = rewritten;
  graph.initializer = [...kept, ...added];
  graph.input = (graph.input ?? []).filter((i) => !dropped.has(i.name ?? ''));
  if (options.format === 'contrib' && summary.quantized.length > 0 && !(model.opsetImport ?? []).some((o) => o.domain === CONTRIB_DOMAIN)) {
    model.opsetImport = [...(model.opsetImport ?? []), { domain: CONTRIB_DOMAIN, version: 1 }];
  }
  model.metadataProps = [
    ...(model.metadataProps ?? []).filter((p) => p.key !== 'quantization'),
    {
      key: 'quantization',
      value: JSON.stringify({
        method: 'dynamic int8',
        format: options.format,
        perChannel: options.perChannel,
        symmetric: options.symmetric,
        reduceRange: options.reduceRange,
        embeddings: options.embeddings,
        attention: summary.attention.length > 0 ? 'QAttention' : 'float32',
      }),
    },
  ];
  return { model, summary };
}
