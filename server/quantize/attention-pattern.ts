import type onnxProto from 'onnx-proto';
import { DataType, dimsOf, readFloatTensor, readIntTensor } from './tensors.ts';

/**
 * Finds the self-attention blocks of a BERT-style encoder in a float32 graph, as PyTorch exports them:
 *
 *     q = Reshape(X·Wq + bq, [.., .., N, H]) → Transpose [0,2,1,3]
 *     kᵀ = Reshape(X·Wk + bk, ..) → Transpose [0,2,3,1]   (or [0,2,1,3] then [0,1,3,2])
 *     v = Reshape(X·Wv + bv, ..) → Transpose [0,2,1,3]
 *     p = Softmax(q·kᵀ ÷ c + mask bias)             (or × c, or no scale)
 *     out = Reshape(Transpose(p·v, [0,2,1,3]), [.., .., N·H])
 *
 * where the mask bias is (1 − Unsqueeze(Cast(attention_mask))) × a large negative number. Such a block is
 * what onnxruntime's com.microsoft (Q)Attention computes in one kernel: one GEMM for the three projections,
 * then per batch and head the scores, mask, softmax and weighted sum while they are in cache, instead of
 * writing and reading [batch, heads, seq, seq] tensors between five operators.
 *
 * The Reshape targets may be constants or, as torch.onnx writes them, a Concat of dims read off the tensor
 * (Shape → Gather → Unsqueeze) and constants. Every intermediate tensor must be read only inside the block,
 * such shape reads included; anything else (a different mask, a bias on the scores, attention probabilities
 * that leave the block) is left alone, with the reason.
 */

type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;

export interface Projection {
  matmul: NodeProto;
  weight: TensorProto;
  /** The bias Add after the MatMul, when there is one. */
  add?: NodeProto;
  bias?: Float32Array;
}

export interface AttentionBlock {
  /** The tensor all three projections read: [batch, seq, hidden in]. */
  input: string;
  /** The block's output, [batch, seq, heads × head size]. */
  output: string;
  /** The Softmax's name, to say which layer it was. */
  label: string;
  numHeads: number;
  headSize: number;
  q: Projection;
  k: Projection;
  v: Projection;
  /** What the scores were multiplied by before the mask (1/√head size in BERT). */
  scoreScale: number;
  /** The graph input holding the attention mask: [batch, seq], 1 for tokens, 0 for padding. */
  maskInput: string;
  /** Nodes the fused op replaces; the mask bias nodes are shared between blocks and not among them. */
  nodes: Set<NodeProto>;
}

export interface AttentionMatch {
  blocks: AttentionBlock[];
  /** Softmax nodes that were not fused, and why. */
  missed: Array<{ node: string; reason: string }>;
}

/** What a PyTorch export computes a Reshape's target shape with, from a Shape of the tensor. */
const SHAPE_OPS = new Set(['Shape', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat', 'Cast', 'Slice']);

/** Softmax(x) with x = scores + a mask bias of at most this: −10000 (BERT) or float32's lowest (newer exports). */
const MASK_BIAS_LIMIT = -1000;

class NoMatch extends Error {}

function fail(reason: string): never {
  throw new NoMatch(reason);
}

function attrOf(node: NodeProto, name: string): onnxProto.onnx.IAttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

function intsOf(node: NodeProto, name: string): number[] | undefined {
  const a = attrOf(node, name);
  return a?.ints ? a.ints.map((v) => Number(v.toString())) : undefined;
}

function isStandard(node: NodeProto): boolean {
  return !node.domain || node.domain === 'ai.onnx';
}

function sameInts(a: readonly number[] | undefined, b: readonly number[]): boolean {
  return a !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);
}

export function findAttentionBlocks(graph: onnxProto.onnx.IGraphProto, modelDir: string): AttentionMatch {
  const nodes = graph.node ?? [];
  const initializers = new Map<string, TensorProto>((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const producers = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const node of nodes) {
    for (const output of node.output ?? []) if (output) producers.set(output, node);
    for (const input of node.input ?? []) if (input) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  }
  const graphInputs = new Set((graph.input ?? []).map((i) => i.name ?? '').filter((name) => !initializers.has(name)));
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));

  /** A constant's values: an initializer, or a Constant node's value. */
  const constant = (name: string | undefined): number[] | undefined => {
    if (!name) return undefined;
    let tensor = initializers.get(name);
    if (!tensor) {
      const node = producers.get(name);
      if (node?.opType === 'Constant' && isStandard(node)) tensor = attrOf(node, 'value')?.t ?? undefined;
    }
    if (!tensor) return undefined;
    if (tensor.dataType === DataType.FLOAT) return [...readFloatTensor(tensor, modelDir)];
    if (tensor.dataType === DataType.INT64 || tensor.dataType === DataType.INT32) return readIntTensor(tensor);
    return undefined;
  };
  const scalar = (name: string | undefined): number | undefined => {
    const values = constant(name);
    return values?.length === 1 ? values[0] : undefined;
  };
  /**
   * Whether a Shape node's results only feed the target shape of Reshapes the block has taken: the dims a
   * PyTorch export reads off a tensor to reshape it (Shape → Gather → Unsqueeze → Concat). Those nodes go
   * with the block, as nothing else reads them.
   */
  const feedsOnlyReshapesOf = (shape: NodeProto, taken: ReadonlySet<NodeProto>): boolean => {
    if (shape.opType !== 'Shape' || !isStandard(shape)) return false;
    const queue = [shape];
    for (let node = queue.pop(); node; node = queue.pop()) {
      for (const output of node.output ?? []) {
        if (graphOutputs.has(output)) return false;
        for (const next of consumers.get(output) ?? []) {
          if (next.opType === 'Reshape' && next.input?.[1] === output) {
            if (!taken.has(next)) return false;
          } else if (SHAPE_OPS.has(next.opType ?? '') && isStandard(next)) {
            queue.push(next);
          } else {
            return false;
          }
        }
      }
    }
    return true;
  };
  /**
   * The node that makes `tensor`, of type `op`, where the block may take it over: its output is read once
   * (besides Shape reads that only size the block's own Reshapes), and not by the graph.
   */
  const only = (tensor: string | undefined, op: string, taken: ReadonlySet<NodeProto>): NodeProto => {
    const node = tensor ? producers.get(tensor) : undefined;
    if (!node || node.opType !== op || !isStandard(node)) fail(`${tensor ?? 'an input'} is not made by ${op}`);
    for (const output of node.output ?? []) {
      const readers = (consumers.get(output) ?? []).filter((reader) => !feedsOnlyReshapesOf(reader, taken));
      if (readers.length !== 1 || graphOutputs.has(output)) fail(`${output} is read outside the attention`);
    }
    return node;
  };
  /** A Reshape's target shape as far as it is constant: a shape initializer, or a Concat of constant and computed parts. */
  const shapeOf = (reshape: NodeProto): Array<number | undefined> => {
    const target = reshape.input?.[1];
    const whole = constant(target);
    if (whole) return whole;
    const concat = target ? producers.get(target) : undefined;
    if (concat?.opType !== 'Concat') fail(`the shape of ${reshape.name} is not constant`);
    return (concat.input ?? []).flatMap((part) => constant(part) ?? [undefined]);
  };

  const projection = (tensor: string | undefined, taken: Set<NodeProto>): Projection & { input: string } => {
    let node = tensor ? producers.get(tensor) : undefined;
    let add: NodeProto | undefined;
    let bias: Float32Array | undefined;
    if (node?.opType === 'Add') {
      add = only(tensor, 'Add', taken);
      const [a, b] = add.input ?? [];
      const biasName = initializers.has(a ?? '') ? a : b;
      const biasTensor = initializers.get(biasName ?? '');
      if (!biasTensor || biasTensor.dataType !== DataType.FLOAT || dimsOf(biasTensor).length !== 1) fail(`${add.name}: not a bias add`);
      bias = readFloatTensor(biasTensor, modelDir);
      node = only(biasName === a ? b : a, 'MatMul', taken);
      taken.add(add);
    } else {
      node = only(tensor, 'MatMul', taken);
    }
    const weight = initializers.get(node.input?.[1] ?? '');
    if (!weight || weight.dataType !== DataType.FLOAT || dimsOf(weight).length !== 2) fail(`${node.name}: weight is not a constant float32 matrix`);
    if (bias && bias.length !== dimsOf(weight)[1]) fail(`${add?.name}: bias of ${bias.length} for ${dimsOf(weight)[1]} outputs`);
    taken.add(node);
    return { matmul: node, weight, ...(add ? { add } : {}), ...(bias ? { bias } : {}), input: node.input?.[0] ?? '' };
  };

  /** Reshape(projection, [.., .., N, H]) → Transpose(perm): the projection and its heads. */
  const heads = (tensor: string | undefined, perms: number[][], taken: Set<NodeProto>) => {
    let current = tensor;
    for (const perm of [...perms].reverse()) {
      const transpose = only(current, 'Transpose', taken);
      if (!sameInts(intsOf(transpose, 'perm'), perm)) fail(`${transpose.name}: perm ${intsOf(transpose, 'perm')?.join(',')}, not ${perm.join(',')}`);
      taken.add(transpose);
      current = transpose.input?.[0];
    }
    const reshape = only(current, 'Reshape', taken);
    taken.add(reshape);
    const shape = shapeOf(reshape);
    const [numHeads, headSize] = shape.slice(-2);
    if (shape.length !== 4 || !numHeads || !headSize || numHeads < 1 || headSize < 1) fail(`${reshape.name}: not a split into heads`);
    return { numHeads, headSize, ...projection(reshape.input?.[0], taken) };
  };

  /** (1 − Unsqueeze(Cast(mask), [1, 2])) × c, c ≤ −1000: the graph input it reads. */
  const maskInput = (tensor: string | undefined): string => {
    const mul = tensor ? producers.get(tensor) : undefined;
    if (mul?.opType !== 'Mul') fail('the score bias is not (1 − mask) × c');
    const [a, b] = mul.input ?? [];
    const c = scalar(b) ?? scalar(a);
    if (c === undefined || c > MASK_BIAS_LIMIT) fail('the score bias is not (1 − mask) × a large negative number');
    const sub = producers.get((scalar(b) === undefined ? b : a) ?? '');
    if (sub?.opType !== 'Sub' || scalar(sub.input?.[0]) !== 1) fail('the score bias is not (1 − mask) × c');
    let current = sub.input?.[1];
    const axes: number[] = [];
    let cast = false;
    for (let step = 0; step < 4 && current && !graphInputs.has(current); step += 1) {
      const node = producers.get(current);
      if (node?.opType === 'Cast' && Number(attrOf(node, 'to')?.i?.toString()) === DataType.FLOAT) cast = true;
      else if (node?.opType === 'Unsqueeze') axes.push(...(intsOf(node, 'axes') ?? constant(node.input?.[1]) ?? [NaN]));
      else fail(`the mask passes through ${node?.opType ?? 'an unknown node'}`);
      current = node.input?.[0];
    }
    if (!current || !graphInputs.has(current) || !cast || !sameInts([...axes].sort(), [1, 2])) fail('the score bias is not made from a [batch, seq] mask input');
    return current;
  };

  const blocks: AttentionBlock[] = [];
  const missed: AttentionMatch['missed'] = [];
  for (const softmax of nodes) {
    if (softmax.opType !== 'Softmax' || !isStandard(softmax)) continue;
    const label = softmax.name || softmax.output?.[0] || 'Softmax';
    try {
      const axis = Number(attrOf(softmax, 'axis')?.i?.toString() ?? NaN);
      if (axis !== -1 && axis !== 3) fail(`Softmax over axis ${Number.isNaN(axis) ? 'unset' : axis}, not the last`);
      const taken = new Set<NodeProto>([softmax]);
      const sum = only(softmax.input?.[0], 'Add', taken);
      taken.add(sum);
      // The mask side is the Mul of a Sub; the other, the scores.
      const [a, b] = sum.input ?? [];
      const isMaskBias = (name: string | undefined) => {
        const mul = producers.get(name ?? '');
        return mul?.opType === 'Mul' && (mul.input ?? []).some((input) => producers.get(input)?.opType === 'Sub');
      };
      if (isMaskBias(a) === isMaskBias(b)) fail('no (1 − mask) × c bias added to the scores');
      const [scoreSide, maskSide] = isMaskBias(b) ? [a, b] : [b, a];
      let scoreScale = 1;
      let product = scoreSide;
      const scaled = producers.get(scoreSide ?? '');
      if (scaled?.opType === 'Div' || scaled?.opType === 'Mul') {
        only(scoreSide, scaled.opType, taken);
        const c = scalar(scaled.input?.[1]);
        if (c === undefined || c === 0) fail(`${scaled.name}: the scores are not scaled by a constant`);
        scoreScale = scaled.opType === 'Div' ? 1 / c : c;
        product = scaled.input?.[0];
        taken.add(scaled);
      }
      const scores = only(product, 'MatMul', taken);
      taken.add(scores);
      const q = heads(scores.input?.[0], [[0, 2, 1, 3]], taken);
      const keyT = producers.get(scores.input?.[1] ?? '');
      const keyPerms = sameInts(intsOf(keyT ?? {}, 'perm'), [0, 2, 3, 1]) ? [[0, 2, 3, 1]] : [[0, 2, 1, 3], [0, 1, 3, 2]];
      const k = heads(scores.input?.[1], keyPerms, taken);
      const softmaxReaders = consumers.get(softmax.output?.[0] ?? '') ?? [];
      if (softmaxReaders.length !== 1 || graphOutputs.has(softmax.output?.[0] ?? '')) fail('the attention probabilities are read outside the attention');
      const context = softmaxReaders[0] as NodeProto;
      if (context.opType !== 'MatMul' || context.input?.[0] !== softmax.output?.[0]) fail('the probabilities are not multiplied by the values');
      taken.add(context);
      const v = heads(context.input?.[1], [[0, 2, 1, 3]], taken);
      const merge = (consumers.get(context.output?.[0] ?? '') ?? [])[0];
      if (!merge || merge.opType !== 'Transpose' || !sameInts(intsOf(merge, 'perm'), [0, 2, 1, 3])) fail('the heads are not transposed back');
      only(merge.input?.[0], 'MatMul', taken);
      const merged = merge.output?.[0] ?? '';
      const flat = (consumers.get(merged) ?? []).find((n) => n.opType === 'Reshape' && n.input?.[0] === merged);
      if (!flat) fail('the heads are not merged by a Reshape');
      taken.add(merge);
      taken.add(flat);
      only(merged, 'Transpose', taken);
      const hidden = q.numHeads * q.headSize;
      const flatShape = shapeOf(flat);
      if (flatShape.length !== 3 || flatShape[2] !== hidden) fail(`${flat.name}: heads not merged into ${hidden}`);
      if (q.input !== k.input || q.input !== v.input) fail('query, key and value read different inputs');
      for (const p of [k, v]) {
        if (p.numHeads !== q.numHeads || p.headSize !== q.headSize) fail('query, key and value split into different heads');
      }
      for (const p of [q, k, v]) {
        if (dimsOf(p.weight)[1] !== hidden) fail(`${p.matmul.name}: ${dimsOf(p.weight)[1]} outputs for ${q.numHeads} heads of ${q.headSize}`);
      }
      const mask = maskInput(maskSide);
      const strip = ({ input: _input, numHeads: _n, headSize: _h, ...rest }: typeof q): Projection => rest;
      blocks.push({
        input: q.input,
        output: flat.output?.[0] ?? '',
        label,
        numHeads: q.numHeads,
        headSize: q.headSize,
        q: strip(q),
        k: strip(k),
        v: strip(v),
        scoreScale,
        maskInput: mask,
        nodes: taken,
      });
    } catch (error) {
      if (!(error instanceof NoMatch)) throw error;
      missed.push({ node: label, reason: error.message });
    }
  }
  return { blocks, missed };
}
