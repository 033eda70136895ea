import type { HeadConfig, Normalization, PaddingSide, TemplateName } from '../config/head.ts';

/**
 * The prompt templates of LLM rerankers, exactly as their model cards build the input, and the resolution
 * of a version's `head` (config, else catalogue) into what the engine runs.
 *
 * A template is a list of segments, each tokenized on its own (without the tokenizer's special tokens)
 * and concatenated, as the model cards do: tokenizing "A: {query}" in one piece gives other tokens than
 * "A: " and the query apart. `{query}`, `{document}` and `{instruction}` mark where the texts go.
 */

/** bge-reranker-v2-gemma's `get_inputs`: the fixed question after the pair. */
export const BGE_GEMMA_PROMPT =
  "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing a prediction of either 'Yes' or 'No'.";

/** Qwen3-Reranker's system turn and user-turn opening. */
export const QWEN3_PREFIX =
  '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. ' +
  'Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n';
/** Qwen3-Reranker's end of the user turn and the assistant turn's opening, with an empty think block. */
export const QWEN3_SUFFIX = '<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n';
export const QWEN3_BODY = '<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}';
/** The Qwen3-Reranker model card's default instruction. */
export const QWEN3_DEFAULT_INSTRUCTION = 'Given a web search query, retrieve relevant passages that answer the query';

interface NamedTemplate {
  segments: readonly string[];
  /** Tokens the template writes out that must be single tokens of the tokenizer (its special tokens). */
  specialTokens: readonly string[];
  yesToken: string;
  noToken: string;
  normalize: Normalization;
}

export const NAMED_TEMPLATES: Record<Exclude<TemplateName, 'custom'>, NamedTemplate> = {
  // BOS, tokens of "A: {query}", the "\n" separator, tokens of "B: {passage}", the separator, the prompt.
  'bge-gemma': {
    segments: ['<bos>', 'A: {query}', '\n', 'B: {document}', '\n', BGE_GEMMA_PROMPT],
    specialTokens: ['<bos>'],
    yesToken: 'Yes',
    noToken: 'No',
    normalize: 'logit',
  },
  qwen3: {
    segments: [QWEN3_PREFIX, QWEN3_BODY, QWEN3_SUFFIX],
    specialTokens: ['<|im_start|>', '<|im_end|>'],
    yesToken: 'yes',
    noToken: 'no',
    normalize: 'softmax',
  },
};

/** A token named by its spelling in the vocabulary, or by id. */
export type TokenRef = { token: string } | { id: number };

export interface CrossEncoderHead {
  type: 'cross-encoder';
}

export interface CausalLmHead {
  type: 'causal-lm-yes-no';
  template: TemplateName;
  /** Segments with `{instruction}` still in them: it is filled at encoding, as text that is never cut. */
  segments: string[];
  instruction: string;
  specialTokens: string[];
  yes: TokenRef;
  /** Absent: a custom `logit` template that names no "no" token. */
  no?: TokenRef;
  normalize: Normalization;
  paddingSide: PaddingSide;
}

export type ResolvedHead = CrossEncoderHead | CausalLmHead;

export class HeadConfigError extends Error {
  override name = 'HeadConfigError';
}

/**
 * The head a version runs: its config's `head` over the catalogue's for its model (field by field, so a
 * config may set only `instruction`), else a cross-encoder. Throws when a causal-lm head names no template.
 */
export function resolveHead(config: HeadConfig | undefined, catalogue: HeadConfig | undefined): ResolvedHead {
  const merged = mergeHeads(catalogue, config);
  if (merged === undefined || merged.type === 'cross-encoder') return { type: 'cross-encoder' };
  const templateName = merged.template;
  if (templateName === undefined) {
    throw new HeadConfigError('head: type causal-lm-yes-no needs a template (bge-gemma, qwen3 or custom); the model is not one the catalogue knows');
  }
  const named = templateName === 'custom' ? undefined : NAMED_TEMPLATES[templateName];
  const segments = named ? [...named.segments] : [merged.prefix ?? '', merged.body ?? '', merged.suffix ?? ''].filter((s) => s !== '');
  const yes = tokenRef(merged.yesToken, merged.yesTokenId) ?? (named ? { token: named.yesToken } : undefined);
  if (yes === undefined) throw new HeadConfigError('head: template custom needs yesToken or yesTokenId');
  const no = tokenRef(merged.noToken, merged.noTokenId) ?? (named ? { token: named.noToken } : undefined);
  const normalize = merged.normalize ?? named?.normalize ?? 'logit';
  if (normalize === 'softmax' && no === undefined) throw new HeadConfigError('head: normalize softmax needs noToken or noTokenId');
  const head: CausalLmHead = {
    type: 'causal-lm-yes-no',
    template: templateName,
    segments,
    instruction: merged.instruction ?? QWEN3_DEFAULT_INSTRUCTION,
    specialTokens: named ? [...named.specialTokens] : [],
    yes,
    normalize,
    paddingSide: merged.paddingSide ?? 'left',
  };
  if (no !== undefined) head.no = no;
  return head;
}

/**
 * The config's head over the catalogue's. A config head of another type replaces the catalogue's whole;
 * one of the same type overrides it field by field, except that naming another template drops the
 * catalogue's template fields.
 */
function mergeHeads(catalogue: HeadConfig | undefined, config: HeadConfig | undefined): HeadConfig | undefined {
  if (config === undefined) return catalogue;
  if (catalogue === undefined || catalogue.type !== config.type) return config;
  if (config.template !== undefined && config.template !== catalogue.template) return config;
  return { ...catalogue, ...definedOnly(config) };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function tokenRef(token: string | undefined, id: number | undefined): TokenRef | undefined {
  if (token !== undefined) return { token };
  if (id !== undefined) return { id };
  return undefined;
}

export function describeToken(ref: TokenRef): string {
  return 'token' in ref ? JSON.stringify(ref.token) : `id ${ref.id}`;
}
