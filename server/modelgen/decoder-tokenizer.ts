import { COMMON_WORDS } from './tokenizer.ts';

/**
 * Writes a byte-level BPE tokenizer.json (Hugging Face tokenizers format, GPT-2 / Qwen style) for a
 * generated decoder, with the special tokens LLM-reranker prompt templates use:
 *
 * - `gemma`: `<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3 first (Gemma's layout), and a post-processor that
 *   prepends `<bos>` when special tokens are added (as Gemma's tokenizer does).
 * - `qwen3`: the byte-level vocabulary first, then `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<think>`,
 *   `</think>` (Qwen's layout: special tokens after the BPE vocabulary); nothing is added around a text.
 *
 * The vocabulary is generated, not learned: the 256 byte symbols, then merges built word by word so that
 * every listed word — with and without a leading space, lower-case and capitalised — is one token. In
 * particular `Yes`, `yes`, `No`, `no` (and ` Yes`, …) are single tokens, as in the real tokenizers.
 */

export type DecoderFlavour = 'gemma' | 'qwen3';

export const DECODER_FLAVOURS: readonly DecoderFlavour[] = ['gemma', 'qwen3'];

/** Words of the bge-reranker-v2-gemma and Qwen3-Reranker templates, so a prompt costs a plausible number of tokens. */
const TEMPLATE_WORDS = `
Yes No yes no Given given query passage passages determine whether contains answer providing prediction either
Judge judge Document document meets requirements based Query Instruct provided Note only system user assistant
web search retrieve relevant that the answer can be
`;

export interface DecoderSpecialTokens {
  /** Token string → id of every special token of the flavour. */
  tokens: Record<string, number>;
  pad: string;
  bos?: string;
  eos: string;
}

export interface DecoderTokenizer {
  json: Record<string, unknown>;
  /** Tokens in the tokenizer (ids 0 … size-1); the model's vocab_size may be larger, as Qwen's is. */
  size: number;
  special: DecoderSpecialTokens;
  /** Id of each single-token word: `Yes`, `yes`, `No`, `no`, `ĠYes` (with a leading space) … */
  vocab: ReadonlyMap<string, number>;
}

const GEMMA_SPECIALS = ['<pad>', '<eos>', '<bos>', '<unk>'];
const QWEN_SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<think>', '</think>'];
/** Qwen marks its think tags as added tokens that are not "special" (decoding keeps them). */
const QWEN_NON_SPECIAL = new Set(['<think>', '</think>']);

/** GPT-2's bytes_to_unicode: every byte gets a printable character; space becomes `Ġ`, newline `Ċ`. */
function byteAlphabet(): string[] {
  const printable = new Set<number>();
  for (const [from, to] of [
    [0x21, 0x7e],
    [0xa1, 0xac],
    [0xae, 0xff],
  ] as const) {
    for (let b = from; b <= to; b++) printable.add(b);
  }
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) chars.push(String.fromCodePoint(printable.has(b) ? b : 256 + extra++));
  return chars;
}

const BYTE_CHARS = byteAlphabet();

/** A text as byte-level symbols (UTF-8 bytes mapped through the byte alphabet). */
export function byteLevel(text: string): string[] {
  return [...new TextEncoder().encode(text)].map((b) => BYTE_CHARS[b] as string);
}

/** Applies BPE merges by rank (lowest first), as the tokenizers library does within one pre-token. */
function applyMerges(symbols: string[], ranks: Map<string, number>): string[] {
  const parts = [...symbols];
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < parts.length; i++) {
      const rank = ranks.get(`${parts[i]} ${parts[i + 1]}`);
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        best = i;
      }
    }
    if (best < 0) return parts;
    parts.splice(best, 2, `${parts[best]}${parts[best + 1]}`);
  }
}

function capitalise(word: string): string {
  return word[0]!.toUpperCase() + word.slice(1);
}

/** Words that become single tokens, template words first so their merges rank highest. */
function wordList(): string[] {
  const words = [...TEMPLATE_WORDS.split(/\s+/), ...COMMON_WORDS.split(/\s+/)].filter(Boolean);
  const variants: string[] = ['\n\n'];
  for (const word of words) variants.push(word, ` ${word}`, capitalise(word), ` ${capitalise(word)}`);
  return [...new Set(variants)];
}

/**
 * Merges built incrementally: each word is tokenized with the merges so far, and while it is more than one
 * token the first two are merged with a new, lowest-priority merge. A later merge never changes how an
 * earlier word tokenizes (every step of that word found a merge of better rank), so each listed word ends as
 * exactly one token.
 */
function buildMerges(): { tokens: string[]; merges: string[] } {
  const ranks = new Map<string, number>();
  const tokens: string[] = [];
  const known = new Set(BYTE_CHARS);
  for (const word of wordList()) {
    let parts = applyMerges(byteLevel(word), ranks);
    while (parts.length > 1) {
      const merge = `${parts[0]} ${parts[1]}`;
      ranks.set(merge, ranks.size);
      const merged = `${parts[0]}${parts[1]}`;
      if (!known.has(merged)) {
        known.add(merged);
        tokens.push(merged);
      }
      parts = applyMerges(parts, ranks);
    }
  }
  return { tokens, merges: [...ranks.keys()] };
}

function addedToken(id: number, content: string, special: boolean): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

/** The tokenizer.json document and the ids a prompt template needs. */
export function buildDecoderTokenizer(flavour: DecoderFlavour): DecoderTokenizer {
  const { tokens: mergedTokens, merges } = buildMerges();
  const bpeTokens = [...BYTE_CHARS, ...mergedTokens];
  const specials = flavour === 'gemma' ? GEMMA_SPECIALS : QWEN_SPECIALS;
  const ordered = flavour === 'gemma' ? [...specials, ...bpeTokens] : [...bpeTokens, ...specials];
  const vocab = new Map(ordered.map((token, id) => [token, id]));
  const specialIds = Object.fromEntries(specials.map((token) => [token, vocab.get(token) as number]));
  const added = specials.map((token) => addedToken(specialIds[token] as number, token, !QWEN_NON_SPECIAL.has(token)));
  const bos = specialIds['<bos>'] as number;
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor:
      flavour === 'gemma'
        ? {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: '<bos>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [
              { SpecialToken: { id: '<bos>', type_id: 0 } },
              { Sequence: { id: 'A', type_id: 0 } },
              { SpecialToken: { id: '<bos>', type_id: 1 } },
              { Sequence: { id: 'B', type_id: 1 } },
            ],
            special_tokens: { '<bos>': { id: '<bos>', ids: [bos], tokens: ['<bos>'] } },
          }
        : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      // The model's vocabulary must hold special tokens whose ids come before its own (Gemma's do, as in the real
      // file); ids after it (Qwen's) are assigned in order by the added-token list.
      vocab: Object.fromEntries((flavour === 'gemma' ? ordered : bpeTokens).map((token) => [token, vocab.get(token) as number])),
      merges,
    },
  };
  const special: DecoderSpecialTokens =
    flavour === 'gemma'
      ? { tokens: specialIds, pad: '<pad>', bos: '<bos>', eos: '<eos>' }
      : { tokens: specialIds, pad: '<|endoftext|>', eos: '<|im_end|>' };
  return { json, size: ordered.length, special, vocab };
}
