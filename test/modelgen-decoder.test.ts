import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import ort from 'onnxruntime-node';
import { Tokenizer } from 'tokenizers';
import { generateDecoderModel, type DecoderFlavour } from '../server/modelgen/index.ts';
import { decoderGeometry, paddedFeeds } from './support/llm-reference.ts';

let root: string;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'modelgen-decoder-test-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

const SPECIALS: Record<DecoderFlavour, string[]> = {
  gemma: ['<pad>', '<eos>', '<bos>', '<unk>'],
  qwen3: ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<think>', '</think>'],
};

for (const flavour of ['gemma', 'qwen3'] as const) {
  describe(`generated ${flavour} decoder`, () => {
    test('tokenizer: answer words are single tokens, template tokens keep their ids, config.json agrees', async () => {
      const model = await generateDecoderModel({ flavour, vocabSize: 4096, outDir: path.join(root, `${flavour}-tok`) });
      const tokenizer = Tokenizer.fromFile(model.tokenizerPath);
      const ids = async (text: string): Promise<number[]> => (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
      for (const word of ['Yes', 'yes', 'No', 'no', ' Yes', ' no']) assert.equal((await ids(word)).length, 1, `${JSON.stringify(word)} is one token`);
      assert.deepEqual(await ids(model.yesToken), [model.yesTokenId]);
      assert.deepEqual(await ids(model.noToken), [model.noTokenId]);
      assert.notEqual(model.yesTokenId, model.noTokenId);
      for (const special of SPECIALS[flavour]) {
        assert.deepEqual(await ids(`x${special}y`), [...(await ids('x')), model.specialTokens[special], ...(await ids('y'))], special);
      }
      // Text round-trips through the byte-level BPE, non-ASCII included.
      const text = 'Given a query A: what is Paris? B: Paris — la capitale de la France. 東京\n\nyes';
      assert.equal(await tokenizer.decode(await ids(text), false), text);
      const withSpecials = (await tokenizer.encode('hello', null)).getTokens();
      assert.deepEqual(withSpecials[0] === '<bos>', flavour === 'gemma', 'gemma prepends <bos>, qwen3 adds nothing');

      const config = JSON.parse(await readFile(model.configPath, 'utf8')) as Record<string, unknown>;
      assert.equal(config.model_type, flavour);
      assert.equal(config.vocab_size, 4096);
      assert.equal(config.num_hidden_layers, model.numLayers);
      assert.equal(config.num_key_value_heads, model.numKvHeads);
      assert.equal(config.eos_token_id, model.specialTokens[flavour === 'gemma' ? '<eos>' : '<|im_end|>']);
      if (flavour === 'gemma') assert.equal(config.pad_token_id, model.padTokenId);
    });

    test('graph: text-generation I/O with and without past, logits [batch, seq, vocab], causal', async () => {
      for (const withPast of [true, false]) {
        const model = await generateDecoderModel({ flavour, vocabSize: 4096, withPast, outDir: path.join(root, `${flavour}-${withPast}`) });
        const session = await ort.InferenceSession.create(model.modelPath);
        const past = withPast ? Array.from({ length: model.numLayers }, (_, i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]).flat() : [];
        const present = past.map((name) => name.replace('past_key_values', 'present'));
        assert.deepEqual(session.inputNames, ['input_ids', 'attention_mask', 'position_ids', ...past]);
        assert.deepEqual(session.outputNames, ['logits', ...present]);

        const geometry = await decoderGeometry(model.dir, session);
        const rows = [
          [10, 20, 30, 40, 50],
          [10, 20, 30, 41, 51],
        ];
        const out = await session.run(paddedFeeds(rows, { side: 'right', padId: model.padTokenId, geometry }));
        assert.deepEqual(out.logits?.dims, [2, 5, 4096]);
        if (withPast) assert.deepEqual(out['present.0.key']?.dims, [2, model.numKvHeads, 5, model.headDim]);
        const logits = out.logits?.data as Float32Array;
        const at = (row: number, pos: number): number[] => Array.from(logits.subarray((row * 5 + pos) * 4096, (row * 5 + pos) * 4096 + 8));
        // The rows share their first three tokens: a causal model gives them the same logits there, and not after.
        for (let pos = 0; pos < 3; pos++) at(0, pos).forEach((v, i) => assert.ok(Math.abs(v - (at(1, pos)[i] as number)) < 1e-5));
        assert.ok(at(0, 4).some((v, i) => Math.abs(v - (at(1, 4)[i] as number)) > 1e-3), 'different tokens, different logits');
        await session.release();
      }
    });
  });
}

test('same options and seed give the same bytes; another seed other weights', async () => {
  const a = await generateDecoderModel({ flavour: 'qwen3', vocabSize: 4096, outDir: path.join(root, 'seed-a') });
  const b = await generateDecoderModel({ flavour: 'qwen3', vocabSize: 4096, outDir: path.join(root, 'seed-b') });
  const c = await generateDecoderModel({ flavour: 'qwen3', vocabSize: 4096, seed: 7, outDir: path.join(root, 'seed-c') });
  const [bytesA, bytesB, bytesC] = await Promise.all([a, b, c].map((m) => readFile(m.modelPath)));
  assert.ok(bytesA?.equals(bytesB as Buffer));
  assert.ok(!bytesA?.equals(bytesC as Buffer));
  assert.equal(await readFile(a.tokenizerPath, 'utf8'), await readFile(c.tokenizerPath, 'utf8'));
});

test('a vocabulary smaller than the tokenizer, an unknown flavour or form is refused by name', async () => {
  await assert.rejects(generateDecoderModel({ flavour: 'gemma', vocabSize: 100, outDir: path.join(root, 'x') }), /vocab size must be an integer of at least \d+/);
  await assert.rejects(generateDecoderModel({ flavour: 'llama' as DecoderFlavour, outDir: path.join(root, 'x') }), /unknown decoder flavour "llama"/);
  await assert.rejects(generateDecoderModel({ flavour: 'gemma', form: 'half' as 'full', outDir: path.join(root, 'x') }), /unknown form "half"/);
});

test('npm run models:generate -- --decoder: writes the chosen form, refuses an unknown flavour with usage', async () => {
  const run = promisify(execFile);
  const main = path.resolve('server/modelgen/main.ts');
  const outDir = path.join(root, 'cli');
  const { stdout } = await run(process.execPath, [main, '--decoder', 'gemma', '--form', 'prepared', '--vocab', '4000', '--no-past', '--out', outDir]);
  assert.match(stdout, /generated gemma decoder \(tiny, vocab 4000, prepared, without past, seed 42\)/);
  assert.match(stdout, /answer tokens: Yes=\d+ No=\d+/);
  const session = await ort.InferenceSession.create(path.join(outDir, 'model.onnx'));
  assert.deepEqual(session.inputNames, ['input_ids', 'attention_mask', 'position_ids']);
  assert.deepEqual(session.outputNames, ['yes_no_logits']);
  await session.release();
  const refused = await run(process.execPath, [main, '--decoder', 'llama']).then(
    () => assert.fail('an unknown flavour was accepted'),
    (error: { code: number; stderr: string }) => error,
  );
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /^--decoder must be one of gemma, qwen3, got "llama"\n\nUsage:/);
});
