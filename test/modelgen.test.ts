import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { Tokenizer, type TruncationOptions } from 'tokenizers';
import { ensureModel, generateModel, type GenerateModelOptions, type GeneratedModel } from '../server/modelgen/index.ts';

const QUERY = 'what is the capital of france?';
const DOCUMENTS = [
  'Paris is the capital and most populous city of France.',
  'The mitochondria is the powerhouse of the cell.',
  'Berlin is the capital of Germany; it has about 3.7 million residents and many museums, parks and lakes.',
  'no',
];

interface ModelConfig {
  synthetic: boolean;
  model_type: string;
  vocab_size: number;
  pad_token_id: number;
  max_sequence_length: number;
  _comment: string;
}

interface Loaded {
  files: GeneratedModel;
  session: ort.InferenceSession;
  tokenizer: Tokenizer;
  config: ModelConfig;
}

let root: string;

async function load(options: Omit<GenerateModelOptions, 'outDir'>, name: string): Promise<Loaded> {
  const files = await generateModel({ ...options, outDir: path.join(root, name) });
  return {
    files,
    session: await ort.InferenceSession.create(files.modelPath),
    tokenizer: Tokenizer.fromFile(files.tokenizerPath),
    config: JSON.parse(await readFile(files.configPath, 'utf8')) as ModelConfig,
  };
}

function int64(rows: number[][]): ort.Tensor {
  const width = rows[0]?.length ?? 0;
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), (v) => BigInt(v)), [rows.length, width]);
}

/** Encodes (query, document) pairs, right-pads them to the longest, and scores them in one run. */
async function score(model: Loaded, documents: string[]): Promise<number[]> {
  const encodings = await Promise.all(documents.map((document) => model.tokenizer.encode(QUERY, document)));
  const width = Math.max(...encodings.map((e) => e.getIds().length));
  const pad = (values: number[], fill: number): number[] => [...values, ...Array<number>(width - values.length).fill(fill)];
  const feeds: Record<string, ort.Tensor> = {
    input_ids: int64(encodings.map((e) => pad(e.getIds(), model.config.pad_token_id))),
    attention_mask: int64(encodings.map((e) => pad(e.getAttentionMask(), 0))),
  };
  if (model.session.inputNames.includes('token_type_ids')) {
    feeds.token_type_ids = int64(encodings.map((e) => pad(e.getTypeIds(), 0)));
  }
  const { logits } = await model.session.run(feeds);
  assert.ok(logits);
  return Array.from(logits.data as Float32Array);
}

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'modelgen-test-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

const VARIANTS = [
  { arch: 'bert', logits: 'batch1', inputs: ['input_ids', 'attention_mask', 'token_type_ids'], dims: ['batch_size', 1] },
  { arch: 'bert', logits: 'batch', inputs: ['input_ids', 'attention_mask', 'token_type_ids'], dims: ['batch_size'] },
  { arch: 'xlmr', logits: 'batch1', inputs: ['input_ids', 'attention_mask'], dims: ['batch_size', 1] },
  { arch: 'xlmr', logits: 'batch', inputs: ['input_ids', 'attention_mask'], dims: ['batch_size'] },
] as const;

describe('generated model graph', () => {
  for (const variant of VARIANTS) {
    test(`${variant.arch} with ${variant.logits} logits has the contracted I/O and scores documents apart`, async () => {
      const model = await load({ shape: 'tiny', arch: variant.arch, logits: variant.logits }, `${variant.arch}-${variant.logits}`);
      assert.deepEqual(model.session.inputNames, variant.inputs);
      assert.deepEqual(model.session.outputNames, ['logits']);
      for (const input of model.session.inputMetadata) {
        assert.ok(input.isTensor);
        assert.equal(input.type, 'int64');
        assert.deepEqual(input.shape, ['batch_size', 'sequence_length']);
      }
      const [output] = model.session.outputMetadata;
      assert.ok(output?.isTensor);
      assert.equal(output.type, 'float32');
      assert.deepEqual(output.shape, variant.dims);

      const logits = await score(model, DOCUMENTS);
      assert.equal(logits.length, DOCUMENTS.length);
      assert.ok(logits.every(Number.isFinite), `finite logits: ${logits.join(', ')}`);
      const spread = Math.max(...logits) - Math.min(...logits);
      assert.ok(spread > 0.01, `logits should differ between documents: ${logits.join(', ')}`);
      assert.equal(new Set(logits).size, logits.length);
    });
  }

  for (const arch of ['bert', 'xlmr'] as const) {
    test(`${arch}: a pair scores the same alone as inside a padded batch`, async () => {
      const model = await load({ shape: 'tiny', arch }, `padding-${arch}`);
      const batched = await score(model, DOCUMENTS);
      for (const [i, document] of DOCUMENTS.entries()) {
        const [alone] = await score(model, [document]);
        assert.ok(alone !== undefined && Math.abs(alone - batched[i]!) < 1e-4, `document ${i}: ${alone} alone, ${batched[i]} batched`);
      }
    });
  }

  test('the same options and seed give byte-identical files; another seed gives other weights', async () => {
    const first = await generateModel({ shape: 'tiny', seed: 7, outDir: path.join(root, 'seed-7-a') });
    const again = await generateModel({ shape: 'tiny', seed: 7, outDir: path.join(root, 'seed-7-b') });
    const other = await generateModel({ shape: 'tiny', seed: 8, outDir: path.join(root, 'seed-8') });
    for (const file of ['modelPath', 'tokenizerPath', 'configPath'] as const) {
      assert.ok((await readFile(first[file])).equals(await readFile(again[file])), `${file} differs between runs`);
    }
    assert.ok(!(await readFile(first.modelPath)).equals(await readFile(other.modelPath)));
    assert.ok((await readFile(first.tokenizerPath)).equals(await readFile(other.tokenizerPath)));
  });

  test('ensureModel generates once and then leaves the directory alone', async () => {
    const outDir = path.join(root, 'ensure');
    const created = await ensureModel({ shape: 'tiny', outDir });
    assert.equal(created.generated, true);
    const before = await stat(created.modelPath);
    const reused = await ensureModel({ shape: 'tiny', outDir });
    assert.equal(reused.generated, false);
    assert.equal(reused.modelPath, created.modelPath);
    assert.equal((await stat(reused.modelPath)).mtimeMs, before.mtimeMs);
  });
});

describe('generated tokenizer', () => {
  const longestFirst = (maxLength: number): TruncationOptions => ({ maxLength, strategy: 'LongestFirst' as TruncationOptions['strategy'] });

  test('bert: [CLS] query [SEP] document [SEP] with type ids 0/1, vocabulary matching config.json', async () => {
    const model = await load({ shape: 'tiny', arch: 'bert' }, 'tokenizer-bert');
    assert.equal(model.config.synthetic, true);
    assert.equal(model.config.model_type, 'bert');
    assert.match(model.config._comment, /RANDOM WEIGHTS/);
    assert.equal(model.tokenizer.getVocabSize(true), model.config.vocab_size);
    assert.equal(model.tokenizer.idToToken(model.config.pad_token_id), '[PAD]');

    const encoding = await model.tokenizer.encode('Capital of France?', 'Paris is the capital.');
    assert.deepEqual(encoding.getTokens(), ['[CLS]', 'capital', 'of', 'france', '?', '[SEP]', 'paris', 'is', 'the', 'capital', '.', '[SEP]']);
    assert.deepEqual(encoding.getTypeIds(), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert.ok(encoding.getIds().every((id) => id !== 1), 'no [UNK] for plain English');
    const unusual = await model.tokenizer.encode('rerankers', 'cross-encoders');
    assert.ok(unusual.getTokens().some((token) => token.startsWith('##')), 'unknown words split into word pieces');

    model.tokenizer.setTruncation(12, longestFirst(12));
    const truncated = await model.tokenizer.encode('a good query', 'a much longer document that will not fit into twelve tokens at all');
    assert.equal(truncated.getIds().length, 12);
    assert.deepEqual(truncated.getTokens().slice(0, 5), ['[CLS]', 'a', 'good', 'query', '[SEP]']);
    assert.equal(truncated.getTokens().at(-1), '[SEP]');
  });

  test('xlmr: <s> query </s></s> document </s>, padded with <pad> = 1', async () => {
    const model = await load({ shape: 'tiny', arch: 'xlmr' }, 'tokenizer-xlmr');
    assert.equal(model.config.model_type, 'xlm-roberta');
    assert.equal(model.config.pad_token_id, 1);
    assert.equal(model.tokenizer.idToToken(1), '<pad>');
    assert.equal(model.tokenizer.getVocabSize(true), model.config.vocab_size);

    const encoding = await model.tokenizer.encode('Capital of France?', 'Paris is the capital.');
    assert.deepEqual(encoding.getTokens(), ['<s>', '▁Capital', '▁of', '▁France', '?', '</s>', '</s>', '▁Paris', '▁is', '▁the', '▁capital', '.', '</s>']);
    assert.ok(encoding.getIds().every((id) => id !== 3), 'no <unk> for plain English');

    model.tokenizer.setTruncation(12, longestFirst(12));
    const truncated = await model.tokenizer.encode('a good query', 'a much longer document that will not fit into twelve tokens at all');
    assert.equal(truncated.getIds().length, 12);
    assert.deepEqual(truncated.getTokens().slice(0, 7), ['<s>', '▁a', '▁good', '▁query', '</s>', '</s>', '▁a']);
    assert.equal(truncated.getTokens().at(-1), '</s>');
  });
});
