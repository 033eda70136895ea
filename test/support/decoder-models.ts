import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { generateDecoderModel, type DecoderFlavour, type DecoderForm, type GeneratedDecoder } from '../../server/modelgen/index.ts';

/**
 * Tiny generated LLM rerankers for tests: each variant is generated once per test process into a temporary
 * directory (removed at exit) and shared by every test that asks for it. The same flavour, vocabulary and
 * seed in both forms have the same weights, so a prepared model scores what its full export scores.
 */

export interface TinyDecoderVariant {
  flavour: DecoderFlavour;
  /** `full` (default): logits [batch, seq, vocab]; `prepared`: yes_no_logits [batch, 2]. */
  form?: DecoderForm;
  withPast?: boolean;
  vocabSize?: number;
  seed?: number;
}

export const TEST_DECODER_VOCAB = 4096;

let root: Promise<string> | undefined;
const cache = new Map<string, Promise<GeneratedDecoder>>();

function decodersRoot(): Promise<string> {
  root ??= mkdtemp(path.join(os.tmpdir(), 'rerank-test-decoders-')).then((dir) => {
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  });
  return root;
}

export function tinyDecoder(variant: TinyDecoderVariant): Promise<GeneratedDecoder> {
  const { flavour, form = 'full', withPast = true, vocabSize = TEST_DECODER_VOCAB, seed = 42 } = variant;
  const key = `${flavour}-${form}-${withPast ? 'past' : 'nopast'}-v${vocabSize}-s${seed}`;
  let model = cache.get(key);
  if (!model) {
    model = decodersRoot().then((dir) => generateDecoderModel({ flavour, form, withPast, vocabSize, seed, outDir: path.join(dir, key) }));
    cache.set(key, model);
  }
  return model;
}
