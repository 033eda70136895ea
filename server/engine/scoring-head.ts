import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { HeadConfig, HeadType } from '../config/head.ts';
import { findEntry, loadCatalog, type Catalog } from '../models/catalog.ts';
import type { CausalLmForm, GraphHeadSpec } from './graph-head.ts';
import type { PairTokenizer } from './pair-tokenizer.ts';
import { PromptEncoder, type PairEncoder, type PromptTokenizer } from './prompt-encoder.ts';
import { resolveHead, type ResolvedHead } from './prompt-template.ts';
import type { TokenizerCache } from './tokenizer-cache.ts';

/**
 * A version's scoring head, the seam between "what model is this" and the rest of the engine: it gives
 * the runtime the encoder that turns (query, document) into token ids, and the session the spec of how
 * to feed the graph and read one logit per pair. `cross-encoder`: the tokenizer's own pair encoding and a
 * classification output. `causal-lm-yes-no`: a prompt template and the yes/no logits of a decoder.
 * Nothing else in the engine asks which head a version has.
 */
export interface ScoringHead {
  readonly type: HeadType;
  readonly encoder: PairEncoder;
  /** What the ONNX session needs (crosses to the model worker). */
  readonly graph: GraphHeadSpec;
  /** For logs and `/info` (the graph's form is added once the session has loaded). */
  describe(): HeadInfo;
  /** Gives back the tokenizer it holds. */
  release(): void;
}

/** A version's head as `/info` shows it. */
export interface HeadInfo {
  type: HeadType;
  /** causal-lm-yes-no: the prompt template. */
  template?: string;
  /** causal-lm-yes-no: which output form runs, `prepared` ([batch, 2]) or `full-vocabulary` ([batch, seq, vocab]). */
  form?: CausalLmForm;
  yesTokenId?: number;
  noTokenId?: number;
  normalize?: 'logit' | 'softmax';
  paddingSide?: 'left' | 'right';
  /** Where the head came from: the version's config, the catalogue entry of its model, or the default. */
  source?: 'config' | 'catalogue' | 'default';
}

/** Parsed tokenizers of one engine: pair tokenizers for cross-encoders, prompt tokenizers for LLM rerankers. */
export interface TokenizerCaches {
  pairs: TokenizerCache<PairTokenizer>;
  prompts: TokenizerCache<PromptTokenizer>;
}

export interface OpenHeadOptions {
  head: ResolvedHead;
  source: HeadInfo['source'];
  tokenizerPath: string;
  padId: number | undefined;
  caches: TokenizerCaches;
  hints: ModelHints;
}

/** Acquires the tokenizer and builds the head; fails (with the tokenizer given back) when the template's tokens are not the tokenizer's. */
export async function openScoringHead(options: OpenHeadOptions): Promise<ScoringHead> {
  const { head, caches } = options;
  const tokenizerOptions = options.padId === undefined ? { tokenizerPath: options.tokenizerPath } : { tokenizerPath: options.tokenizerPath, padId: options.padId };
  if (head.type === 'cross-encoder') {
    const tokenizer = await caches.pairs.acquire(tokenizerOptions);
    return {
      type: 'cross-encoder',
      encoder: tokenizer,
      graph: { type: 'cross-encoder' },
      describe: () => ({ type: 'cross-encoder', ...(options.source ? { source: options.source } : {}) }),
      release: () => caches.pairs.release(tokenizer),
    };
  }
  const tokenizer = await caches.prompts.acquire(tokenizerOptions);
  let encoder: PromptEncoder;
  try {
    encoder = await PromptEncoder.create(tokenizer, head);
  } catch (error) {
    caches.prompts.release(tokenizer);
    throw error;
  }
  const { yesId, noId } = encoder.info;
  const graph: GraphHeadSpec = { type: 'causal-lm-yes-no', yesId, normalize: head.normalize, paddingSide: head.paddingSide };
  if (noId !== undefined) graph.noId = noId;
  if (options.hints.kvHeads !== undefined && options.hints.headDim !== undefined) graph.past = { kvHeads: options.hints.kvHeads, headDim: options.hints.headDim };
  const info: HeadInfo = { type: 'causal-lm-yes-no', template: head.template, yesTokenId: yesId, normalize: head.normalize, paddingSide: head.paddingSide };
  if (noId !== undefined) info.noTokenId = noId;
  if (options.source) info.source = options.source;
  return { type: 'causal-lm-yes-no', encoder, graph, describe: () => ({ ...info }), release: () => caches.prompts.release(tokenizer) };
}

/** What a model directory's config.json tells the head: the model's hub id, and the key/value shape of a decoder. */
export interface ModelHints {
  /** `_name_or_path`, as transformers saves it (the hub id the export came from). */
  nameOrPath?: string;
  kvHeads?: number;
  headDim?: number;
}

export async function readModelHints(configPath: string): Promise<ModelHints> {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  } catch {
    // Absent or unreadable: the pair tokenizer's reader of the same file reports a broken one.
    return {};
  }
  const int = (key: string) => (typeof raw[key] === 'number' && Number.isInteger(raw[key]) ? (raw[key] as number) : undefined);
  const hints: ModelHints = {};
  if (typeof raw._name_or_path === 'string' && raw._name_or_path !== '') hints.nameOrPath = raw._name_or_path;
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads') ?? heads;
  const hidden = int('hidden_size');
  const headDim = int('head_dim') ?? (hidden !== undefined && heads ? hidden / heads : undefined);
  if (kvHeads !== undefined) hints.kvHeads = kvHeads;
  if (headDim !== undefined && Number.isInteger(headDim)) hints.headDim = headDim;
  return hints;
}

let bundled: Promise<Catalog | undefined> | undefined;

/** The model catalogue, read once; absent (a pruned image) or broken, no head comes from it. */
function catalogue(): Promise<Catalog | undefined> {
  bundled ??= loadCatalog().catch(() => undefined);
  return bundled;
}

/**
 * The catalogue's head for a model directory, when it is a known model: named by config.json's
 * `_name_or_path`, or by the directory itself (`…/BAAI/bge-reranker-v2-gemma`, or `…/bge-reranker-v2-gemma`
 * as `models pull` names it).
 */
export async function catalogueHead(modelDir: string, hints: ModelHints, catalog?: Catalog): Promise<HeadConfig | undefined> {
  const known = catalog ?? (await catalogue());
  if (!known) return undefined;
  const parts = path.resolve(modelDir).split(path.sep).filter(Boolean);
  const names = [hints.nameOrPath, parts.slice(-2).join('/'), parts.at(-1)].filter((n): n is string => n !== undefined && n !== '');
  for (const name of names) {
    let entry;
    try {
      entry = findEntry(known, name);
    } catch {
      continue; // A short name that several entries share says nothing.
    }
    if (entry) return entry.head;
  }
  return undefined;
}

/** The head a version runs, and where it came from: its config's head over the catalogue's. */
export async function headForVersion(config: HeadConfig | undefined, modelDir: string, hints: ModelHints, catalog?: Catalog): Promise<{ head: ResolvedHead; source: NonNullable<HeadInfo['source']> }> {
  const fromCatalogue = await catalogueHead(modelDir, hints, catalog);
  const head = resolveHead(config, fromCatalogue);
  const source = config !== undefined ? 'config' : fromCatalogue !== undefined ? 'catalogue' : 'default';
  return { head, source };
}
