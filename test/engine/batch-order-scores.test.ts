import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { BatchQueue } from '../../server/engine/batch-queue.ts';
import type { BatchOrder } from '../../server/engine/batch-order.ts';
import { loadOnnxModel, type PairScorer } from '../../server/engine/onnx-model.ts';
import { PairTokenizer, type EncodedPair } from '../../server/engine/pair-tokenizer.ts';
import { silentLogger } from '../../server/logger.ts';
import { tinyModel } from '../support/models.ts';

/** Batch order changes which pairs share a batch, never a score: first-come, mixed and one pair per run agree. */

const open: PairScorer[] = [];
after(async () => {
  await Promise.all(open.map((model) => model.close()));
});

const WORDS = 'the river city history market school music people water energy policy search index model query'.split(' ');

/** Four requests of 12 documents of 1 to 60 words, deterministic. */
function requests(): { query: string; documents: string[] }[] {
  let state = 7;
  const next = (n: number) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
  };
  return [0, 1, 2, 3].map((r) => ({
    query: `question ${r} about the ${WORDS[next(WORDS.length)]}`,
    documents: Array.from({ length: 12 }, () => Array.from({ length: 1 + next(60) }, () => WORDS[next(WORDS.length)]).join(' ')),
  }));
}

describe('scores do not depend on the batch order', () => {
  it('first-come, mixed and one pair per run give the same logits', async () => {
    const files = await tinyModel();
    const tokenizer = PairTokenizer.load({ tokenizerPath: files.tokenizerPath });
    const model = await loadOnnxModel({ modelPath: files.modelPath, device: 'cpu', padId: tokenizer.padId, logger: silentLogger() });
    open.push(model);
    const encoded: EncodedPair[][] = [];
    for (const request of requests()) {
      encoded.push(await tokenizer.encodePairs(request.query, request.documents, { maxLength: 512, withTypeIds: model.description.takesTypeIds }));
    }
    const scoreAll = async (order: BatchOrder, maxBatchSize: number) => {
      const queue = new BatchQueue({ version: 'v1', model, order, limits: () => ({ maxBatchTokens: 16_384, maxBatchSize, maxQueuedPairs: 1000, maxPaddingRatio: 0.3 }) });
      const results = await Promise.all(encoded.map((pairs) => queue.score(pairs)));
      return results.map((result) => [...result.logits]);
    };
    const alone = await scoreAll('first-come', 1);
    for (const [order, scores] of [
      ['first-come', await scoreAll('first-come', 32)],
      ['mixed', await scoreAll('mixed', 32)],
    ] as const) {
      scores.forEach((logits, r) =>
        logits.forEach((logit, d) => assert.ok(Math.abs(logit - (alone[r]?.[d] as number)) < 1e-4, `${order}: request ${r} document ${d}: ${logit} vs ${alone[r]?.[d]} alone`)),
      );
    }
    assert.ok(new Set(alone.flat()).size > 40, 'the documents score differently');
  });
});
