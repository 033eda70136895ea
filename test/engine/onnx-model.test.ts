import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../server/logger.ts';
import { fillInputs, flattenBatch, InputBuffers, loadOnnxModel, makeFinite, type PairScorer } from '../../server/engine/onnx-model.ts';
import { PairTokenizer, type EncodedPair } from '../../server/engine/pair-tokenizer.ts';
import { scratchDir, tinyModel, type TinyModelVariant } from '../support/models.ts';

const open: PairScorer[] = [];
after(async () => {
  await Promise.all(open.map((model) => model.close()));
});

async function load(variant: TinyModelVariant, thread: 'worker' | 'main' = 'worker') {
  const files = await tinyModel(variant);
  const tokenizer = PairTokenizer.load({ tokenizerPath: files.tokenizerPath });
  const model = await loadOnnxModel({ modelPath: files.modelPath, device: 'cpu', padId: tokenizer.padId, logger: silentLogger(), thread });
  open.push(model);
  const encode = (query: string, documents: string[]) =>
    tokenizer.encodePairs(query, documents, { maxLength: 512, withTypeIds: model.description.takesTypeIds });
  return { model, encode };
}

const DOCUMENTS = [
  'the river runs through the city',
  'water',
  'a much longer document about the history of the city and its market, its school, its music and the people who lived there for many years',
  'energy policy and the market',
];

describe('ONNX model on generated tiny models', () => {
  for (const variant of [
    { arch: 'bert', logits: 'batch1' },
    { arch: 'xlmr', logits: 'batch' },
  ] satisfies TinyModelVariant[]) {
    it(`${variant.arch} graph with logits ${variant.logits}: a pair scores the same alone and batched with other lengths`, async () => {
      const { model, encode } = await load(variant);
      assert.equal(model.description.logits, variant.logits);
      assert.equal(model.description.takesTypeIds, variant.arch === 'bert');
      assert.deepEqual(
        model.description.inputs.sort(),
        variant.arch === 'bert' ? ['attention_mask', 'input_ids', 'token_type_ids'] : ['attention_mask', 'input_ids'],
      );
      const pairs = await encode('what is the history of the city?', DOCUMENTS);
      assert.ok(new Set(pairs.map((p) => p.length)).size >= 3, 'lengths differ');
      const batched = await model.run(pairs);
      assert.equal(batched.logits.length, pairs.length);
      for (let i = 0; i < pairs.length; i += 1) {
        const alone = await model.run([pairs[i] as EncodedPair]);
        assert.ok(Math.abs((alone.logits[0] as number) - (batched.logits[i] as number)) < 1e-4, `pair ${i}: ${alone.logits[0]} vs ${batched.logits[i]}`);
      }
      assert.ok([...batched.logits].every(Number.isFinite));
      assert.ok(new Set(batched.logits).size > 1, 'different documents, different scores');
    });
  }

  it('gives the same scores in a worker thread and on the main thread', async () => {
    const worker = await load({});
    const main = await load({}, 'main');
    const pairs = await worker.encode('the city', DOCUMENTS);
    assert.deepEqual([...(await worker.model.run(pairs)).logits], [...(await main.model.run(pairs)).logits]);
  });

  it('on CPU runs a batch past cpuRunTokens as slices of its pairs, with the scores of the whole batch in batch order', async () => {
    const files = await tinyModel();
    const tokenizer = PairTokenizer.load({ tokenizerPath: files.tokenizerPath });
    const loadWith = async (cpuRunTokens: number, thread: 'worker' | 'main') => {
      const model = await loadOnnxModel({ modelPath: files.modelPath, device: 'cpu', padId: tokenizer.padId, logger: silentLogger(), thread, cpuRunTokens });
      open.push(model);
      return model;
    };
    const whole = await loadWith(Infinity, 'main');
    const pairs = await tokenizer.encodePairs('what is the history of the city?', [...DOCUMENTS, ...DOCUMENTS.slice(0, 2)], { maxLength: 512, withTypeIds: true });
    const expected = [...(await whole.run(pairs)).logits];
    const longest = Math.max(...pairs.map((p) => p.length));
    // One pair per run, then two long pairs per run; in a worker and on the main thread.
    for (const [tokens, thread] of [[1, 'worker'], [2 * longest, 'main'], [2 * longest, 'worker']] as const) {
      const sliced = await (await loadWith(tokens, thread)).run(pairs);
      assert.equal(sliced.logits.length, pairs.length);
      sliced.logits.forEach((logit, i) => assert.ok(Math.abs(logit - (expected[i] as number)) < 1e-4, `runs of ${tokens} tokens, pair ${i}: ${logit} vs ${expected[i]}`));
    }
  });

  it('serializes concurrent runs', async () => {
    const { model, encode } = await load({});
    const pairs = await encode('the city', DOCUMENTS);
    const results = await Promise.all([model.run(pairs), model.run(pairs.slice(1)), model.run(pairs)]);
    assert.deepEqual([...(results[0]?.logits ?? [])], [...(results[2]?.logits ?? [])]);
    assert.deepEqual([...(results[1]?.logits ?? [])], [...(results[0]?.logits ?? [])].slice(1));
  });

  it('asked for cuda without CUDA, falls back to CPU and says why', async (t) => {
    const files = await tinyModel();
    const model = await loadOnnxModel({ modelPath: files.modelPath, device: 'cuda', padId: 0, logger: silentLogger() });
    open.push(model);
    if (model.description.device === 'cuda') return t.skip('CUDA is present here');
    assert.equal(model.description.device, 'cpu');
    assert.match(model.description.fallbackReason ?? '', /CUDA/i);
  });

  it('refuses a file that is not an ONNX model, naming it', async () => {
    const dir = await scratchDir('garbage');
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, 'model.onnx');
    await writeFile(file, 'not a model');
    await assert.rejects(loadOnnxModel({ modelPath: file, device: 'cpu', padId: 0, logger: silentLogger() }), /model\.onnx/);
    await assert.rejects(loadOnnxModel({ modelPath: file, device: 'cpu', padId: 0, logger: silentLogger(), thread: 'main' }), /model\.onnx/);
  });
});

describe('fillInputs', () => {
  it('right-pads to the longest pair with the pad id, mask 0 and segment 0', () => {
    const pairs: EncodedPair[] = [
      { ids: Int32Array.of(2, 10, 3), typeIds: Uint8Array.of(0, 0, 1), length: 3 },
      { ids: Int32Array.of(2, 11, 12, 13, 3), typeIds: Uint8Array.of(0, 0, 1, 1, 1), length: 5 },
    ];
    const batch = flattenBatch(pairs, true);
    assert.equal(batch.width, 5);
    const out = fillTo(batch, 7);
    assert.deepEqual(out.ids, [2n, 10n, 3n, 7n, 7n, 2n, 11n, 12n, 13n, 3n]);
    assert.deepEqual(out.mask, [1n, 1n, 1n, 0n, 0n, 1n, 1n, 1n, 1n, 1n]);
    assert.deepEqual(out.types, [0n, 0n, 1n, 0n, 0n, 0n, 0n, 1n, 1n, 1n]);
  });

  it('reuses its buffers without leaking the previous batch', () => {
    const state = new InputBuffers();
    fillInputs(flattenBatch([{ ids: Int32Array.of(5, 6, 7, 8), length: 4 }], false), 0, state, false);
    fillInputs(flattenBatch([{ ids: Int32Array.of(9), length: 1 }, { ids: Int32Array.of(1, 2), length: 2 }], false), 0, state, false);
    assert.deepEqual([...state.ids.subarray(0, 4)], [9n, 0n, 1n, 2n]);
    assert.deepEqual([...state.mask.subarray(0, 4)], [1n, 0n, 1n, 1n]);
  });
});

describe('makeFinite', () => {
  it('replaces NaN and infinities and counts them', () => {
    const logits = Float32Array.of(1.5, Number.NaN, Infinity, -Infinity, -2);
    assert.equal(makeFinite(logits), 3);
    assert.ok([...logits].every(Number.isFinite));
    assert.equal(logits[0], 1.5);
    assert.equal(logits[4], -2);
    assert.ok((logits[2] as number) > 1e38 && (logits[3] as number) < -1e38 && (logits[1] as number) < -1e38);
  });
});

function fillTo(batch: ReturnType<typeof flattenBatch>, padId: number) {
  const buffers = new InputBuffers();
  const size = fillInputs(batch, padId, buffers, true);
  return { ids: [...buffers.ids.subarray(0, size)], mask: [...buffers.mask.subarray(0, size)], types: [...buffers.types.subarray(0, size)] };
}
