import { Buffer } from 'node:buffer';

/**
 * Cutting a text before it is tokenized, so that a request carrying megabytes of text costs the tokenizer
 * what the model keeps (`maxLength` tokens) rather than the whole text — without changing a single kept
 * token. Pure functions over strings: the pair tokenizer uses them, and so can any prompt builder that
 * tokenizes texts it will truncate.
 *
 * Why a cut at a whitespace boundary keeps the tokens. A Hugging Face tokenizer normalizes the text, splits
 * it into words (the pre-tokenizer), tokenizes each word on its own (WordPiece, BPE, Unigram: the model
 * never looks across a word), then truncates. Let `c` be a position where `text[c]` is an ASCII space, tab
 * or line break and `text[c - 1]` is not whitespace. Then:
 * - Normalizers act per character, or on runs that a space ends (Unicode composition: a space is a
 *   starter and composes with nothing; the final-sigma rule of lower-casing looks past case-ignorable
 *   characters only, and a space is not one; `Replace(" {2,}", " ")` runs start at the space). So the
 *   normalized `text[0, c)` is a prefix of the normalized text, ending where a space follows.
 * - Every whitespace-splitting pre-tokenizer (BERT's, `Whitespace`, `WhitespaceSplit`, `Metaspace` with
 *   splitting, byte-level BPE's regex, where a space starts the next word) ends a word at such a `c`. So
 *   the words of `text[0, c)` are the first words of the text, identical, and their tokens are the first
 *   tokens of the text's.
 * - Truncation keeps a prefix of each sequence's tokens, and how many depends on each sequence's length
 *   only up to `maxLength`: with the `tokenizers` binding in use (0.23), a pair of sequences of n1 and n2
 *   tokens keeps what a pair of min(n1, maxLength) and min(n2, maxLength) tokens keeps. That is observed,
 *   not documented, so test/engine/pair-tokenizer-cut.test.ts checks it for every pair of lengths up to
 *   2 × maxLength + 2 on three tokenizers, and checks cut against whole-text encodings. So if
 *   `text[0, c)` has at least `maxLength` tokens, the pair keeps the same tokens from it as from the
 *   whole text.
 * The one thing that is counted, not assumed, is the last condition: a prefix of N characters may hold
 * any number of tokens (whitespace and control characters make none), so the prefix is tokenized and
 * grown until it holds `maxLength` tokens or is the whole text.
 *
 * Not covered: a tokenizer that does not split on whitespace (SentencePiece with `split: false`) may
 * tokenize the last word of a prefix differently; its kept tokens stay equal as long as that word lies
 * beyond the first `maxLength` tokens, which the count ensures for every prefix but the pathological.
 * A text with no whitespace after the first bound is not cut here at all: `serving.maxDocumentBytes`
 * bounds it (see `cutToBytes`).
 */

/** Characters the first prefix gets per kept token: a guess that fits most prose at once (English is ~4.5). */
export const CHARS_PER_TOKEN_GUESS = 8;
/** Each retry tries a prefix this many times longer, so the tokenizer sees at most ~1/3 more than the final prefix. */
const GROWTH = 4;

/** A separator every whitespace-splitting pre-tokenizer ends a word at. */
const isCutSeparator = (code: number): boolean => code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
const WHITESPACE = /\s/u;

/**
 * The first position `c ≥ from` (and ≥ 1) where `text[c]` is a space, tab or line break and `text[c - 1]`
 * is not whitespace of any kind; -1 when there is none.
 */
export function whitespaceBoundary(text: string, from: number): number {
  for (let c = Math.max(1, Math.ceil(from)); c < text.length; c++) {
    if (isCutSeparator(text.charCodeAt(c)) && !WHITESPACE.test(text.charAt(c - 1))) return c;
  }
  return -1;
}

export interface TokenBoundOptions {
  /** Tokens kept from this text at most (for a pair: the pair's maxLength). */
  maxTokens: number;
  /** Tokens of a prefix, counted at least up to `maxTokens` (min(tokens, maxTokens) is enough). */
  countTokens: (prefix: string) => Promise<number>;
  /** Characters of the first prefix tried; default maxTokens × CHARS_PER_TOKEN_GUESS. */
  initialChars?: number;
}

/**
 * The shortest prefix of `text` tried, ending at a whitespace boundary, that holds at least `maxTokens`
 * tokens — or `text` itself when it is short, has no boundary past the bound, or no tried prefix holds
 * that many. Tokenizing the result and truncating to `maxTokens` keeps the same tokens as tokenizing
 * `text` (see the file comment), while the tokenizer sees at most ~4/3 of the returned prefix in counting.
 *
 * @example
 * const kept = await cutToTokenBound(document, { maxTokens: 512, countTokens: (p) => countWithTruncation(p) });
 */
export async function cutToTokenBound(text: string, options: TokenBoundOptions): Promise<string> {
  let bound = options.initialChars ?? options.maxTokens * CHARS_PER_TOKEN_GUESS;
  while (bound < text.length) {
    const at = whitespaceBoundary(text, bound);
    if (at < 0) return text;
    const prefix = text.slice(0, at);
    if ((await options.countTokens(prefix)) >= options.maxTokens) return prefix;
    bound = at * GROWTH;
  }
  return text;
}

/** UTF-8 bytes of a string, without encoding it. */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** How far `cutToBytes` looks back for a word end before it cuts inside a word. */
const WORD_END_LOOKBACK = 1024;

/**
 * The longest prefix of `text` whose UTF-8 encoding fits in `maxBytes`, never splitting a character, cut
 * back to a word end within the last WORD_END_LOOKBACK characters when there is one (so the last kept
 * word is whole). `text` itself when it fits.
 */
export function cutToBytes(text: string, maxBytes: number): string {
  // Every UTF-16 unit is at most 3 UTF-8 bytes (a surrogate pair, two units, is 4).
  if (text.length * 3 <= maxBytes || utf8Length(text) <= maxBytes) return text;
  const { read } = new TextEncoder().encodeInto(text, new Uint8Array(maxBytes));
  const fits = text.slice(0, read);
  for (let c = fits.length - 1; c >= Math.max(1, fits.length - WORD_END_LOOKBACK); c--) {
    if (isCutSeparator(fits.charCodeAt(c)) && !WHITESPACE.test(fits.charAt(c - 1))) return fits.slice(0, c);
  }
  return fits;
}
