import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tokenizers from 'tokenizers';
import type { HeadConfig } from '../../server/config/head.ts';
import { RerankError } from '../../server/errors.ts';
import { longestFirst, PromptEncoder, PromptTokenizer } from '../../server/engine/prompt-encoder.ts';
import {
  BGE_GEMMA_PROMPT,
  HeadConfigError,
  QWEN3_DEFAULT_INSTRUCTION,
  QWEN3_PREFIX,
  QWEN3_SUFFIX,
  resolveHead,
  type CausalLmHead,
} from '../../server/engine/prompt-template.ts';
import { generateDecoderModel, type GeneratedDecoder } from '../../server/modelgen/decoder-model.ts';

/**
 * The prompts of LLM rerankers against the model cards' own construction, done here independently with the
 * raw tokenizer: bge-reranker-v2-gemma's get_inputs and Qwen3-Reranker's prefix + formatted pair + suffix.
 */

let root: string;
let gemma: GeneratedDecoder;
let qwen: GeneratedDecoder;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'rerank-prompt-'));
  gemma = await generateDecoderModel({ flavour: 'gemma', outDir: path.join(root, 'gemma') });
  qwen = await generateDecoderModel({ flavour: 'qwen3', outDir: path.join(root, 'qwen3') });
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Token ids of `text` alone, as `tokenizer(text, add_special_tokens=False)` gives them. */
async function tokens(tokenizerPath: string, text: string): Promise<number[]> {
  const tokenizer = tokenizers.Tokenizer.fromFile(tokenizerPath);
  return (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
}

async function encoderFor(model: GeneratedDecoder, head: HeadConfig): Promise<PromptEncoder> {
  return PromptEncoder.create(PromptTokenizer.load({ tokenizerPath: model.tokenizerPath }), resolveHead(head, undefined) as CausalLmHead);
}

const QUERY = 'what is panda?';
const DOCUMENT = 'The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.';

describe('prompt templates', () => {
  it('bge-gemma: <bos>, tokens of "A: {query}", "\\n", tokens of "B: {passage}", "\\n", then the fixed prompt', async () => {
    const encoder = await encoderFor(gemma, { type: 'causal-lm-yes-no', template: 'bge-gemma' });
    const t = (text: string) => tokens(gemma.tokenizerPath, text);
    const expected = [
      gemma.specialTokens['<bos>'] as number,
      ...(await t(`A: ${QUERY}`)),
      ...(await t('\n')),
      ...(await t(`B: ${DOCUMENT}`)),
      ...(await t('\n')),
      ...(await t(BGE_GEMMA_PROMPT)),
    ];
    const pair = await encoder.encodePair(QUERY, DOCUMENT, { maxLength: 1024 });
    assert.deepEqual(Array.from(pair.ids), expected);
    assert.equal(pair.length, expected.length);
    assert.deepEqual({ yes: encoder.info.yesId, no: encoder.info.noId }, { yes: gemma.yesTokenId, no: gemma.noTokenId });
  });

  it('qwen3: the chat prefix, "<Instruct>: …\\n<Query>: …\\n<Document>: …", then the assistant prefix with an empty think block', async () => {
    const t = (text: string) => tokens(qwen.tokenizerPath, text);
    const body = (instruction: string) => `<Instruct>: ${instruction}\n<Query>: ${QUERY}\n<Document>: ${DOCUMENT}`;
    const encoder = await encoderFor(qwen, { type: 'causal-lm-yes-no', template: 'qwen3' });
    const expected = [...(await t(QWEN3_PREFIX)), ...(await t(body(QWEN3_DEFAULT_INSTRUCTION))), ...(await t(QWEN3_SUFFIX))];
    assert.deepEqual(Array.from((await encoder.encodePair(QUERY, DOCUMENT, { maxLength: 1024 })).ids), expected);
    assert.equal(expected[0], qwen.specialTokens['<|im_start|>']);
    assert.deepEqual({ yes: encoder.info.yesId, no: encoder.info.noId }, { yes: qwen.yesTokenId, no: qwen.noTokenId });

    const instructed = await encoderFor(qwen, { type: 'causal-lm-yes-no', template: 'qwen3', instruction: 'Find {query} passages about animals' });
    const expectedInstructed = [...(await t(QWEN3_PREFIX)), ...(await t(body('Find {query} passages about animals'))), ...(await t(QWEN3_SUFFIX))];
    assert.deepEqual(Array.from((await instructed.encodePair(QUERY, DOCUMENT, { maxLength: 1024 })).ids), expectedInstructed, 'an instruction is text, even with braces in it');
  });

  it('custom: prefix, body and suffix each tokenized on their own', async () => {
    const t = (text: string) => tokens(qwen.tokenizerPath, text);
    const encoder = await encoderFor(qwen, {
      type: 'causal-lm-yes-no',
      template: 'custom',
      prefix: '<|im_start|>user\n',
      body: 'Q: {query}\nD: {document}',
      suffix: '<|im_end|>\nAnswer:',
      yesToken: 'yes',
    });
    const expected = [...(await t('<|im_start|>user\n')), ...(await t(`Q: ${QUERY}\nD: ${DOCUMENT}`)), ...(await t('<|im_end|>\nAnswer:'))];
    assert.deepEqual(Array.from((await encoder.encodePair(QUERY, DOCUMENT, { maxLength: 512 })).ids), expected);
    assert.equal(encoder.info.noId, undefined, 'a logit head needs no "no" token');
  });
});

describe('prompt truncation', () => {
  it('keeps the template whole and cuts the longer of query and document to maxLength', async () => {
    const encoder = await encoderFor(qwen, { type: 'causal-lm-yes-no', template: 'qwen3' });
    const prefix = await tokens(qwen.tokenizerPath, QWEN3_PREFIX);
    const suffix = await tokens(qwen.tokenizerPath, QWEN3_SUFFIX);
    const full = await encoder.encodePair(QUERY, DOCUMENT.repeat(40), { maxLength: 4096 });
    const maxLength = encoder.info.fixedTokens + 30;
    assert.ok(full.length > maxLength);
    const cut = await encoder.encodePair(QUERY, DOCUMENT.repeat(40), { maxLength });
    const ids = Array.from(cut.ids);
    assert.ok(cut.length <= maxLength && cut.length >= maxLength - 1, `${cut.length} tokens for maxLength ${maxLength}`);
    assert.deepEqual(ids.slice(0, prefix.length), prefix, 'the prefix is whole');
    assert.deepEqual(ids.slice(-suffix.length), suffix, 'the suffix is whole');
    // The query is the shorter: it stays whole, and the document is cut from its end.
    const kept = cut.length - suffix.length;
    assert.deepEqual(ids.slice(0, kept), Array.from(full.ids).slice(0, kept), 'the cut prompt is the untruncated one up to the cut, then the suffix');
  });

  it('cuts both longest-first when query and document are long; the gemma separators and prompt stay', async () => {
    const encoder = await encoderFor(gemma, { type: 'causal-lm-yes-no', template: 'bge-gemma' });
    const maxLength = encoder.info.fixedTokens + 40;
    const pair = await encoder.encodePair(QUERY.repeat(30), DOCUMENT.repeat(30), { maxLength });
    const ids = Array.from(pair.ids);
    assert.ok(pair.length <= maxLength);
    assert.equal(ids[0], gemma.specialTokens['<bos>']);
    const separator = await tokens(gemma.tokenizerPath, '\n');
    const sepAndPrompt = [...separator, ...(await tokens(gemma.tokenizerPath, BGE_GEMMA_PROMPT))];
    assert.deepEqual(ids.slice(-sepAndPrompt.length), sepAndPrompt, 'the separator and the fixed prompt end every prompt');
    // Both were cut: neither the query nor the document tokens of the untruncated prompt are all there.
    const untruncated = await encoder.encodePair(QUERY.repeat(30), DOCUMENT.repeat(30), { maxLength: 4096 });
    const queryTokens = (await tokens(gemma.tokenizerPath, `A: ${QUERY.repeat(30)}`)).length;
    assert.ok(untruncated.length - pair.length > 0);
    assert.ok(ids.indexOf(separator[0] as number) < 1 + queryTokens, 'the query was cut too');
  });

  it('with truncate false an over-long pair is a payload_too_large error naming the document', async () => {
    const encoder = await encoderFor(qwen, { type: 'causal-lm-yes-no', template: 'qwen3' });
    await assert.rejects(
      encoder.encodePairs(QUERY, ['short', DOCUMENT.repeat(50)], { maxLength: encoder.info.fixedTokens + 20, truncate: false }),
      (error: unknown) => error instanceof RerankError && error.kind === 'payload_too_large' && error.field === 'documents.1',
    );
    await assert.rejects(encoder.encodePair(QUERY, DOCUMENT, { maxLength: encoder.info.fixedTokens }), /leaves no room for the query and document/);
  });

  it('longest first: the longer loses first, then both alternately (a tie cuts the document)', () => {
    const cases: [number, number, number, [number, number]][] = [
      [10, 100, 50, [10, 50]],
      [100, 10, 50, [50, 10]],
      [40, 40, 10, [35, 35]],
      [40, 40, 11, [35, 34]],
      [30, 50, 30, [25, 25]],
      [5, 5, 0, [5, 5]],
    ];
    for (const [query, document, over, expected] of cases) assert.deepEqual(longestFirst(query, document, over), expected, `${query}, ${document}, over ${over}`);
  });
});

describe('template tokens the tokenizer lacks', () => {
  it('a template whose special tokens are not the tokenizer\'s fails, naming them', async () => {
    await assert.rejects(encoderFor(gemma, { type: 'causal-lm-yes-no', template: 'qwen3' }), (error: unknown) => error instanceof HeadConfigError && /<\|im_start\|>, <\|im_end\|>/.test((error as Error).message));
  });

  it('a yes or no token that is not one token of the vocabulary fails, naming it', async () => {
    await assert.rejects(encoderFor(gemma, { type: 'causal-lm-yes-no', template: 'bge-gemma', yesToken: 'Absolutely' }), /the yes token "Absolutely" is not a token of the tokenizer/);
    await assert.rejects(encoderFor(qwen, { type: 'causal-lm-yes-no', template: 'qwen3', noTokenId: 10_000_000 }), /no token id 10000000 is outside the tokenizer's vocabulary/);
  });
});

describe('head resolution', () => {
  it('config over catalogue, field by field; another type or template replaces it; defaults per template', () => {
    const catalogue: HeadConfig = { type: 'causal-lm-yes-no', template: 'qwen3' };
    const merged = resolveHead({ type: 'causal-lm-yes-no', instruction: 'Find code' }, catalogue) as CausalLmHead;
    assert.equal(merged.template, 'qwen3');
    assert.equal(merged.instruction, 'Find code');
    assert.deepEqual([merged.yes, merged.no, merged.normalize, merged.paddingSide], [{ token: 'yes' }, { token: 'no' }, 'softmax', 'left']);
    assert.deepEqual(resolveHead({ type: 'cross-encoder' }, catalogue), { type: 'cross-encoder' });
    assert.deepEqual(resolveHead(undefined, undefined), { type: 'cross-encoder' });
    const gemmaHead = resolveHead({ type: 'causal-lm-yes-no', template: 'bge-gemma', paddingSide: 'right' }, catalogue) as CausalLmHead;
    assert.deepEqual([gemmaHead.yes, gemmaHead.normalize, gemmaHead.paddingSide], [{ token: 'Yes' }, 'logit', 'right']);
    assert.throws(() => resolveHead({ type: 'causal-lm-yes-no' }, undefined), /needs a template/);
  });
});
