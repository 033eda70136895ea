import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RerankError } from '../../server/errors.ts';
import { PairTokenizer, readModelDirConfig } from '../../server/engine/pair-tokenizer.ts';
import { tinyModel } from '../support/models.ts';

/** `count` common words: one token each in the generated vocabularies. */
const words = (count: number, word = 'water') => Array.from({ length: count }, () => word).join(' ');

const bert = async () => PairTokenizer.load({ tokenizerPath: (await tinyModel()).tokenizerPath });

describe('PairTokenizer', () => {
  it('encodes [CLS] query [SEP] document [SEP] with segment ids when asked', async () => {
    const tokenizer = await bert();
    const pair = await tokenizer.encodePair(words(3), words(5), { maxLength: 512, withTypeIds: true });
    assert.equal(pair.length, 1 + 3 + 1 + 5 + 1);
    assert.ok(pair.ids instanceof Int32Array && pair.ids.length === pair.length);
    assert.deepEqual([...(pair.typeIds ?? [])], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    const plain = await tokenizer.encodePair(words(3), words(5), { maxLength: 512 });
    assert.equal(plain.typeIds, undefined);
    assert.deepEqual([...plain.ids], [...pair.ids]);
  });

  it('truncates longest-first: a long document loses tokens, a short query keeps all of its', async () => {
    const tokenizer = await bert();
    const pair = await tokenizer.encodePair(words(4, 'city'), words(100), { maxLength: 32, withTypeIds: true });
    assert.equal(pair.length, 32);
    const query = [...(pair.typeIds ?? [])].filter((t) => t === 0).length;
    assert.equal(query, 1 + 4 + 1, 'query and its special tokens intact');
  });

  it('truncates longest-first: both long, both cut to half the room', async () => {
    const tokenizer = await bert();
    const pair = await tokenizer.encodePair(words(30, 'river'), words(30), { maxLength: 20, withTypeIds: true });
    assert.equal(pair.length, 20);
    // 17 tokens of room: the query keeps 8, the document 9 (Hugging Face's rule).
    const typeIds = [...(pair.typeIds ?? [])];
    assert.equal(typeIds.filter((t) => t === 0).length, 1 + 8 + 1);
    assert.equal(typeIds.filter((t) => t === 1).length, 9 + 1);
  });

  it('with truncate: false, refuses an over-long pair naming the document, and takes one exactly at the limit', async () => {
    const tokenizer = await bert();
    const fits = await tokenizer.encodePair(words(3), words(27), { maxLength: 33, truncate: false });
    assert.equal(fits.length, 33);
    await assert.rejects(tokenizer.encodePairs(words(3), [words(2), words(28)], { maxLength: 33, truncate: false }), (error: unknown) => {
      assert.ok(error instanceof RerankError);
      assert.equal(error.kind, 'payload_too_large');
      assert.equal(error.field, 'documents.1');
      return true;
    });
  });

  it('follows a changed maxLength on the next call', async () => {
    const tokenizer = await bert();
    assert.equal((await tokenizer.encodePair('a', words(100), { maxLength: 64 })).length, 64);
    assert.equal((await tokenizer.encodePair('a', words(100), { maxLength: 16 })).length, 16);
    assert.equal((await tokenizer.encodePair('a', words(100), { maxLength: 512 })).length, 1 + 1 + 1 + 100 + 1);
  });

  it('encodes concurrent calls with different maxLength each under its own limit (a reload mid-traffic)', async () => {
    const tokenizer = await bert();
    const calls = Array.from({ length: 200 }, (_, i) => {
      const maxLength = [16, 64, 32][i % 3] as number;
      return tokenizer.encodePairs('a query', [words(100), words(3)], { maxLength }).then((pairs) => ({ maxLength, pairs }));
    });
    for (const { maxLength, pairs } of await Promise.all(calls)) {
      assert.equal(pairs[0]?.length, maxLength);
      assert.equal(pairs[1]?.length, 1 + 2 + 1 + 3 + 1);
    }
  });

  it('answers an input it cannot encode with a tokenizer error', async () => {
    const tokenizer = await bert();
    await assert.rejects(tokenizer.encodePairs('q', ['fine', 42 as unknown as string], { maxLength: 64 }), (error: unknown) => {
      assert.ok(error instanceof RerankError);
      assert.equal(error.kind, 'tokenizer');
      assert.equal(error.field, 'documents.1');
      return true;
    });
  });

  it("takes the pad id from config.json, else from the tokenizer's pad token", async () => {
    const xlmr = await tinyModel({ arch: 'xlmr', logits: 'batch' });
    const config = await readModelDirConfig(xlmr.configPath);
    assert.equal(config.padTokenId, 1);
    assert.equal(PairTokenizer.load({ tokenizerPath: xlmr.tokenizerPath, padId: config.padTokenId }).padId, 1);
    assert.equal(PairTokenizer.load({ tokenizerPath: xlmr.tokenizerPath }).padId, 1, '<pad> looked up');
    assert.equal((await bert()).padId, 0, '[PAD] looked up');
  });

  it('reads the model limit and the synthetic mark from config.json', async () => {
    const config = await readModelDirConfig((await tinyModel({ arch: 'xlmr', logits: 'batch' })).configPath);
    assert.equal(config.maxTokens, 512);
    assert.equal(config.synthetic, true);
    assert.deepEqual(await readModelDirConfig('/nonexistent/config.json'), { synthetic: false });
  });

  it('fails to load a missing tokenizer.json with the path in the message', () => {
    assert.throws(() => PairTokenizer.load({ tokenizerPath: '/nonexistent/tokenizer.json' }), /\/nonexistent\/tokenizer\.json/);
  });
});
