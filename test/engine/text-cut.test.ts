import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CHARS_PER_TOKEN_GUESS, cutToBytes, cutToTokenBound, utf8Length, whitespaceBoundary } from '../../server/engine/text-cut.ts';

describe('whitespaceBoundary', () => {
  const cases: { text: string; from: number; at: number }[] = [
    { text: 'one two three', from: 0, at: 3 },
    { text: 'one two three', from: 4, at: 7 },
    { text: 'one two three', from: 8, at: -1 },
    { text: 'one  two', from: 4, at: -1 }, // the second space follows whitespace
    { text: 'end.\nnext', from: 1, at: 4 },
    { text: 'tab\there', from: 0, at: 3 },
    { text: 'nbsp\u00a0 x', from: 0, at: -1 }, // a space after a no-break space is not a word end
    { text: 'ideographic\u3000word next', from: 0, at: 16 },
    { text: ' leading', from: 0, at: -1 },
    { text: 'nowhitespaceatall', from: 0, at: -1 },
  ];
  for (const { text, from, at } of cases) {
    it(`${JSON.stringify(text)} from ${from} → ${at}`, () => assert.equal(whitespaceBoundary(text, from), at));
  }
});

describe('cutToBytes', () => {
  it('keeps a text that fits, whole', () => {
    assert.equal(cutToBytes('short text', 1024), 'short text');
    const exact = 'é'.repeat(512);
    assert.equal(cutToBytes(exact, 1024), exact);
  });

  it('never splits a character, and fits the limit in UTF-8', () => {
    for (const unit of ['é', '東', '😀', 'a']) {
      const text = unit.repeat(2000);
      for (const limit of [1021, 1022, 1023, 1024]) {
        const cut = cutToBytes(text, limit);
        assert.ok(utf8Length(cut) <= limit, `${unit} at ${limit}: ${utf8Length(cut)} bytes`);
        assert.ok(utf8Length(cut) > limit - 4, `${unit} at ${limit}: as long as fits`);
        assert.ok(text.startsWith(cut));
        assert.doesNotMatch(cut, /[\ud800-\udbff]$/u, 'no lone high surrogate at the end');
      }
    }
  });

  it('ends at the last whole word when there is one near the limit, else at the limit', () => {
    assert.equal(cutToBytes('alpha beta gamma delta', 14), 'alpha beta');
    const solid = `word ${'x'.repeat(5000)}`;
    assert.equal(cutToBytes(solid, 4096), solid.slice(0, 4096), 'a word end 4000 characters back is not worth the loss');
  });
});

describe('cutToTokenBound', () => {
  /** Counts one token per whitespace-separated word, like the simplest tokenizer; records what it saw. */
  const wordCounter = () => {
    const seen: string[] = [];
    const countTokens = (prefix: string) => {
      seen.push(prefix);
      return Promise.resolve(prefix.split(/\s+/u).filter(Boolean).length);
    };
    return { seen, countTokens };
  };

  it('keeps a text no longer than the first bound, without counting', async () => {
    const { seen, countTokens } = wordCounter();
    const text = 'word '.repeat(10);
    assert.equal(await cutToTokenBound(text, { maxTokens: 8, countTokens }), text);
    assert.deepEqual(seen, []);
  });

  it('cuts a long text at the first whole word past the bound when that prefix holds maxTokens', async () => {
    const { seen, countTokens } = wordCounter();
    const text = 'word '.repeat(100_000);
    const cut = await cutToTokenBound(text, { maxTokens: 8, countTokens });
    assert.equal(cut, text.slice(0, whitespaceBoundary(text, 8 * CHARS_PER_TOKEN_GUESS)));
    assert.ok(text.startsWith(cut) && cut.endsWith('word'));
    assert.equal(seen.length, 1);
  });

  it('grows the prefix while it holds too few tokens (whitespace makes none), and counts only prefixes', async () => {
    const { seen, countTokens } = wordCounter();
    const text = `${' '.repeat(5000)}${'word '.repeat(100_000)}`;
    const cut = await cutToTokenBound(text, { maxTokens: 8, countTokens });
    assert.deepEqual(seen, [text.slice(0, 5004), cut], 'one word first, then a prefix four times as long');
    assert.equal(cut, text.slice(0, whitespaceBoundary(text, 4 * 5004)));
    assert.ok((await countTokens(cut)) >= 8);
  });

  it('keeps the whole text when no prefix holds maxTokens or there is no boundary past the bound', async () => {
    const { countTokens } = wordCounter();
    const sparse = `a${' '.repeat(10_000)}b`;
    assert.equal(await cutToTokenBound(sparse, { maxTokens: 8, countTokens }), sparse);
    const solid = 'x'.repeat(10_000);
    assert.equal(await cutToTokenBound(solid, { maxTokens: 8, countTokens }), solid);
  });
});
