import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import tokenizers from 'tokenizers';
import type { Tokenizer as TokenizerType, TruncationOptions } from 'tokenizers';
import { RerankError } from '../../server/errors.ts';
import { loadOnnxModel, type PairScorer } from '../../server/engine/onnx-model.ts';
import { PairTokenizer, type EncodedPair, type TokenizerLike } from '../../server/engine/pair-tokenizer.ts';
import { silentLogger } from '../../server/logger.ts';
import { tinyModel } from '../support/models.ts';

/**
 * Cutting texts before tokenizing (server/engine/text-cut.ts) must keep exactly the tokens — and so the
 * scores — that tokenizing the whole text and truncating gives, while the tokenizer sees a bounded
 * prefix of a huge text. Checked on the generated BERT (WordPiece) and XLM-R (Unigram) tokenizers and on
 * the real bert-base-uncased tokenizer of ../shared/models when it is there.
 */

const { Tokenizer } = tokenizers;
const LONGEST_FIRST = 'LongestFirst' as NonNullable<TruncationOptions['strategy']>;
const SHARED_MODEL = path.resolve(import.meta.dirname, '../../../shared/models/tiny-random-bert-cross-encoder');
const SHARED_ABSENT = existsSync(path.join(SHARED_MODEL, 'tokenizer.json'))
  ? false
  : `the real bert-base-uncased tokenizer is not at ${SHARED_MODEL}`;

interface Subject {
  name: string;
  files: () => Promise<{ tokenizerPath: string; modelPath: string }>;
  skip: string | false;
}

const SUBJECTS: Subject[] = [
  { name: 'generated BERT WordPiece', files: () => tinyModel(), skip: false },
  { name: 'generated XLM-R Unigram', files: () => tinyModel({ arch: 'xlmr', logits: 'batch' }), skip: false },
  {
    name: 'real bert-base-uncased',
    files: () => Promise.resolve({ tokenizerPath: path.join(SHARED_MODEL, 'tokenizer.json'), modelPath: path.join(SHARED_MODEL, 'model.onnx') }),
    skip: SHARED_ABSENT,
  },
];

function rawTokenizer(tokenizerPath: string): TokenizerType {
  const tokenizer = Tokenizer.fromFile(tokenizerPath);
  tokenizer.disablePadding();
  tokenizer.disableTruncation();
  return tokenizer;
}

/** A PairTokenizer over a real tokenizer that records how many characters each encode was given. */
function watched(tokenizerPath: string): { tokenizer: PairTokenizer; seen: number[] } {
  const raw = rawTokenizer(tokenizerPath);
  const seen: number[] = [];
  const size = (input: unknown) => (typeof input === 'string' ? input.length : 0);
  const like: TokenizerLike = {
    encode: (sentence, pair, options) => {
      seen.push(size(sentence) + size(pair));
      return raw.encode(sentence, pair, options);
    },
    setTruncation: (maxLength, options) => raw.setTruncation(maxLength, options),
    tokenToId: (token) => raw.tokenToId(token),
  };
  return { tokenizer: PairTokenizer.wrap(like), seen };
}

/** The reference: the whole texts tokenized, truncated longest-first to maxLength by the tokenizer itself. */
async function fullText(raw: TokenizerType, query: string, document: string, maxLength: number): Promise<EncodedPair> {
  raw.setTruncation(maxLength, { strategy: LONGEST_FIRST });
  const encoding = await raw.encode(query, document);
  return { ids: Int32Array.from(encoding.getIds()), typeIds: Uint8Array.from(encoding.getTypeIds()), length: encoding.getLength() };
}

/** Deterministic text with what tokenizers treat specially: accents, combining marks, final sigma, CJK, emoji, long words, odd spaces. */
function prose(seed: number, chars: number): string {
  const pieces = [
    'the', 'river', 'City', 'water,', 'stone.', 'market', 'history', 'café', 'naïve', 'ΟΔΟΣ', 'Σίσυφος', '東京大学',
    'emoji😀here', 'e\u0301te\u0301', '12,345.67', "don't", 'x'.repeat(130), 'zero\u200bwidth', 'İstanbul', 'ﬁne',
    '(quoted)', 'https://example.com/a?b=c', 'ǅemal', 'tab-separated', '\u00a0', 'UPPER', 'mixedCaseWord',
  ];
  const separators = [' ', ' ', ' ', ' ', '  ', '\n', '\t', ' \n ', '\u3000', '\r\n'];
  let state = seed >>> 0;
  const next = (n: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
  const parts: string[] = [];
  let length = 0;
  while (length < chars) {
    const piece = `${pieces[next(pieces.length)]}${separators[next(separators.length)]}`;
    parts.push(piece);
    length += piece.length;
  }
  return parts.join('');
}

const assertSamePair = (actual: EncodedPair, expected: EncodedPair, what: string) => {
  assert.deepEqual([...actual.ids], [...expected.ids], `${what}: ids`);
  assert.deepEqual([...(actual.typeIds ?? [])], [...(expected.typeIds ?? [])], `${what}: segment ids`);
};

describe('PairTokenizer cuts long texts before tokenizing without changing the kept tokens', () => {
  for (const subject of SUBJECTS) {
    it(`${subject.name}: long documents and queries encode as the whole texts do`, { skip: subject.skip }, async () => {
      const { tokenizerPath } = await subject.files();
      const raw = rawTokenizer(tokenizerPath);
      const { tokenizer, seen } = watched(tokenizerPath);
      const documents = [1, 2, 3].map((seed) => prose(seed, 20_000));
      for (const maxLength of [16, 61, 512]) {
        const queries = ['what is the history of the river', prose(7, maxLength * 2), prose(8, 20_000)];
        for (const [q, query] of queries.entries()) {
          seen.length = 0;
          const pairs = await tokenizer.encodePairs(query, documents, { maxLength, withTypeIds: true });
          assert.ok(Math.max(...seen) < 20_000, `maxLength ${maxLength}: the tokenizer never saw a whole document (${Math.max(...seen)} chars)`);
          for (const [d, document] of documents.entries()) {
            assertSamePair(pairs[d] as EncodedPair, await fullText(raw, query, document, maxLength), `maxLength ${maxLength}, query ${q}, document ${d}`);
          }
        }
      }
    });

    it(`${subject.name}: a word the first bound falls inside is kept whole (a split word would tokenize otherwise)`, { skip: subject.skip }, async () => {
      const { tokenizerPath } = await subject.files();
      const raw = rawTokenizer(tokenizerPath);
      const { tokenizer } = watched(tokenizerPath);
      // WordPiece makes one [UNK] of a word over 100 characters, and many pieces of its first 98.
      for (const word of ['x'.repeat(5000), 'internationalization'.repeat(250), '東京'.repeat(2000)]) {
        const document = `${'river '.repeat(5)}${word} ${prose(10, 5000)}`;
        for (const maxLength of [16, 17, 24]) {
          const [pair] = await tokenizer.encodePairs('river', [document], { maxLength, withTypeIds: true });
          assertSamePair(pair as EncodedPair, await fullText(raw, 'river', document, maxLength), `${word.slice(0, 12)}…, maxLength ${maxLength}`);
        }
      }
    });

    it(`${subject.name}: the tokens kept depend on each text's length only up to maxLength (what the cut relies on)`, { skip: subject.skip }, async () => {
      const { tokenizerPath } = await subject.files();
      const raw = rawTokenizer(tokenizerPath);
      const words = (count: number, offset: number) => prose(offset, count * 40).split(/\s+/u).filter(Boolean).slice(0, count).join(' ');
      for (const maxLength of [13, 16]) {
        raw.setTruncation(maxLength, { strategy: LONGEST_FIRST });
        const most = 2 * maxLength + 2;
        const queries = Array.from({ length: most + 1 }, (_, count) => words(count, 11));
        const documents = Array.from({ length: most + 1 }, (_, count) => words(count, 5));
        const count = async (text: string) => (await raw.encode(text, null, { addSpecialTokens: false })).getLength();
        // The shortest prefix of whole words that counts maxLength tokens: what the cut may hand the tokenizer.
        const shortest = async (texts: string[]) => {
          for (const [words, text] of texts.entries()) if (words > 0 && (await count(text)) >= maxLength) return words;
          throw new Error('no prefix holds maxLength tokens');
        };
        const queryCut = await shortest(queries);
        const documentCut = await shortest(documents);
        const pair = (q: number, d: number) => fullText(raw, queries[q] as string, documents[d] as string, maxLength);
        // Each whole pair against the pair of the cut document, and of the cut query when the query is long.
        const withCutQuery = new Map<number, Promise<EncodedPair>>();
        const check = async (q: number, cutDocument: Promise<EncodedPair>, d: number) => {
          const whole = await pair(q, d);
          assertSamePair(await cutDocument, whole, `maxLength ${maxLength}: query ${q} words, document ${d} cut to ${documentCut}`);
          if (queryCut < q) {
            if (!withCutQuery.has(d)) withCutQuery.set(d, pair(queryCut, d));
            assertSamePair(await (withCutQuery.get(d) as Promise<EncodedPair>), whole, `maxLength ${maxLength}: query ${q} words cut to ${queryCut}, document ${d}`);
          }
        };
        const cells: Promise<void>[] = [];
        for (let q = 1; q <= most; q++) {
          const cutDocument = pair(q, documentCut);
          for (let d = documentCut + 1; d <= most; d++) cells.push(check(q, cutDocument, d));
        }
        await Promise.all(cells);
      }
    });
  }
});

describe('PairTokenizer on a huge text', () => {
  const huge = prose(42, 4 * 1024 * 1024);

  it('tokenizes a bounded prefix of a 4 MiB document and a 4 MiB query', async () => {
    const { tokenizer, seen } = watched((await tinyModel()).tokenizerPath);
    const pairs = await tokenizer.encodePairs(huge, [huge, 'a short document'], { maxLength: 512 });
    assert.equal(pairs[0]?.length, 512);
    // The first prefix is 512 × 8 characters; one growth step at most: 4 × that.
    const limit = 4 * 512 * 8 + 200;
    assert.ok(Math.max(...seen) <= 2 * limit, `largest encode ${Math.max(...seen)} chars, over ${2 * limit}`);
    const total = seen.reduce((a, b) => a + b, 0);
    assert.ok(total <= 5 * limit, `${total} chars tokenized in all for 8 MiB of text`);
  });

  it('with truncate: false, refuses the huge document naming it, having tokenized a bounded prefix', async () => {
    const { tokenizer, seen } = watched((await tinyModel()).tokenizerPath);
    await assert.rejects(tokenizer.encodePairs('a query', ['fits', huge], { maxLength: 512, truncate: false }), (error: unknown) => {
      assert.ok(error instanceof RerankError);
      assert.equal(error.kind, 'payload_too_large');
      assert.equal(error.field, 'documents.1');
      return true;
    });
    assert.ok(Math.max(...seen) < 100_000, `largest encode ${Math.max(...seen)} chars`);
  });
});

describe('scores of long documents', () => {
  const open: PairScorer[] = [];
  after(async () => {
    await Promise.all(open.map((model) => model.close()));
  });

  for (const subject of SUBJECTS) {
    it(`${subject.name}: the same scores as scoring the whole texts`, { skip: subject.skip }, async () => {
      const files = await subject.files();
      const tokenizer = PairTokenizer.load({ tokenizerPath: files.tokenizerPath });
      const model = await loadOnnxModel({ modelPath: files.modelPath, device: 'cpu', padId: tokenizer.padId, logger: silentLogger(), thread: 'main' });
      open.push(model);
      const withTypeIds = model.description.takesTypeIds;
      const raw = rawTokenizer(files.tokenizerPath);
      const query = 'what is the history of the city market';
      const documents = [4, 5, 6, 7].map((seed) => prose(seed, 50_000));
      const cut = await tokenizer.encodePairs(query, documents, { maxLength: 512, withTypeIds });
      const whole = await Promise.all(
        documents.map(async (document) => {
          const pair = await fullText(raw, query, document, 512);
          return withTypeIds ? pair : { ids: pair.ids, length: pair.length };
        }),
      );
      const scoresCut = [...(await model.run(cut)).logits];
      const scoresWhole = [...(await model.run(whole)).logits];
      assert.deepEqual(scoresCut, scoresWhole);
      assert.equal(new Set(scoresWhole).size, documents.length, 'different documents, different scores');
    });
  }
});
