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

describe('quantizing a generated cross-encoder', () => {
  it('replaces every per-token MatMul by DynamicQuantizeMatMul and keeps the head float32', async () => {
    const { modelPath, dir } = await tinyModel();
    const source = await graphOf(modelPath);
    const before = source.graph?.node?.length;
    const { model, summary } = quantizeModelProto(source, { ...symmetric, perChannel: false, format: 'contrib', embeddings: false, modelDir: dir });
    assert.equal(source.graph?.node?.length, before, 'the source graph is left as it was');
    // tiny: 2 layers × (q, k, v, attention out, ffn in, ffn out)
    assert.equal(summary.quantized.length, 12);
    assert.deepEqual(summary.kept.map((k) => k.reason), ['head (classifier/pooler/score)', 'head (classifier/pooler/score)']);
    const ops = model.graph?.node?.map((n) => n.opType) ?? [];
    assert.equal(ops.filter((op) => op === 'DynamicQuantizeMatMul').length, 12);
    // Two MatMuls per layer multiply activations (attention), two are the head.
    assert.equal(ops.filter((op) => op === 'MatMul').length, 2 * 2 + 2);
    assert.ok(model.opsetImport?.some((o) => o.domain === 'com.microsoft'));
    const weights = model.graph?.initializer?.filter((t) => /encoder\..*\.(query|key|value|dense)\.weight$/.test(t.name ?? '')) ?? [];
    assert.deepEqual(weights.map((w) => w.name), [], 'the float32 weights it replaced are gone');
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
    await stat(path.join(dir, 'model_int8.onnx'));
    await assert.rejects(run(process.execPath, [cli, 'models', 'quantize', dir, '--exclude', '(']), (error: { stderr: string; code: number }) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, /models quantize: --exclude: Invalid regular expression/);
      return true;
    });
  });
});
