import tokenizers from 'tokenizers';
import type { Tokenizer as TokenizerType } from 'tokenizers';
import { RerankError } from '../errors.ts';
import type { EncodedPair, EncodeOptions } from './pair-tokenizer.ts';
import { describeToken, HeadConfigError, type CausalLmHead, type TokenRef } from './prompt-template.ts';

const { Tokenizer } = tokenizers;

/**
 * Encodes (query, document) pairs into an LLM reranker's prompt (see prompt-template.ts).
 *
 * Each segment of the template is tokenized on its own, as the model cards do; a segment holding
 * `{query}` or `{document}` is tokenized with the texts in place, and the character offsets of its tokens
 * say which tokens came from the query, the document or the fixed text around them. Untruncated, the
 * ids are exactly the model card's. Over `maxLength`, the fixed text stays whole and the query and
 * document tokens are cut from their ends, longest first (ties cut the document), as Hugging Face's
 * `longest_first` does.
 */

/** What both kinds of encoder offer the engine: a request's pairs, encoded for its model. */
export interface PairEncoder {
  readonly padId: number;
  encodePairs(query: string, documents: readonly string[], options: EncodeOptions): Promise<EncodedPair[]>;
}

const PAD_TOKENS = ['<pad>', '<|endoftext|>', '<|pad|>', '[PAD]'];

/**
 * A tokenizer.json loaded for prompts: its own instance with padding and truncation off (a cross-encoder's
 * PairTokenizer sets truncation on its instance), so versions may share it whatever their maxLength.
 */
export class PromptTokenizer {
  readonly padId: number;
  readonly #tokenizer: TokenizerType;

  private constructor(tokenizer: TokenizerType, padId: number) {
    this.#tokenizer = tokenizer;
    this.padId = padId;
  }

  static load(options: { tokenizerPath: string; padId?: number }): PromptTokenizer {
    let tokenizer: TokenizerType;
    try {
      tokenizer = Tokenizer.fromFile(options.tokenizerPath);
    } catch (error) {
      throw new Error(`load tokenizer ${options.tokenizerPath}: ${(error as Error).message}`, { cause: error });
    }
    tokenizer.disablePadding();
    tokenizer.disableTruncation();
    let padId = options.padId;
    for (const token of PAD_TOKENS) padId ??= tokenizer.tokenToId(token) ?? undefined;
    return new PromptTokenizer(tokenizer, padId ?? 0);
  }

  tokenToId(token: string): number | undefined {
    return this.#tokenizer.tokenToId(token) ?? undefined;
  }

  idToToken(id: number): string | undefined {
    return this.#tokenizer.idToToken(id) ?? undefined;
  }

  get vocabSize(): number {
    return this.#tokenizer.getVocabSize(true);
  }

  /** Token ids and their [start, end) character offsets (code points), special tokens of the text included. */
  async encode(text: string): Promise<{ ids: number[]; offsets: number[][] }> {
    const encoding = await this.#tokenizer.encode(text, null, { addSpecialTokens: false });
    return { ids: encoding.getIds(), offsets: encoding.getOffsets() };
  }
}

type FieldName = 'query' | 'document' | 'instruction';
const FIELD = /\{(query|document|instruction)\}/g;
/** Text of the template, or where a field goes. */
type Part = string | { field: FieldName };

/** A template segment: fixed tokens, or text with the query and document in it, tokenized per pair. */
type Segment = { kind: 'fixed'; ids: number[] } | { kind: 'fields'; parts: Part[] };

/** Which of the cut fields a token belongs to; `fixed` tokens are never cut. */
const FIXED = 0;
const QUERY = 1;
const DOCUMENT = 2;

export interface PromptFormatInfo {
  yesId: number;
  /** Absent: a custom `logit` head that names no "no" token. */
  noId?: number;
  /** Tokens of the template itself (no query, no document): the least `maxLength` can be is this plus 2. */
  fixedTokens: number;
}

/**
 * A causal-lm head bound to a tokenizer: fixed segments tokenized once, yes/no ids resolved. `create`
 * fails with a HeadConfigError naming what the tokenizer lacks.
 */
export class PromptEncoder implements PairEncoder {
  readonly padId: number;
  readonly info: PromptFormatInfo;
  readonly #tokenizer: PromptTokenizer;
  readonly #segments: Segment[];

  private constructor(tokenizer: PromptTokenizer, segments: Segment[], info: PromptFormatInfo) {
    this.#tokenizer = tokenizer;
    this.padId = tokenizer.padId;
    this.#segments = segments;
    this.info = info;
  }

  static async create(tokenizer: PromptTokenizer, head: CausalLmHead): Promise<PromptEncoder> {
    const missing = head.specialTokens.filter((token) => tokenizer.tokenToId(token) === undefined);
    if (missing.length > 0) {
      throw new HeadConfigError(`head: template ${head.template} writes ${missing.join(', ')}, which the tokenizer does not have as tokens: is this the model the template is for?`);
    }
    for (const special of head.specialTokens) {
      const ids = (await tokenizer.encode(special)).ids;
      if (ids.length !== 1) {
        throw new HeadConfigError(`head: template ${head.template}: the tokenizer splits ${special} into ${ids.length} tokens rather than reading it as one special token`);
      }
    }
    const info: PromptFormatInfo = { yesId: resolveToken(tokenizer, head.yes, 'yes'), fixedTokens: 0 };
    if (head.no !== undefined) info.noId = resolveToken(tokenizer, head.no, 'no');
    const segments: Segment[] = [];
    for (const text of head.segments) {
      const parts = splitFields(text).map((p) => (typeof p !== 'string' && p.field === 'instruction' ? head.instruction : p));
      if (parts.some((p) => typeof p !== 'string')) segments.push({ kind: 'fields', parts });
      else segments.push({ kind: 'fixed', ids: (await tokenizer.encode(parts.join(''))).ids });
    }
    const encoder = new PromptEncoder(tokenizer, segments, info);
    // The template's own tokens: the prompt of an empty query and document.
    for (const segment of await encoder.#encodeSegments('', '')) info.fixedTokens += segment.ids.length;
    return encoder;
  }

  encodePairs(query: string, documents: readonly string[], options: EncodeOptions): Promise<EncodedPair[]> {
    return Promise.all(documents.map((document, index) => this.encodePair(query, document, options, `documents.${index}`)));
  }

  async encodePair(query: string, document: string, options: EncodeOptions, field = 'documents'): Promise<EncodedPair> {
    const { maxLength } = options;
    if (!Number.isInteger(maxLength) || maxLength - this.info.fixedTokens < 2) {
      throw new RangeError(`maxLength ${maxLength} leaves no room for the query and document: the prompt template alone is ${this.info.fixedTokens} tokens`);
    }
    let segments;
    try {
      segments = await this.#encodeSegments(query, document);
    } catch (error) {
      throw new RerankError('tokenizer', `cannot tokenize ${field}: ${(error as Error).message}`, { field, cause: error });
    }
    const counts = [0, 0, 0];
    for (const segment of segments) for (const owner of segment.owners) counts[owner] = (counts[owner] as number) + 1;
    const [fixed, queryTokens, documentTokens] = counts as [number, number, number];
    let keepQuery = queryTokens;
    let keepDocument = documentTokens;
    const over = fixed + queryTokens + documentTokens - maxLength;
    if (over > 0) {
      if (options.truncate === false) {
        throw new RerankError('payload_too_large', `${field}: the prompt for the query and this document is longer than ${maxLength} tokens, and truncate is false`, { field });
      }
      [keepQuery, keepDocument] = longestFirst(queryTokens, documentTokens, Math.min(over, queryTokens + documentTokens));
    }
    const length = fixed + keepQuery + keepDocument;
    const ids = new Int32Array(length);
    let at = 0;
    let seenQuery = 0;
    let seenDocument = 0;
    for (const segment of segments) {
      for (let i = 0; i < segment.ids.length; i += 1) {
        const owner = segment.owners[i];
        if (owner === QUERY && seenQuery++ >= keepQuery) continue;
        if (owner === DOCUMENT && seenDocument++ >= keepDocument) continue;
        ids[at++] = segment.ids[i] as number;
      }
    }
    return { ids, length };
  }

  /** Every segment's token ids and, per token, whether it is fixed text, query or document. */
  async #encodeSegments(query: string, document: string): Promise<{ ids: number[]; owners: Uint8Array }[]> {
    return Promise.all(
      this.#segments.map(async (segment) => {
        if (segment.kind === 'fixed') return { ids: segment.ids, owners: new Uint8Array(segment.ids.length) };
        let text = '';
        let at = 0;
        const spans: { start: number; end: number; owner: number }[] = [];
        for (const part of segment.parts) {
          const value = typeof part === 'string' ? part : part.field === 'query' ? query : document;
          const length = codePoints(value);
          if (typeof part !== 'string') spans.push({ start: at, end: at + length, owner: part.field === 'query' ? QUERY : DOCUMENT });
          text += value;
          at += length;
        }
        const { ids, offsets } = await this.#tokenizer.encode(text);
        const owners = new Uint8Array(ids.length);
        for (let i = 0; i < ids.length; i += 1) {
          const start = (offsets[i] as number[])[0] as number;
          const end = (offsets[i] as number[])[1] as number;
          // A token with a character of the query or document is theirs, and is cut with them: a space of
          // the fixed text that the tokenizer merged into the first word goes with that word.
          const span = spans.find((s) => start < s.end && end > s.start);
          owners[i] = span?.owner ?? FIXED;
        }
        return { ids, owners };
      }),
    );
  }
}

/** Tokens kept of query and document when `over` must go: the longer loses first; equal, the document first. */
export function longestFirst(query: number, document: number, over: number): [number, number] {
  let q = query;
  let d = document;
  let left = over;
  const fromLonger = Math.min(left, Math.abs(q - d));
  if (q > d) q -= fromLonger;
  else d -= fromLonger;
  left -= fromLonger;
  d -= Math.ceil(left / 2);
  q -= Math.floor(left / 2);
  return [Math.max(0, q), Math.max(0, d)];
}

function resolveToken(tokenizer: PromptTokenizer, ref: TokenRef, role: 'yes' | 'no'): number {
  if ('id' in ref) {
    if (ref.id >= tokenizer.vocabSize) throw new HeadConfigError(`head: ${role} token id ${ref.id} is outside the tokenizer's vocabulary (${tokenizer.vocabSize} tokens)`);
    return ref.id;
  }
  const id = tokenizer.tokenToId(ref.token);
  if (id === undefined) {
    throw new HeadConfigError(`head: the ${role} token ${describeToken(ref)} is not a token of the tokenizer: give the token as the vocabulary spells it, or ${role}TokenId`);
  }
  return id;
}

function splitFields(text: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const match of text.matchAll(FIELD)) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    parts.push({ field: match[1] as FieldName });
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

function codePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i += 1) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i += 1;
    }
    count += 1;
  }
  return count;
}
