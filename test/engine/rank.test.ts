import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rankResults, type RankOptions } from '../../server/engine/rank.ts';

const sigmoid = (logit: number) => 1 / (1 + Math.exp(-logit));
const outcome = (logits: number[]) => ({ logits, scores: logits.map(sigmoid) });

const cases: Array<{ name: string; logits: number[]; options?: RankOptions; want: number[] }> = [
  { name: 'sorts best first', logits: [-1, 3, 0.5], want: [1, 2, 0] },
  { name: 'no documents, no results', logits: [], want: [] },
  { name: 'equal scores keep request order', logits: [1, 2, 1, 2], want: [1, 3, 0, 2] },
  { name: 'top n cuts after sorting', logits: [-1, 3, 0.5, 2], options: { topN: 2 }, want: [1, 3] },
  { name: 'top n larger than the list returns all', logits: [0, 1], options: { topN: 10 }, want: [1, 0] },
  { name: 'threshold drops low normalized scores', logits: [-3, 0, 3], options: { threshold: 0.5 }, want: [2, 1] },
  { name: 'threshold is inclusive', logits: [0], options: { threshold: 0.5 }, want: [0] },
  { name: 'threshold 0 keeps all', logits: [-20, 20], options: { threshold: 0 }, want: [1, 0] },
  { name: 'threshold 1 keeps only saturated scores', logits: [5, 40], options: { threshold: 1 }, want: [1] },
  { name: 'threshold applies before the cut', logits: [-5, -4, 2, 1], options: { threshold: 0.5, topN: 3 }, want: [2, 3] },
  { name: 'all below threshold: empty', logits: [-5, -4], options: { threshold: 0.9 }, want: [] },
  // sigmoid(40) and sigmoid(50) are both 1.0 in float; the logit still orders them.
  { name: 'saturated scores ordered by logit', logits: [40, 50, 45], want: [1, 2, 0] },
];

for (const { name, logits, options, want } of cases) {
  test(`rankResults: ${name}`, () => {
    const ranked = rankResults(outcome(logits), options);
    assert.deepEqual(
      ranked.map((result) => result.index),
      want,
    );
    for (const result of ranked) {
      assert.equal(result.logit, logits[result.index]);
      assert.equal(result.score, sigmoid(logits[result.index] ?? NaN));
    }
  });
}

test('rankResults does not modify its input', () => {
  const input = outcome([0.3, 2, -1]);
  const copy = structuredClone(input);
  rankResults(input, { topN: 1, threshold: 0.2 });
  assert.deepEqual(input, copy);
});
