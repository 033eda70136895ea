import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import onnxProto from 'onnx-proto';
import { agreement, topK } from '../../server/quantize/agreement.ts';
import { quantizeModelProto } from '../../server/quantize/quantize-graph.ts';
import { quantizeModelDir } from '../../server/quantize/quantize-model.ts';
import { quantizeWeight, roundHalfEven, scaleAndZeroPoint } from '../../server/quantize/quantize-weights.ts';
import { int64Tensor, readIntTensor } from '../../server/quantize/tensors.ts';
import { generateSample, parseSample } from '../../server/quantize/sample-pairs.ts';
import { scratchDir, tinyModel } from '../support/models.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const symmetric = { symmetric: true, reduceRange: false };

describe('int8 weights', () => {
  it('rounds half to even, as onnxruntime quantize_dynamic (numpy) does', () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 2, 3]);
  });

  it('symmetric: scale max|w|/127, zero point 0, every value within half a step', () => {
    const w = Float32Array.from([0.5, -1.27, 0.01, 0.9, -0.3, 0.0]);
    const q = quantizeWeight(w, 2, 3, symmetric);
    assert.equal(q.scales.length, 1);
    assert.ok(Math.abs((q.scales[0] as number) - 0.01) < 1e-7);
    assert.deepEqual([...q.zeroPoints], [0]);
    assert.deepEqual([...q.values], [50, -127, 1, 90, -30, 0]);
  });

  it('per channel (axis 1): one scale per column, each column scaled by its own range', () => {
    const w = Float32Array.from([1, 0.03, -2.54, 0.04]); // [[1, 0.03], [-2.54, 0.04]]
    const q = quantizeWeight(w, 2, 2, { ...symmetric, channelAxis: 1 });
    assert.equal(q.scales.length, 2);
    assert.deepEqual([...q.values], [50, 95, -127, 127]);
  });

  it('asymmetric: the range holds 0 exactly, and the extremes map to -128 and 127', () => {
    const { scale, zeroPoint } = scaleAndZeroPoint(0.2, 2.55, { symmetric: false, reduceRange: false });
    assert.ok(Math.abs(scale - 0.01) < 1e-7);
    assert.equal(zeroPoint, -128);
    const q = quantizeWeight(Float32Array.from([0.2, 2.55, 0]), 1, 3, { symmetric: false, reduceRange: false });
    assert.deepEqual([...q.values], [-108, 127, -128]);
  });

  it('reduce range keeps weights in 7 bits', () => {
    const q = quantizeWeight(Float32Array.from([-3, 1, 2]), 1, 3, { symmetric: true, reduceRange: true });
    assert.deepEqual([...q.values], [-64, 21, 43]);
  });
});

describe('agreement between float32 and int8 scores', () => {
  it('top-k takes the largest, ties by index', () => {
    assert.deepEqual(topK([0.1, 0.9, 0.5, 0.9], 3), [1, 3, 2]);
  });

  it('reports max and mean |Δ|, top-k and top-1 agreement per group', () => {
    const reference = Array.from({ length: 12 }, (_, i) => i); // best is 11, top 10 are 2..11
    const swapped = [...reference];
    swapped[1] = 5.5; // moves into the top 10, pushing index 2 out
    const a = agreement([
      { reference, candidate: reference },
      { reference, candidate: swapped },
    ]);
    assert.equal(a.pairs, 24);
    assert.equal(a.maxAbsDelta, 4.5);
    assert.equal(a.topKAgreement, (1 + 0.9) / 2);
    assert.equal(a.minTopKAgreement, 0.9);
    assert.equal(a.top1Agreement, 1);
  });

  it('refuses groups of different sizes', () => {
    assert.throws(() => agreement([{ reference: [1, 2], candidate: [1] }]), /2 reference and 1 candidate/);
  });
});

describe('sample pairs', () => {
  it('groups pairs of the same query, from every accepted shape', () => {
    const groups = parseSample(
      JSON.stringify([{ query: 'q1', documents: ['a', { text: 'b' }] }, { query: 'q2', document: 'c' }, ['q1', 'd']]),
      'sample.json',
    );
    assert.deepEqual(groups, [
      { query: 'q1', documents: ['a', 'b', 'd'] },
      { query: 'q2', documents: ['c'] },
    ]);
  });

  it('says which entry is wrong', () => {
    assert.throws(() => parseSample('[{"query": "q", "documents": ["a", 3]}]', 's.json'), /s\.json: \[0\]\.documents\[1\]: query and document must be strings/);
    assert.throws(() => parseSample('{"query": "q"}', 's.json'), /non-empty JSON array/);
    assert.throws(() => parseSample('[{"q": 1}]', 's.json'), /\[0\]: expected/);
  });

  it('generates the same sample from the same seed', () => {
    assert.deepEqual(generateSample({ seed: 3, groups: 2, documents: 3 }), generateSample({ seed: 3, groups: 2, documents: 3 }));
  });
});

async function graphOf(file: string) {
  return onnxProto.onnx.ModelProto.decode(await readFile(file));
}

function countOps(model: onnxProto.onnx.IModelProto): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const node of model.graph?.node ?? []) counts[node.opType ?? ''] = (counts[node.opType ?? ''] ?? 0) + 1;
  return counts;
}

const contrib = { ...symmetric, perChannel: false, format: 'contrib' as const, embeddings: false };

/** A generated tiny model copied to a scratch directory with its graph rewritten, and a sample of pairs beside it. */
async function rewrittenModel(name: string, seed: number, rewrite: (graph: onnxProto.onnx.IGraphProto) => void) {
  const { modelPath, dir: source } = await tinyModel({ seed });
  const dir = await scratchDir(name);
  await cp(source, dir, { recursive: true });
  const proto = await graphOf(modelPath);
  rewrite(proto.graph as onnxProto.onnx.IGraphProto);
  await writeFile(path.join(dir, 'model.onnx'), onnxProto.onnx.ModelProto.encode(proto).finish());
  const sampleFile = path.join(dir, 'sample.json');
  await writeFile(sampleFile, JSON.stringify(generateSample({ groups: 3, documents: 12, seed: 4 })));
  return { dir, sampleFile, proto };
}

describe('quantizing a generated cross-encoder', () => {
  it('fuses each self-attention into one QAttention, replaces the other per-token MatMuls by DynamicQuantizeMatMul, keeps the head float32', async () => {
    const { modelPath, dir } = await tinyModel();
    const source = await graphOf(modelPath);
    const before = source.graph?.node?.length;
    const { model, summary } = quantizeModelProto(source, { ...contrib, modelDir: dir });
    assert.equal(source.graph?.node?.length, before, 'the source graph is left as it was');
    // tiny: 2 layers × (q, k, v, attention out, ffn in, ffn out)
    assert.equal(summary.quantized.length, 12);
    assert.deepEqual(summary.kept.map((k) => k.reason), ['head (classifier/pooler/score)', 'head (classifier/pooler/score)']);
    assert.equal(summary.attention.length, 2);
    assert.deepEqual(summary.attentionKept, []);
    const ops = countOps(model);
    assert.equal(ops.QAttention, 2);
    assert.equal(ops.DynamicQuantizeLinear, 2, 'one activation quantization for the three projections');
    assert.equal(ops.DynamicQuantizeMatMul, 2 * 3);
    assert.equal(ops.MatMul, 2, 'only the head');
    assert.equal(ops.Softmax, undefined);
    assert.equal(ops.Transpose, undefined);
    assert.equal(ops.Cast, 1, 'the mask is cast to int32 once for every layer');
    assert.ok(model.opsetImport?.some((o) => o.domain === 'com.microsoft'));
    const qattention = model.graph?.node?.find((n) => n.opType === 'QAttention');
    assert.equal(Number(qattention?.attribute?.find((a) => a.name === 'num_heads')?.i), 2);
    const names = new Set(model.graph?.initializer?.map((t) => t.name));
    const weights = [...names].filter((name) => /encoder\..*\.(query|key|value|dense)\.(weight|bias)$/.test(name ?? ''));
    assert.deepEqual(weights, [], 'the float32 weights and biases it replaced are gone');
    for (const orphan of ['const_head_shape', 'const_masked_score', 'const_score_scale']) assert.ok(!names.has(orphan), `${orphan} is gone with the nodes that read it`);
  });

  it('keeps attention unfused, with the reason, where QAttention cannot take it', async () => {
    const { modelPath, dir } = await tinyModel();
    const perChannel = quantizeModelProto(await graphOf(modelPath), { ...contrib, perChannel: true, modelDir: dir });
    assert.deepEqual(perChannel.summary.attentionKept.map((k) => k.reason), Array(2).fill('per-channel weights (QAttention takes one scale)'));
    assert.equal(countOps(perChannel.model).DynamicQuantizeMatMul, 12);
    assert.equal(countOps(perChannel.model).Softmax, 2);

    const off = quantizeModelProto(await graphOf(modelPath), { ...contrib, fuseAttention: false, modelDir: dir });
    assert.deepEqual(off.summary.attention, []);
    assert.deepEqual(off.summary.attentionKept.map((k) => k.reason), Array(2).fill('fusion turned off'));
    // Two MatMuls per layer multiply activations (attention), two are the head.
    assert.equal(countOps(off.model).MatMul, 2 * 2 + 2);

    const excluded = quantizeModelProto(await graphOf(modelPath), { ...contrib, exclude: /layer\.0\.attention\.self\.value/, modelDir: dir });
    assert.deepEqual(excluded.summary.attentionKept.map((k) => k.reason), ['a projection is kept float32']);
    assert.equal(excluded.summary.attention.length, 1);

    // Attention probabilities read outside the block (a second output) cannot disappear into a kernel.
    const exposed = await graphOf(modelPath);
    const softmax = exposed.graph?.node?.find((n) => n.opType === 'Softmax');
    exposed.graph?.output?.push({ name: softmax?.output?.[0] ?? '' });
    const leaked = quantizeModelProto(exposed, { ...contrib, modelDir: dir });
    assert.equal(leaked.summary.attention.length, 1);
    assert.match(leaked.summary.attentionKept[0]?.reason ?? '', /read outside the attention/);
  });

  it('fuses attention written as torch.onnx writes it: Reshape targets a Concat of dims read off the tensor and a Constant node, kᵀ two Transposes', async () => {
    let reshapes = 0;
    const { dir, sampleFile, proto } = await rewrittenModel('quantize-export-forms', 12, (graph) => {
      const shapeTail = (name: string) => readIntTensor(graph.initializer?.find((t) => t.name === name) ?? {}).slice(2);
      const tails = new Map([['const_head_shape', shapeTail('const_head_shape')], ['const_hidden_shape', shapeTail('const_hidden_shape')]]);
      graph.initializer?.push(int64Tensor('test_axes_0', [1], [0]));
      const rewritten: onnxProto.onnx.INodeProto[] = [];
      for (const node of graph.node ?? []) {
        const tail = node.opType === 'Reshape' ? tails.get(node.input?.[1] ?? '') : undefined;
        if (tail) {
          // The dims PyTorch reads off the tensor it reshapes: the projection's output, or the transposed context.
          const t = (name: string) => `test_${name}_${reshapes}`;
          const axis0 = [{ name: 'axis', type: onnxProto.onnx.AttributeProto.AttributeType.INT, i: 0 }];
          const data = node.input?.[0] ?? '';
          rewritten.push(
            { opType: 'Shape', input: [data], output: [t('shape')] },
            { opType: 'Gather', input: [t('shape'), 'const_zero'], output: [t('batch')], attribute: axis0 },
            { opType: 'Gather', input: [t('shape'), 'const_one'], output: [t('seq')], attribute: axis0 },
            { opType: 'Unsqueeze', input: [t('batch'), 'test_axes_0'], output: [t('batch1')] },
            { opType: 'Unsqueeze', input: [t('seq'), 'test_axes_0'], output: [t('seq1')] },
            { opType: 'Constant', output: [t('heads')], attribute: [{ name: 'value', type: onnxProto.onnx.AttributeProto.AttributeType.TENSOR, t: int64Tensor('', [tail.length], tail) }] },
            { opType: 'Concat', input: [t('batch1'), t('seq1'), t('heads')], output: [t('target')], attribute: axis0 },
          );
          node.input = [data, t('target')];
          reshapes += 1;
        }
        const perm = node.attribute?.find((a) => a.name === 'perm');
        if (node.opType === 'Transpose' && perm?.ints?.map(Number).join() === '0,2,3,1') {
          const out = node.output?.[0] ?? '';
          perm.ints = [0, 2, 1, 3];
          node.output = [`${out}_bnsh`];
          rewritten.push(node, { opType: 'Transpose', input: [`${out}_bnsh`], output: [out], attribute: [{ name: 'perm', type: onnxProto.onnx.AttributeProto.AttributeType.INTS, ints: [0, 1, 3, 2] }] });
          continue;
        }
        rewritten.push(node);
      }
      graph.node = rewritten;
    });
    assert.equal(reshapes, 2 * 4, 'three head splits and the merge per layer now read a Concat');
    const report = await quantizeModelDir({ dir, sampleFile });
    assert.equal(report.summary.attention.length, 2, JSON.stringify(report.summary.attentionKept));
    const a = report.sample?.agreement;
    assert.ok(a && a.meanAbsDelta < 0.2 * a.referenceStd, `mean |Δ| ${a?.meanAbsDelta} against std ${a?.referenceStd}`);
    const ops = countOps(await graphOf(report.output));
    assert.equal(ops.Concat, undefined, 'the shape computations went with the attention');
    assert.equal(ops.Shape, 1, 'only the position ids still read a shape');

    // A shape read that leaves the attention (here a graph output) keeps the tensor it reads, so that layer is not fused.
    proto.graph?.output?.push({ name: 'test_target_0' });
    const leaked = quantizeModelProto(proto, { ...contrib, modelDir: dir });
    assert.equal(leaked.summary.attention.length, 1);
    assert.match(leaked.summary.attentionKept[0]?.reason ?? '', /read outside the attention/);
  });

  it('fused attention keeps the graph\'s own score scale, and masks padding', async () => {
    // The scores scaled by × 2/√d instead of ÷ √d: QAttention scales by 1/√d, so the query must carry the rest.
    const { dir, sampleFile } = await rewrittenModel('quantize-scale', 11, (graph) => {
      const scale = graph.initializer?.find((t) => t.name === 'const_score_scale');
      const headSize = new Float32Array(new Uint8Array(scale?.rawData ?? []).buffer)[0] ?? NaN;
      graph.initializer?.push({ name: 'const_score_double', dims: [], dataType: 1, rawData: new Uint8Array(Float32Array.of(2 / headSize).buffer) });
      for (const node of graph.node ?? []) {
        if (node.opType === 'Div' && node.input?.[1] === 'const_score_scale') Object.assign(node, { opType: 'Mul', input: [node.input[0], 'const_score_double'] });
      }
    });
    const fused = await quantizeModelDir({ dir, sampleFile, out: 'fused.onnx' });
    const unfused = await quantizeModelDir({ dir, sampleFile, out: 'unfused.onnx', fuseAttention: false });
    assert.equal(fused.summary.attention.length, 2);
    assert.equal(unfused.summary.attention.length, 0);
    const [f, u] = [fused.sample?.agreement, unfused.sample?.agreement];
    assert.ok(f && u);
    // The comparison batches pairs of different lengths (padding inside every batch of 8). Measured: mean |Δ|
    // 0.11 of the logits' std fused, 0.14 unfused. With the query left unscaled it was 1.72, and with no mask
    // given to QAttention (padding attended to) 0.56.
    assert.ok(f.meanAbsDelta < 0.2 * f.referenceStd, `fused: mean |Δ| ${f.meanAbsDelta} against std ${f.referenceStd}`);
    assert.ok(f.meanAbsDelta < 2 * u.meanAbsDelta + 0.02 * f.referenceStd, `fused ${f.meanAbsDelta} against unfused ${u.meanAbsDelta}`);
  });

  it('standard ops: DynamicQuantizeLinear + MatMulInteger only, no contrib domain', async () => {
    const { modelPath, dir } = await tinyModel();
    const { model } = quantizeModelProto(await graphOf(modelPath), { ...symmetric, perChannel: true, format: 'standard', embeddings: false, modelDir: dir });
    const ops = model.graph?.node?.map((n) => n.opType) ?? [];
    assert.equal(ops.filter((op) => op === 'MatMulInteger').length, 12);
    assert.equal(ops.filter((op) => op === 'DynamicQuantizeLinear').length, 12);
    assert.ok(!model.opsetImport?.some((o) => o.domain === 'com.microsoft'));
  });

  it('writes model_int8.onnx beside the source; both spellings score close to float32', async () => {
    const { dir: source } = await tinyModel({ seed: 5 });
    const dir = await scratchDir('quantize');
    await cp(source, dir, { recursive: true });
    const sampleFile = path.join(dir, 'sample.json');
    await writeFile(sampleFile, JSON.stringify(generateSample({ groups: 3, documents: 12, seed: 9 })));
    for (const [format, perChannel] of [['contrib', false], ['standard', true]] as const) {
      const report = await quantizeModelDir({ dir, format, perChannel, sampleFile, out: `model_${format}.onnx` });
      assert.equal(report.output, path.join(dir, `model_${format}.onnx`));
      assert.equal((await stat(report.output)).size, report.outputBytes);
      const a = report.sample?.agreement;
      assert.ok(a, 'compared');
      assert.equal(a.pairs, 36);
      // Random weights (tiny, hidden 32): the int8 error is a fraction of how far apart the float32 logits are
      // (measured: max 0.28, mean 0.11 of their std); a wrong scale or zero point puts it at or past the std.
      assert.ok(a.meanAbsDelta < 0.2 * a.referenceStd, `${format}: mean |Δ| ${a.meanAbsDelta} against std ${a.referenceStd}`);
      assert.ok(a.maxAbsDelta < 0.5 * a.referenceStd, `${format}: max |Δ| ${a.maxAbsDelta} against std ${a.referenceStd}`);
      assert.ok(a.topKAgreement >= 0.8, `${format}: top-10 agreement ${a.topKAgreement}`);
      const written = JSON.parse(await readFile(path.join(dir, `model_${format}.quantization.json`), 'utf8')) as { summary: { quantized: string[] } };
      assert.equal(written.summary.quantized.length, 12);
    }
  });

  it('refuses to quantize a quantized model, and to overwrite its source', async () => {
    const { dir: source } = await tinyModel();
    const dir = await scratchDir('quantize-twice');
    await cp(source, dir, { recursive: true });
    await assert.rejects(quantizeModelDir({ dir, out: 'model.onnx', compare: false }), /would overwrite the float32 model/);
    const { output } = await quantizeModelDir({ dir, compare: false });
    await assert.rejects(quantizeModelDir({ dir: output, out: 'again.onnx', compare: false }), /already quantized/);
  });

  it('rerank-server models quantize prints the report; a bad option is a clear error', async () => {
    const { dir: source } = await tinyModel();
    const dir = await scratchDir('quantize-cli');
    await cp(source, dir, { recursive: true });
    const cli = path.join(root, 'server/cli/main.ts');
    const { stdout } = await run(process.execPath, [cli, 'models', 'quantize', dir, '--per-channel', '--embeddings']);
    assert.match(stdout, /int8 per channel, symmetric weights/);
    assert.match(stdout, /max \|Δlogit\| \d+\.\d+/);
    assert.match(stdout, /top-10 agreement \d+\.\d %/);
    assert.match(stdout, /size: \d+\.\d MB -> \d+\.\d MB/);
    assert.match(stdout, /embeddings: bert\.embeddings\.word_embeddings\.weight int8 per row/);
    assert.match(stdout, /attention: float32 MatMul \+ Softmax \(per-channel weights \(QAttention takes one scale\)\)/);
    const fused = await run(process.execPath, [cli, 'models', 'quantize', dir, '--out', 'fused.onnx', '--no-compare']);
    assert.match(fused.stdout, /attention: 2 layers fused into com\.microsoft QAttention/);
    const apart = await run(process.execPath, [cli, 'models', 'quantize', dir, '--out', 'apart.onnx', '--no-compare', '--no-fuse-attention']);
    assert.match(apart.stdout, /attention: float32 MatMul \+ Softmax \(fusion turned off\)/);
    await stat(path.join(dir, 'model_int8.onnx'));
    await assert.rejects(run(process.execPath, [cli, 'models', 'quantize', dir, '--exclude', '(']), (error: { stderr: string; code: number }) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, /models quantize: --exclude: Invalid regular expression/);
      return true;
    });
  });
});
