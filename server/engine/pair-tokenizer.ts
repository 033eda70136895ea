import { readFile } from 'node:fs/promises';
import tokenizers from 'tokenizers';
import type { Tokenizer as TokenizerType, TruncationOptions } from 'tokenizers';
import { RerankError } from '../errors.ts';
import { CHARS_PER_TOKEN_GUESS, cutToTokenBound } from './text-cut.ts';

const { Tokenizer } = tokenizers;

/** One (query, document) pair as the model takes it: `[CLS] query [SEP] document [SEP]` or the model's own template. */
export interface EncodedPair {
  ids: Int32Array;
  /** Segment ids (0 for the query, 1 for the document); only for models that take `token_type_ids`. */
  typeIds?: Uint8Array;
  /** Tokens, special tokens included: `ids.length`. */
  length: number;
}

export interface EncodeOptions {
  /** Tokens per pair, special tokens included. */
  maxLength: number;
  /** Cut over-long pairs longest-first (default); when false an over-long pair is a `payload_too_large` error. */
  truncate?: boolean;
  /** Produce segment ids too (models with a `token_type_ids` input). */
  withTypeIds?: boolean;
}

export interface PairTokenizerOptions {
  tokenizerPath: string;
  /** Token id that pads a batch (config.json's pad_token_id); found from the tokenizer's special tokens when absent. */
  padId?: number;
}

// Declared `const enum` in the binding's .d.ts, which type stripping cannot use; the binding takes the name.
/** What PairTokenizer uses of a parsed `tokenizers` Tokenizer: the seam tests observe encodes through. */
export type TokenizerLike = Pick<TokenizerType, 'encode' | 'setTruncation' | 'tokenToId'>;

const LONGEST_FIRST = 'LongestFirst' as NonNullable<TruncationOptions['strategy']>;
const PAD_TOKENS = ['[PAD]', '<pad>', '<|pad|>', '<|endoftext|>'];

/**
 * Encodes (query, document) pairs with a Hugging Face tokenizer.json through the Rust `tokenizers` binding.
 * Each pair is its own `encode` call: the binding's `encodeBatch` rejects pairs, and each call runs on the
 * libuv thread pool, so tokenizing one request overlaps inference of others.
 *
 * A text too long to be kept whole is cut before it is tokenized, to the shortest tried prefix ending at a
 * whitespace boundary that still holds `maxLength` tokens (server/engine/text-cut.ts says why the kept
 * tokens are the same): a megabyte document costs the tokenizer a few kilobytes, not the megabyte. The
 * query is cut once per request, each document once.
 *
 * Truncation is the tokenizer's own, longest-first (what Hugging Face and TEI do for cross-encoders): the
 * longer of query and document loses tokens first. It is configured on the tokenizer for the current
 * `maxLength`; a pair exactly at the limit is checked for overflow to tell "fits" from "was cut".
 *
 * The truncation setting is the tokenizer's, shared by every encode on the thread pool, so it changes only
 * while no encode runs: callers with another `maxLength` (requests from before and after a config reload)
 * wait, in arrival order, for the encodes under the current one to finish, and new callers with the
 * current one queue behind them so the change cannot starve.
 */
export class PairTokenizer {
  readonly padId: number;
  readonly #tokenizer: TokenizerLike;
  #maxLength = 0;
  /** Encodes running under `#maxLength`. */
  #running = 0;
  /** Callers waiting for the truncation to change (or for the ones ahead of them to finish). */
  #waiting: { maxLength: number; start: () => void }[] = [];

  private constructor(tokenizer: TokenizerLike, padId: number) {
    this.#tokenizer = tokenizer;
    this.padId = padId;
  }

  static load(options: PairTokenizerOptions): PairTokenizer {
    let tokenizer: TokenizerType;
    try {
      tokenizer = Tokenizer.fromFile(options.tokenizerPath);
    } catch (error) {
      throw new Error(`load tokenizer ${options.tokenizerPath}: ${(error as Error).message}`, { cause: error });
    }
    // A tokenizer.json may carry its own padding or truncation; the batcher pads, and truncation follows maxLength.
    tokenizer.disablePadding();
    tokenizer.disableTruncation();
    return PairTokenizer.wrap(tokenizer, options.padId);
  }

  /** A PairTokenizer over a parsed tokenizer whose padding and truncation are off (tests wrap one to watch its encodes). */
  static wrap(tokenizer: TokenizerLike, padId?: number): PairTokenizer {
    return new PairTokenizer(tokenizer, padId ?? findPadId(tokenizer));
  }

  /** Encode one pair. `field` names the document in errors (e.g. `documents.3`). */
  async encodePair(query: string, document: string, options: EncodeOptions, field = 'documents'): Promise<EncodedPair> {
    checkMaxLength(options.maxLength);
    return this.#encodePair(await this.#cut(query, options.maxLength, 'query'), document, options, field);
  }

  /** Encode a query against each document, concurrently. Errors name the document (`documents.<i>`). */
  async encodePairs(query: string, documents: readonly string[], options: EncodeOptions): Promise<EncodedPair[]> {
    checkMaxLength(options.maxLength);
    const cutQuery = await this.#cut(query, options.maxLength, 'query');
    return Promise.all(documents.map((document, index) => this.#encodePair(cutQuery, document, options, `documents.${index}`)));
  }

  async #encodePair(query: string, document: string, options: EncodeOptions, field: string): Promise<EncodedPair> {
    const maxLength = options.maxLength;
    await this.#enter(maxLength);
    let encoding;
    try {
      const text = await this.#cutEntered(document, maxLength, field);
      encoding = await this.#tokenizer.encode(query, text);
    } catch (error) {
      if (error instanceof RerankError) throw error;
      throw new RerankError('tokenizer', `cannot tokenize ${field}: ${(error as Error).message}`, { field, cause: error });
    } finally {
      this.#leave();
    }
    const length = encoding.getLength();
    if (options.truncate === false && length === maxLength && encoding.getOverflowing().length > 0) {
      throw new RerankError(
        'payload_too_large',
        `${field}: the query and this document together are longer than ${maxLength} tokens, and truncate is false`,
        { field },
      );
    }
    const ids = Int32Array.from(encoding.getIds());
    if (options.withTypeIds !== true) return { ids, length };
    return { ids, typeIds: Uint8Array.from(encoding.getTypeIds()), length };
  }

  /** `text` cut to what `maxLength` tokens can keep (see text-cut.ts); counts under the truncation it enters. */
  async #cut(text: string, maxLength: number, field: string): Promise<string> {
    if (typeof text !== 'string' || text.length <= maxLength * CHARS_PER_TOKEN_GUESS) return text;
    await this.#enter(maxLength);
    try {
      return await this.#cutEntered(text, maxLength, field);
    } finally {
      this.#leave();
    }
  }

  /**
   * The cut, for a caller that entered `maxLength`: a prefix is counted with truncation at `maxLength` and
   * no special tokens, which yields min(its tokens, maxLength) — all the cut needs to know.
   */
  async #cutEntered(text: string, maxLength: number, field: string): Promise<string> {
    if (typeof text !== 'string') return text;
    try {
      return await cutToTokenBound(text, {
        maxTokens: maxLength,
        countTokens: async (prefix) => (await this.#tokenizer.encode(prefix, null, { addSpecialTokens: false })).getLength(),
      });
    } catch (error) {
      throw new RerankError('tokenizer', `cannot tokenize ${field}: ${(error as Error).message}`, { field, cause: error });
    }
  }

  /** Waits until the truncation is `maxLength` and may stay so for this encode. */
  #enter(maxLength: number): Promise<void> | undefined {
    if (this.#waiting.length === 0 && (maxLength === this.#maxLength || this.#running === 0)) {
      this.#setMaxLength(maxLength);
      this.#running += 1;
      return undefined;
    }
    return new Promise((resolve) => this.#waiting.push({ maxLength, start: resolve }));
  }

  /** When the last encode under the current setting is done, lets in the next group: the head of the queue and everyone queued with its maxLength. */
  #leave(): void {
    this.#running -= 1;
    if (this.#running > 0 || this.#waiting.length === 0) return;
    const next = (this.#waiting[0] as { maxLength: number }).maxLength;
    this.#setMaxLength(next);
    const admitted = this.#waiting.filter((waiter) => waiter.maxLength === next);
    this.#waiting = this.#waiting.filter((waiter) => waiter.maxLength !== next);
    this.#running += admitted.length;
    for (const waiter of admitted) waiter.start();
  }

  #setMaxLength(maxLength: number): void {
    if (maxLength === this.#maxLength) return;
    this.#tokenizer.setTruncation(maxLength, { strategy: LONGEST_FIRST });
    this.#maxLength = maxLength;
  }
}

function checkMaxLength(maxLength: number): void {
  if (!Number.isInteger(maxLength) || maxLength < 4) throw new RangeError(`maxLength must be an integer ≥ 4, got ${maxLength}`);
}

function findPadId(tokenizer: TokenizerLike): number {
  for (const token of PAD_TOKENS) {
    const id = tokenizer.tokenToId(token);
    if (id !== null && id !== undefined) return id;
  }
  return 0;
}

/** What a model directory's config.json says, as far as serving cares. Absent file: all undefined. */
export interface ModelDirConfig {
  padTokenId?: number;
  /** Longest sequence the position table allows, special tokens included. */
  maxTokens?: number;
  modelType?: string;
  /** Written by the model generator: random weights, scores carry no meaning. */
  synthetic: boolean;
}

export async function readModelDirConfig(configPath: string): Promise<ModelDirConfig> {
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { synthetic: false };
    throw new Error(`read ${configPath}: ${(error as Error).message}`, { cause: error });
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`parse ${configPath}: ${(error as Error).message}`, { cause: error });
  }
  const padTokenId = typeof raw.pad_token_id === 'number' ? raw.pad_token_id : undefined;
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : undefined;
  let maxTokens = typeof raw.max_position_embeddings === 'number' ? raw.max_position_embeddings : undefined;
  // RoBERTa-family position ids start after padding_idx, so the table holds padding_idx + 1 unusable rows
  // (514 rows for 512 tokens in XLM-R / bge-reranker).
  if (maxTokens !== undefined && modelType !== undefined && /roberta|xlm-r|camembert/i.test(modelType)) {
    maxTokens -= (padTokenId ?? 1) + 1;
  }
  if (typeof raw.max_sequence_length === 'number') maxTokens = raw.max_sequence_length;
  return { padTokenId, maxTokens, modelType, synthetic: raw.synthetic === true };
}
