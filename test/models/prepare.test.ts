import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
import { generateDecoderModel, generateModel, type GeneratedDecoder } from '../../server/modelgen/index.ts';
import { SeededRandom } from '../../server/modelgen/graph.ts';
import { prepareModelDir, PrepareError } from '../../server/models/prepare.ts';
import { PREPARED_OUTPUT, preparedInfo } from '../../server/models/prepare-graph.ts';
import { tinyDecoder } from '../support/decoder-models.ts';
import { decoderGeometry, DecoderReference, paddedFeeds, type PaddingSide, type YesNoLogits } from '../support/llm-reference.ts';

const { onnx } = onnxProto;
const VOCAB = 4096;
const TOLERANCE = 1e-4;

let root: string;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'prepare-test-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Token rows of lengths 2..41 over the tokenizer's ordinary tokens: what prompts of different length look like. */
function tokenRows(count: number, seed: number): number[][] {
  const random = new SeededRandom(seed);
  return Array.from({ length: count }, () => Array.from({ length: 2 + Math.floor(random.uniform() * 40) }, () => 4 + Math.floor(random.uniform() * 3000)));
}

/** Batch compositions: all together, one by one, and shuffled groups of 3 (a row lands beside different neighbours). */
function compositions(count: number): number[][][] {
  const all = Array.from({ length: count }, (_, i) => i);
  const random = new SeededRandom(9);
  const shuffled = [...all].sort(() => random.uniform() - 0.5);
  const groups: number[][] = [];
  for (let i = 0; i < shuffled.length; i += 3) groups.push(shuffled.slice(i, i + 3));
  return [[all], all.map((i) => [i]), groups];
}

async function yesNoOfBatch(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, rows: number[][], side: PaddingSide, model: GeneratedDecoder): Promise<YesNoLogits[]> {
  if (session.outputNames.includes(PREPARED_OUTPUT)) {
    const out = (await session.run(feeds, [PREPARED_OUTPUT]))[PREPARED_OUTPUT] as ort.Tensor;
    assert.deepEqual(out.dims, [rows.length, 2], 'prepared output is [batch, 2]');
    const data = out.data as Float32Array;
    return rows.map((_, b) => ({ yes: data[b * 2] as number, no: data[b * 2 + 1] as number }));
  }
  // The un-cut graph, batched: pick each row's last real position by hand.
  const logits = (await session.run(feeds, ['logits'])).logits as ort.Tensor;
  const [, width, vocab] = logits.dims as [number, number, number];
  const data = logits.data as Float32Array;
  return rows.map((row, b) => {
    const last = side === 'left' ? width - 1 : row.length - 1;
    const base = (b * width + last) * vocab;
    return { yes: data[base + model.yesTokenId] as number, no: data[base + model.noTokenId] as number };
  });
}

function assertClose(actual: YesNoLogits, expected: YesNoLogits, what: string): void {
  assert.ok(Math.abs(actual.yes - expected.yes) <= TOLERANCE && Math.abs(actual.no - expected.no) <= TOLERANCE, `${what}: ${JSON.stringify(actual)} vs reference ${JSON.stringify(expected)}`);
}

for (const { flavour, withPast } of [
  { flavour: 'gemma', withPast: true },
  { flavour: 'qwen3', withPast: false },
] as const) {
  describe(`prepared ${flavour} graph (${withPast ? 'with' : 'without'} past)`, () => {
    test('equals the one-at-a-time reference, like the batched un-cut graph, on either padding side and in any batch', async () => {
      const full = await tinyDecoder({ flavour, withPast, vocabSize: VOCAB });
      const prepared = await tinyDecoder({ flavour, withPast, vocabSize: VOCAB, form: 'prepared' });
      const reference = await DecoderReference.load(full.modelPath);
      const rows = tokenRows(10, flavour === 'gemma' ? 1 : 2);
      const expected = await Promise.all(rows.map((row) => reference.yesNo(row, full.yesTokenId, full.noTokenId)));
      assert.ok(new Set(expected.map((e) => e.yes.toFixed(3))).size > 5, 'different rows score differently');

      for (const [form, model] of [
        ['prepared', prepared],
        ['un-cut', full],
      ] as const) {
        const session = await ort.InferenceSession.create(model.modelPath);
        const geometry = await decoderGeometry(model.dir, session);
        for (const side of ['left', 'right'] as const) {
          for (const batches of compositions(rows.length)) {
            for (const batch of batches) {
              const batchRows = batch.map((i) => rows[i] as number[]);
              const got = await yesNoOfBatch(session, paddedFeeds(batchRows, { side, padId: model.padTokenId, geometry }), batchRows, side, model);
              batch.forEach((i, k) => assertClose(got[k] as YesNoLogits, expected[i] as YesNoLogits, `${form} ${side}-padded row ${i} in a batch of ${batch.length}`));
            }
          }
        }
        await session.release();
      }
      await reference.release();
    });
  });
}

describe('the prepared graph never makes [batch, seq, vocab]', () => {
  test('one output [batch, 2]; the embedding feeds only Gather; no [hidden, vocab] weight; metadata names the ids', async () => {
    const model = await generateDecoderModel({ flavour: 'gemma', vocabSize: VOCAB, form: 'prepared', outDir: path.join(root, 'structure') });
    const proto = onnx.ModelProto.decode(await readFile(model.modelPath));
    const graph = proto.graph as onnxProto.onnx.GraphProto;
    assert.deepEqual(graph.output.map((o) => o.name), [PREPARED_OUTPUT]);
    const vocabSized = graph.initializer.filter((t) => (t.dims ?? []).some((d) => Number(d) === VOCAB)).map((t) => t.name);
    assert.deepEqual(vocabSized, ['model.embed_tokens.weight']);
    const consumers = graph.node.filter((n) => (n.input ?? []).includes('model.embed_tokens.weight'));
    assert.deepEqual(consumers.map((n) => n.opType), ['Gather'], 'the embedding is only looked up, never multiplied');
    assert.deepEqual(preparedInfo(proto), { yesTokenId: model.yesTokenId, noTokenId: model.noTokenId, output: PREPARED_OUTPUT });
  });
});

describe('prepareModelDir', () => {
  test('in place: model.onnx becomes the prepared graph, the export stays as model.full.onnx; a second run is refused', async () => {
    const dir = path.join(root, 'in-place');
    const model = await generateDecoderModel({ flavour: 'qwen3', vocabSize: VOCAB, outDir: dir });
    const result = await prepareModelDir({ dir });
    assert.equal(result.yesTokenId, model.yesTokenId);
    assert.equal(result.noTokenId, model.noTokenId);
    assert.equal(result.backup, path.join(dir, 'model.full.onnx'));
    assert.equal(result.vocabSize, VOCAB);
    const session = await ort.InferenceSession.create(path.join(dir, 'model.onnx'));
    assert.deepEqual(session.outputNames, [PREPARED_OUTPUT]);
    await session.release();
    const backup = await ort.InferenceSession.create(path.join(dir, 'model.full.onnx'));
    assert.equal(backup.outputNames[0], 'logits');
    await backup.release();
    await assert.rejects(prepareModelDir({ dir }), (e: Error) => e instanceof PrepareError && /already prepared/.test(e.message));
  });

  test('answer tokens: from --yes/--no, refused when not one token or when the model type is unknown', async () => {
    const dir = path.join(root, 'tokens');
    await generateDecoderModel({ flavour: 'gemma', vocabSize: VOCAB, outDir: dir });
    await assert.rejects(prepareModelDir({ dir, yes: 'Yes', no: 'maybe', out: path.join(dir, 'x.onnx') }), /--no "maybe" is 2 tokens .* not one/);
    await assert.rejects(prepareModelDir({ dir, yes: 'Yes', no: 'Yes', out: path.join(dir, 'x.onnx') }), /are the same token/);
    const config = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'mystery' }));
    await assert.rejects(prepareModelDir({ dir, out: path.join(dir, 'x.onnx') }), /cannot tell the answer tokens of model_type mystery: pass --yes TOKEN --no TOKEN/);
    const result = await prepareModelDir({ dir, yes: 'yes', no: 'no', out: path.join(dir, 'x.onnx') });
    assert.equal(result.yesToken, 'yes');
    await access(path.join(dir, 'model.onnx')); // --out leaves the source alone
  });

  test('a cross-encoder is refused in one line naming what is missing', async () => {
    const dir = path.join(root, 'cross-encoder');
    await generateModel({ shape: 'tiny', arch: 'xlmr', outDir: dir });
    await assert.rejects(prepareModelDir({ dir, yes: '▁yes', no: '▁no', out: path.join(dir, 'x.onnx') }), (e: Error) => {
      assert.ok(e instanceof PrepareError);
      assert.equal(e.message, 'the logits output is [batch_size, 1], not [batch, seq, vocab]: not a causal-LM export (a cross-encoder?)');
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  });

  test('external data (model.onnx_data): the yes/no columns are read from it, other weights stay there; --out must stay beside it', async () => {
    const dir = path.join(root, 'external');
    const model = await generateDecoderModel({ flavour: 'qwen3', vocabSize: VOCAB, outDir: dir });
    const reference = await DecoderReference.load(model.modelPath);
    const rows = tokenRows(4, 5);
    const expected = await Promise.all(rows.map((row) => reference.yesNo(row, model.yesTokenId, model.noTokenId)));
    await reference.release();
    await moveToExternalData(model.modelPath, 'model.onnx_data');

    // onnxruntime reads external data only from the model's directory (or below it).
    const outDir = path.join(root, 'external-out');
    await mkdir(outDir);
    await assert.rejects(prepareModelDir({ dir, out: path.join(outDir, 'model.onnx') }), /which onnxruntime reads only from the model's own directory: write the prepared graph into /);
    await mkdir(path.join(root, 'external', 'prepared'));
    await assert.rejects(prepareModelDir({ dir, out: path.join(dir, 'prepared', 'model.onnx') }), /external data/);

    const result = await prepareModelDir({ dir, out: path.join(dir, 'model.prepared.onnx') });
    assert.ok(result.externalTensors > 0);
    const proto = onnx.ModelProto.decode(await readFile(result.out));
    const locations = new Set((proto.graph?.initializer ?? []).flatMap((t) => (t.externalData ?? []).filter((e) => e.key === 'location').map((e) => e.value)));
    assert.deepEqual([...locations], ['model.onnx_data']);
    assert.ok(result.bytesAfter < 100_000, 'the weights stay in model.onnx_data');
    const session = await ort.InferenceSession.create(result.out);
    const geometry = await decoderGeometry(dir, session);
    const got = await yesNoOfBatch(session, paddedFeeds(rows, { side: 'left', padId: model.padTokenId, geometry }), rows, 'left', model);
    got.forEach((g, i) => assertClose(g, expected[i] as YesNoLogits, `external-data row ${i}`));
    await session.release();
  });

  test('element-wise steps after the head (Gemma 2 soft-capping: tanh(x / 30) * 30) are kept on the two columns', async () => {
    const dir = path.join(root, 'softcap');
    const model = await generateDecoderModel({ flavour: 'gemma', vocabSize: VOCAB, outDir: dir });
    await addSoftCapping(model.modelPath, 30);
    const reference = await DecoderReference.load(model.modelPath);
    const rows = tokenRows(4, 6);
    const expected = await Promise.all(rows.map((row) => reference.yesNo(row, model.yesTokenId, model.noTokenId)));
    await reference.release();
    const result = await prepareModelDir({ dir });
    assert.deepEqual(result.epilogue, ['Div', 'Tanh', 'Mul']);
    const session = await ort.InferenceSession.create(result.out);
    const got = await yesNoOfBatch(session, paddedFeeds(rows, { side: 'right', padId: model.padTokenId, geometry: await decoderGeometry(dir, session) }), rows, 'right', model);
    got.forEach((g, i) => assertClose(g, expected[i] as YesNoLogits, `soft-capped row ${i}`));
    await session.release();
  });

  test("optimum's merged decoder (logits from an If on use_cache_branch) is refused with what to prepare instead", async () => {
    const dir = path.join(root, 'merged');
    const model = await generateDecoderModel({ flavour: 'qwen3', vocabSize: VOCAB, outDir: dir });
    await wrapLogitsInIf(model.modelPath);
    const session = await ort.InferenceSession.create(model.modelPath); // still a valid graph
    await session.release();
    await assert.rejects(prepareModelDir({ dir }), /^PrepareError: cannot cut: logits comes from an If node \(optimum's merged decoder, use_cache_branch\); prepare the un-merged decoder_model.onnx/);
  });

  test('an opset 18 export (ReduceMax takes its axes as an input there) is cut and scores the same', async () => {
    const dir = path.join(root, 'opset18');
    const model = await generateDecoderModel({ flavour: 'qwen3', vocabSize: VOCAB, outDir: dir });
    await toOpset18(model.modelPath);
    const reference = await DecoderReference.load(model.modelPath);
    const rows = tokenRows(4, 8);
    const expected = await Promise.all(rows.map((row) => reference.yesNo(row, model.yesTokenId, model.noTokenId)));
    await reference.release();
    const result = await prepareModelDir({ dir });
    const session = await ort.InferenceSession.create(result.out);
    const got = await yesNoOfBatch(session, paddedFeeds(rows, { side: 'left', padId: model.padTokenId, geometry: await decoderGeometry(dir, session) }), rows, 'left', model);
    got.forEach((g, i) => assertClose(g, expected[i] as YesNoLogits, `opset 18 row ${i}`));
    await session.release();
  });

  test('rerank-server models prepare: a summary on success, one line and exit 1 on refusal', async () => {
    const dir = path.join(root, 'cli');
    await generateDecoderModel({ flavour: 'gemma', vocabSize: VOCAB, outDir: dir });
    const run = promisify(execFile);
    const cli = path.resolve('server/cli/main.ts');
    const ok = await run(process.execPath, [cli, 'models', 'prepare', dir]);
    assert.match(ok.stdout, /logits \[batch, seq, 4096\] cut to yes_no_logits \[batch, 2\]/);
    assert.match(ok.stdout, /yes "Yes" = \d+, no "No" = \d+/);
    const refused = await run(process.execPath, [cli, 'models', 'prepare', dir]).then(
      () => assert.fail('a second prepare succeeded'),
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, 'models prepare: the graph is already prepared (its metadata says rerank.prepared=yes-no)\n');
  });
});

/** Rewrites a model so its large initializers live in an external data file, as optimum does past 2 GB. */
async function moveToExternalData(modelPath: string, location: string): Promise<void> {
  const proto = onnx.ModelProto.decode(await readFile(modelPath));
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const tensor of proto.graph?.initializer ?? []) {
    const raw = tensor.rawData;
    if (!raw || raw.length < 1024) continue;
    chunks.push(Buffer.from(raw));
    tensor.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(raw.length) },
    ];
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    offset += raw.length;
    tensor.rawData = new Uint8Array(0);
  }
  await writeFile(path.join(path.dirname(modelPath), location), Buffer.concat(chunks));
  await writeFile(modelPath, onnx.ModelProto.encode(proto).finish());
}

/** Routes the logits through an If on a use_cache_branch input, as optimum's merged decoders do. */
async function wrapLogitsInIf(modelPath: string): Promise<void> {
  const proto = onnx.ModelProto.decode(await readFile(modelPath));
  const graph = proto.graph as onnxProto.onnx.GraphProto;
  const head = graph.node.find((n) => n.output?.[0] === 'logits') as onnxProto.onnx.NodeProto;
  head.output = ['/lm_head/raw'];
  const branch = (name: string): onnxProto.onnx.IGraphProto => ({
    name,
    node: [{ name: `${name}/identity`, opType: 'Identity', input: ['/lm_head/raw'], output: [`${name}/logits`] }],
    output: [{ name: `${name}/logits`, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } }],
  });
  const GRAPH = onnx.AttributeProto.AttributeType.GRAPH;
  graph.input.push(onnx.ValueInfoProto.create({ name: 'use_cache_branch', type: { tensorType: { elemType: onnx.TensorProto.DataType.BOOL, shape: { dim: [{ dimValue: 1 }] } } } }));
  graph.node.push(
    onnx.NodeProto.create({
      name: 'optimum::if',
      opType: 'If',
      input: ['use_cache_branch'],
      output: ['logits'],
      attribute: [
        { name: 'then_branch', type: GRAPH, g: branch('with_past') },
        { name: 'else_branch', type: GRAPH, g: branch('without_past') },
      ],
    }),
  );
  await writeFile(modelPath, onnx.ModelProto.encode(proto).finish());
}

/** Moves the generated graph to opset 18, where the Reduce* ops take their axes as an input. */
async function toOpset18(modelPath: string): Promise<void> {
  const proto = onnx.ModelProto.decode(await readFile(modelPath));
  const graph = proto.graph as onnxProto.onnx.GraphProto;
  proto.opsetImport = [onnx.OperatorSetIdProto.create({ domain: '', version: 18 })];
  graph.initializer.push(onnx.TensorProto.create({ name: 'reduce_axes_last', dims: [1], dataType: onnx.TensorProto.DataType.INT64, int64Data: [-1] }));
  for (const node of graph.node) {
    if (!node.opType?.startsWith('Reduce')) continue;
    node.attribute = (node.attribute ?? []).filter((a) => a.name !== 'axes');
    node.input = [...(node.input ?? []), 'reduce_axes_last'];
  }
  await writeFile(modelPath, onnx.ModelProto.encode(proto).finish());
}

/** Inserts Gemma 2's final-logit soft-capping between the LM head's MatMul and the logits output. */
async function addSoftCapping(modelPath: string, cap: number): Promise<void> {
  const proto = onnx.ModelProto.decode(await readFile(modelPath));
  const graph = proto.graph as onnxProto.onnx.GraphProto;
  const head = graph.node.find((n) => n.output?.[0] === 'logits') as onnxProto.onnx.NodeProto;
  head.output = ['/lm_head/raw'];
  graph.initializer.push(onnx.TensorProto.create({ name: 'softcap', dims: [], dataType: onnx.TensorProto.DataType.FLOAT, floatData: [cap] }));
  graph.node.push(
    onnx.NodeProto.create({ name: 'softcap_div', opType: 'Div', input: ['/lm_head/raw', 'softcap'], output: ['/softcap/div'] }),
    onnx.NodeProto.create({ name: 'softcap_tanh', opType: 'Tanh', input: ['/softcap/div'], output: ['/softcap/tanh'] }),
    onnx.NodeProto.create({ name: 'softcap_mul', opType: 'Mul', input: ['/softcap/tanh', 'softcap'], output: ['logits'] }),
  );
  await writeFile(modelPath, onnx.ModelProto.encode(proto).finish());
}
