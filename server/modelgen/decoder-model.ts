import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { prepareYesNoProto } from '../models/prepare-graph.ts';
import { buildDecoderProto, DECODER_SHAPES, type DecoderShape } from './decoder.ts';
import { buildDecoderTokenizer, DECODER_FLAVOURS, type DecoderFlavour } from './decoder-tokenizer.ts';
import { IR_VERSION, OPSET_VERSION } from './graph.ts';

/**
 * Generates a synthetic LLM-reranker directory (model.onnx, tokenizer.json, config.json): a tiny random
 * decoder in the shape of bge-reranker-v2-gemma (`gemma`) or Qwen3-Reranker (`qwen3`), either as
 * `optimum-cli export onnx --task text-generation[-with-past]` writes it (`full`: logits [batch, seq, vocab])
 * or as `rerank-server models prepare` leaves it (`prepared`: yes_no_logits [batch, 2]).
 */

export type { DecoderFlavour } from './decoder-tokenizer.ts';
export type { DecoderShape } from './decoder.ts';
export { DECODER_FLAVOURS } from './decoder-tokenizer.ts';
export { DECODER_SHAPES } from './decoder.ts';

export type DecoderForm = 'full' | 'prepared';

export interface GenerateDecoderOptions {
  flavour: DecoderFlavour;
  /** `tiny` (default; hidden 64, 2 layers) or `small` (hidden 256, 4 layers: the benchmark's). */
  shape?: DecoderShape;
  /** Rows of the embedding / columns of the logits (default 8192); at least the tokenizer's size. */
  vocabSize?: number;
  /** With `past_key_values.{i}.*` inputs and `present.{i}.*` outputs (default true). */
  withPast?: boolean;
  /** `full` (default): logits [batch, seq, vocab]; `prepared`: yes_no_logits [batch, 2]. */
  form?: DecoderForm;
  seed?: number;
  outDir: string;
}

export interface GeneratedDecoder {
  dir: string;
  modelPath: string;
  tokenizerPath: string;
  configPath: string;
  /** The reranker's answer tokens: `Yes`/`No` for gemma, `yes`/`no` for qwen3. */
  yesToken: string;
  noToken: string;
  yesTokenId: number;
  noTokenId: number;
  padTokenId: number;
  /** Special token string → id. */
  specialTokens: Record<string, number>;
  vocabSize: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

export const DEFAULT_DECODER_VOCAB = 8192;
export const DEFAULT_DECODER_SEED = 42;

/** The answer words each flavour's reranker reads the logits of (bge-reranker-v2-gemma: `Yes`; Qwen3: `yes`/`no`). */
export const ANSWER_TOKENS: Readonly<Record<DecoderFlavour, { yes: string; no: string }>> = {
  gemma: { yes: 'Yes', no: 'No' },
  qwen3: { yes: 'yes', no: 'no' },
};

export interface DecoderTokenIds {
  yesToken: string;
  noToken: string;
  yesTokenId: number;
  noTokenId: number;
  padTokenId: number;
  specialTokens: Record<string, number>;
  /** Tokens in the generated tokenizer: the smallest vocabSize a model of this flavour may have. */
  tokenizerSize: number;
}

/** The ids a flavour's generated tokenizer gives its answer and special tokens, without writing a model. */
export function decoderTokenIds(flavour: DecoderFlavour): DecoderTokenIds {
  if (!DECODER_FLAVOURS.includes(flavour)) throw new Error(`unknown decoder flavour "${String(flavour)}" (${DECODER_FLAVOURS.join(', ')})`);
  const tokenizer = buildDecoderTokenizer(flavour);
  const answers = ANSWER_TOKENS[flavour];
  const yesTokenId = tokenizer.vocab.get(answers.yes);
  const noTokenId = tokenizer.vocab.get(answers.no);
  if (yesTokenId === undefined || noTokenId === undefined) throw new Error('generated tokenizer lacks the answer tokens');
  return {
    yesToken: answers.yes,
    noToken: answers.no,
    yesTokenId,
    noTokenId,
    padTokenId: tokenizer.special.tokens[tokenizer.special.pad] as number,
    specialTokens: { ...tokenizer.special.tokens },
    tokenizerSize: tokenizer.size,
  };
}

let temporaryCounter = 0;

async function writeAtomically(file: string, data: string | Uint8Array): Promise<void> {
  const temporary = `${file}.${process.pid}.${temporaryCounter++}.tmp`;
  await writeFile(temporary, data);
  await rename(temporary, file);
}

export async function generateDecoderModel(options: GenerateDecoderOptions): Promise<GeneratedDecoder> {
  const { flavour, shape = 'tiny', vocabSize = DEFAULT_DECODER_VOCAB, withPast = true, form = 'full', seed = DEFAULT_DECODER_SEED } = options;
  if (!DECODER_FLAVOURS.includes(flavour)) throw new Error(`unknown decoder flavour "${String(flavour)}" (${DECODER_FLAVOURS.join(', ')})`);
  if (!Object.hasOwn(DECODER_SHAPES, shape)) throw new Error(`unknown decoder shape "${shape}" (${Object.keys(DECODER_SHAPES).join(', ')})`);
  if (form !== 'full' && form !== 'prepared') throw new Error(`unknown form "${String(form)}" (full, prepared)`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`seed must be an integer in [0, 2^32), got ${seed}`);
  const tokenizer = buildDecoderTokenizer(flavour);
  if (!Number.isInteger(vocabSize) || vocabSize < tokenizer.size) {
    throw new Error(`vocab size must be an integer of at least ${tokenizer.size} (the tokenizer's size), got ${vocabSize}`);
  }
  const dims = DECODER_SHAPES[shape];
  const answers = ANSWER_TOKENS[flavour];
  const yesTokenId = tokenizer.vocab.get(answers.yes);
  const noTokenId = tokenizer.vocab.get(answers.no);
  if (yesTokenId === undefined || noTokenId === undefined) throw new Error('generated tokenizer lacks the answer tokens');
  const padTokenId = tokenizer.special.tokens[tokenizer.special.pad] as number;

  const dir = path.resolve(options.outDir);
  const files = { dir, modelPath: path.join(dir, 'model.onnx'), tokenizerPath: path.join(dir, 'tokenizer.json'), configPath: path.join(dir, 'config.json') };
  await mkdir(dir, { recursive: true });
  await writeAtomically(files.tokenizerPath, `${JSON.stringify(tokenizer.json)}\n`);
  const special = tokenizer.special;
  const config = {
    _comment:
      'RANDOM WEIGHTS - NOT A TRAINED MODEL. Generated by rerank-operator modelgen: the architecture and ONNX I/O ' +
      'of a decoder-only LLM reranker with deterministic random weights. Its scores are meaningless.',
    synthetic: true,
    architectures: [flavour === 'gemma' ? 'GemmaForCausalLM' : 'Qwen3ForCausalLM'],
    model_type: flavour,
    vocab_size: vocabSize,
    hidden_size: dims.hiddenSize,
    intermediate_size: dims.intermediateSize,
    num_hidden_layers: dims.numLayers,
    num_attention_heads: dims.numHeads,
    num_key_value_heads: dims.numKvHeads,
    head_dim: dims.headDim,
    hidden_act: 'silu',
    max_position_embeddings: dims.maxPositions,
    rms_norm_eps: dims.rmsNormEps,
    rope_theta: dims.ropeTheta,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    // Gemma's config names all three; Qwen3's names bos/eos only (its tokenizer pads with <|endoftext|>).
    ...(flavour === 'gemma'
      ? { pad_token_id: padTokenId, bos_token_id: special.tokens[special.bos as string], eos_token_id: special.tokens[special.eos] }
      : { bos_token_id: special.tokens['<|endoftext|>'], eos_token_id: special.tokens[special.eos] }),
    onnx: {
      form,
      inputs: ['input_ids', 'attention_mask', 'position_ids', ...(withPast ? ['past_key_values.{i}.key', 'past_key_values.{i}.value'] : [])],
      outputs: form === 'full' ? ['logits', ...(withPast ? ['present.{i}.key', 'present.{i}.value'] : [])] : ['yes_no_logits'],
      opset: OPSET_VERSION,
      ir_version: IR_VERSION,
    },
    modelgen: { flavour, shape, vocab_size: vocabSize, with_past: withPast, form, seed },
  };
  await writeAtomically(files.configPath, `${JSON.stringify(config, null, 2)}\n`);
  let proto = buildDecoderProto({ dims, vocabSize, withPast, scaleEmbeddings: flavour === 'gemma', seed, metadata: { flavour } });
  if (form === 'prepared') proto = (await prepareYesNoProto(proto, { yesTokenId, noTokenId, modelDir: dir })).model;
  // model.onnx last: its presence means the directory is complete.
  await writeAtomically(files.modelPath, onnxProto.onnx.ModelProto.encode(proto).finish());
  return {
    ...files,
    yesToken: answers.yes,
    noToken: answers.no,
    yesTokenId,
    noTokenId,
    padTokenId,
    specialTokens: { ...special.tokens },
    vocabSize,
    numLayers: dims.numLayers,
    numKvHeads: dims.numKvHeads,
    headDim: dims.headDim,
  };
}
