import { stat } from 'node:fs/promises';
import { PairTokenizer, type PairTokenizerOptions } from './pair-tokenizer.ts';

/** How many tokenizers no version uses are kept for reuse (oldest released goes first). */
export const DEFAULT_MAX_IDLE_TOKENIZERS = 4;

interface Entry<T> {
  key: string;
  tokenizer: T;
  users: number;
}

/**
 * Parsed tokenizers, shared by every runtime that reads the same tokenizer.json and kept for reuse a
 * while after the last one lets go.
 *
 * The `tokenizers` binding holds a parsed tokenizer (several MB, tens of MB for large vocabularies) in
 * Rust memory that V8 does not see, and frees it only when the garbage collector finalizes the small JS
 * wrapper — which a busy server with a small heap may not do for a long time. Parsing anew on every
 * enable, model switch or device move therefore piles up native memory, and parsing blocks the event
 * loop. Sharing one parsed tokenizer per file, and reusing it when a version comes back, does neither.
 *
 * A file is identified by path, device, inode, size and modification time, so a tokenizer.json replaced
 * in place is parsed again. Sharing between versions is safe: a `PairTokenizer` coordinates callers that
 * ask for different truncation lengths.
 *
 * `T` is what a file is parsed into: a PairTokenizer (cross-encoders) unless `load` makes something else
 * (the PromptTokenizer of LLM rerankers, which needs an instance of its own without truncation).
 */
export class TokenizerCache<T extends object = PairTokenizer> {
  readonly #maxIdle: number;
  readonly #load: (options: PairTokenizerOptions) => T;
  readonly #entries = new Map<string, Entry<T>>();
  /** Keys of entries no runtime uses, oldest release first. */
  readonly #idle = new Set<string>();
  readonly #keys = new WeakMap<T, string>();

  constructor(options: { maxIdle?: number; load?: (options: PairTokenizerOptions) => T } = {}) {
    this.#maxIdle = options.maxIdle ?? DEFAULT_MAX_IDLE_TOKENIZERS;
    this.#load = options.load ?? ((o) => PairTokenizer.load(o) as unknown as T);
  }

  /** A tokenizer for this file, parsed now only if no runtime holds one and none is kept idle. Pair with `release`. */
  async acquire(options: PairTokenizerOptions): Promise<T> {
    const key = await fileKey(options);
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { key, tokenizer: this.#load(options), users: 0 };
      this.#entries.set(key, entry);
      this.#keys.set(entry.tokenizer, key);
    }
    entry.users += 1;
    this.#idle.delete(key);
    return entry.tokenizer;
  }

  /** The caller no longer uses `tokenizer`; it stays parsed for reuse while within the idle bound. */
  release(tokenizer: T): void {
    const key = this.#keys.get(tokenizer);
    const entry = key === undefined ? undefined : this.#entries.get(key);
    if (!entry || entry.tokenizer !== tokenizer || entry.users === 0) return;
    entry.users -= 1;
    if (entry.users > 0) return;
    this.#idle.add(entry.key);
    for (const oldest of this.#idle) {
      if (this.#idle.size <= this.#maxIdle) break;
      this.#idle.delete(oldest);
      this.#entries.delete(oldest);
    }
  }

  /** Parsed tokenizers held (in use or idle). */
  get size(): number {
    return this.#entries.size;
  }

  /** Of those, the ones no runtime uses. */
  get idle(): number {
    return this.#idle.size;
  }

  clear(): void {
    this.#entries.clear();
    this.#idle.clear();
  }
}

async function fileKey(options: PairTokenizerOptions): Promise<string> {
  let identity = 'missing';
  try {
    const s = await stat(options.tokenizerPath, { bigint: true });
    identity = `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
  } catch {
    // Not there: the load below reports it, with the path.
  }
  return JSON.stringify([options.tokenizerPath, identity, options.padId ?? null]);
}
