import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PREPARED_METADATA, PREPARED_OUTPUT } from '../../server/engine/causal-lm-graph.ts';
import type { CausalLmGraphSpec } from '../../server/engine/graph-head.ts';
import { OnnxSession } from '../../server/engine/onnx-model.ts';
import type { EncodedPair } from '../../server/engine/pair-tokenizer.ts';
import { PromptEncoder, PromptTokenizer } from '../../server/engine/prompt-encoder.ts';
import { resolveHead, type CausalLmHead } from '../../server/engine/prompt-template.ts';
import { generateDecoderModel, type GeneratedDecoder } from '../../server/modelgen/decoder-model.ts';
import * as prepareGraph from '../../server/models/prepare-graph.ts';
import { DecoderReference, normalise } from '../support/llm-reference.ts';
import { tinyModel } from '../support/models.ts';

/**
 * The batched decoder path against the independent one-sequence reference (full logits, last token picked
 * by hand): across padding sides, batch compositions, graph forms and exports with and without past.
 */

const QUERY = 'what is the giant panda?';
const DOCUMENTS = [
  'The giant panda is a bear species endemic to China.',
  'hi',
  'Pandas eat bamboo; an adult eats 10 to 40 kg a day, and spends most of its waking hours eating. '.repeat(3),
  'A large bearlike mammal with black and white markings.',
  'energy policy',
];
const TOLERANCE = 1e-4;

interface Flavour {
  flavour: 'gemma' | 'qwen3';
  template: 'bge-gemma' | 'qwen3';
}

const FLAVOURS: Flavour[] = [
  { flavour: 'gemma', template: 'bge-gemma' },
  { flavour: 'qwen3', template: 'qwen3' },
];

let root: string;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'rerank-causal-lm-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function setUp(flavour: Flavour, options: { withPast?: boolean } = {}) {
  const withPast = options.withPast ?? true;
  const name = `${flavour.flavour}-${withPast ? 'past' : 'nopast'}`;
  const full = await generateDecoderModel({ flavour: flavour.flavour, withPast, outDir: path.join(root, `${name}-full`) });
  const prepared = await generateDecoderModel({ flavour: flavour.flavour, withPast, form: 'prepared', outDir: path.join(root, `${name}-prepared`) });
  const head = resolveHead({ type: 'causal-lm-yes-no', template: flavour.template }, undefined) as CausalLmHead;
  const encoder = await PromptEncoder.create(PromptTokenizer.load({ tokenizerPath: full.tokenizerPath }), head);
  const pairs = await encoder.encodePairs(QUERY, DOCUMENTS, { maxLength: 512 });
  return { full, prepared, head, encoder, pairs };
}

function spec(model: GeneratedDecoder, head: CausalLmHead, paddingSide: 'left' | 'right'): CausalLmGraphSpec {
  return { type: 'causal-lm-yes-no', yesId: model.yesTokenId, noId: model.noTokenId, normalize: head.normalize, paddingSide };
}

async function referenceScores(model: GeneratedDecoder, pairs: readonly EncodedPair[], normalize: 'logit' | 'softmax'): Promise<number[]> {
  const reference = await DecoderReference.load(model.modelPath);
  try {
    const scores: number[] = [];
    for (const pair of pairs) {
      const logits = await reference.yesNo(Array.from(pair.ids), model.yesTokenId, model.noTokenId);
      // The engine's raw score: the yes logit, or yes − no whose sigmoid is P(yes).
      scores.push(normalize === 'logit' ? logits.yes : logits.yes - logits.no);
      if (normalize === 'softmax') assert.ok(Math.abs(sigmoid(logits.yes - logits.no) - normalise(logits, 'softmax')) < 1e-6);
    }
    return scores;
  } finally {
    await reference.release();
  }
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

function assertClose(actual: ArrayLike<number>, expected: readonly number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i += 1) {
    const delta = Math.abs((actual[i] as number) - (expected[i] as number));
    assert.ok(delta <= TOLERANCE, `${what}: pair ${i}: ${actual[i]} vs ${expected[i]} (|Δ| ${delta})`);
  }
}

for (const flavour of FLAVOURS) {
  describe(`causal-lm-yes-no session (${flavour.template})`, () => {
    let setup: Awaited<ReturnType<typeof setUp>>;
    let expected: number[];
    before(async () => {
      setup = await setUp(flavour);
      expected = await referenceScores(setup.full, setup.pairs, setup.head.normalize);
    });

    for (const form of ['full', 'prepared'] as const) {
      for (const side of ['left', 'right'] as const) {
        it(`${form} graph, ${side} padding: a mixed-length batch scores each pair as the one-pair reference does`, async () => {
          const model = form === 'full' ? setup.full : setup.prepared;
          const session = await OnnxSession.load({ modelPath: model.modelPath, device: 'cpu', padId: model.padTokenId, head: spec(model, setup.head, side) });
          try {
            assert.equal(session.description.head, 'causal-lm-yes-no');
            assert.equal(session.description.form, form === 'full' ? 'full-vocabulary' : 'prepared');
            const batched = await session.run(setup.pairs);
            assertClose(batched.logits, expected, 'whole batch');
            // The same pairs in other company: alone, reversed, and each with the longest.
            for (let i = 0; i < setup.pairs.length; i += 1) {
              const alone = await session.run([setup.pairs[i] as EncodedPair]);
              assertClose(alone.logits, [expected[i] as number], `pair ${i} alone`);
            }
            const reversed = await session.run([...setup.pairs].reverse());
            assertClose(reversed.logits, [...expected].reverse(), 'reversed batch');
          } finally {
            await session.release();
          }
        });
      }
    }

    it('an export without past_key_values inputs scores the same', async () => {
      const noPast = await setUp(flavour, { withPast: false });
      const session = await OnnxSession.load({ modelPath: noPast.full.modelPath, device: 'cpu', padId: noPast.full.padTokenId, head: spec(noPast.full, setup.head, 'left') });
      try {
        assert.ok(!session.description.inputs.some((name) => name.startsWith('past_key_values.')));
        assertClose((await session.run(setup.pairs)).logits, expected, 'no-past export');
      } finally {
        await session.release();
      }
    });
  });
}

describe('causal-lm-yes-no session: graphs that do not fit the head', () => {
  it('reads the output and metadata names models prepare writes (the worker does not load the protobuf code for two strings)', () => {
    assert.equal(PREPARED_OUTPUT, prepareGraph.PREPARED_OUTPUT);
    assert.deepEqual(PREPARED_METADATA, { form: prepareGraph.PREPARED_KEYS.form, yes: prepareGraph.PREPARED_KEYS.yes, no: prepareGraph.PREPARED_KEYS.no });
  });

  it('a prepared graph cut for other tokens is refused, naming both', async () => {
    const model = await generateDecoderModel({ flavour: 'qwen3', form: 'prepared', outDir: path.join(root, 'mismatch') });
    const head: CausalLmGraphSpec = { type: 'causal-lm-yes-no', yesId: model.noTokenId, noId: model.yesTokenId, normalize: 'softmax', paddingSide: 'left' };
    await assert.rejects(OnnxSession.load({ modelPath: model.modelPath, device: 'cpu', padId: 0, head }), /prepared for other tokens: yes id \d+ \(the head's is \d+\)/);
  });

  it('a cross-encoder served with a causal-lm head says to give it the cross-encoder head', async () => {
    const model = await tinyModel({ arch: 'xlmr' });
    const head: CausalLmGraphSpec = { type: 'causal-lm-yes-no', yesId: 5, noId: 6, normalize: 'softmax', paddingSide: 'left' };
    await assert.rejects(OnnxSession.load({ modelPath: model.modelPath, device: 'cpu', padId: 1, head }), /classification head: give the version head type cross-encoder/);
  });

  it('a decoder served with a cross-encoder head says to give it the causal-lm head', async () => {
    const model = await generateDecoderModel({ flavour: 'gemma', outDir: path.join(root, 'as-cross-encoder') });
    await assert.rejects(OnnxSession.load({ modelPath: model.modelPath, device: 'cpu', padId: 0 }), /position_ids.*causal-lm-yes-no/);
  });
});
