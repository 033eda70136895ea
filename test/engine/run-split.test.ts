import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { flattenBatch } from '../../server/engine/batch-inputs.ts';
import type { EncodedPair } from '../../server/engine/pair-tokenizer.ts';
import { ATTENTION_WIDTH, CPU_RUN_TOKENS, cpuRunTokensSetting, fitsRun, planRuns, sliceFlatBatch } from '../../server/engine/run-split.ts';

describe('planRuns', () => {
  const cases: Array<{ name: string; lengths: number[]; maxTokens: number; runs: number[][] }> = [
    { name: 'a batch within the budget is one run, longest first', lengths: [10, 30, 20], maxTokens: 90, runs: [[1, 2, 0]] },
    { name: 'runs fill while pairs × the run’s longest stays within the budget', lengths: [10, 100, 20, 90], maxTokens: 200, runs: [[1, 3], [2, 0]] },
    {
      name: 'past ATTENTION_WIDTH, pairs × the longest² stays within budget × ATTENTION_WIDTH',
      lengths: [10, 300, 20, 290, 100],
      maxTokens: 600,
      runs: [[1], [3], [4, 2, 0]],
    },
    { name: 'at 2048 tokens, pairs of 512 run one by one, pairs of 128 together', lengths: [512, 512, 128, 128], maxTokens: 2048, runs: [[0], [1], [2, 3]] },
    { name: 'a pair longer than the budget runs alone', lengths: [700, 5, 5], maxTokens: 600, runs: [[0], [1, 2]] },
    { name: 'equal lengths keep their order', lengths: [4, 4, 4, 4, 4], maxTokens: 8, runs: [[0, 1], [2, 3], [4]] },
    { name: 'no pairs, no runs', lengths: [], maxTokens: 100, runs: [] },
  ];
  for (const { name, lengths, maxTokens, runs } of cases) {
    it(name, () => assert.deepEqual(planRuns(lengths, maxTokens), runs));
  }

  it('every pair runs once, and no run of several pairs passes the budget', () => {
    const lengths = Array.from({ length: 200 }, (_, i) => 20 + ((i * 7919) % 381));
    const runs = planRuns(lengths, 2048);
    assert.deepEqual(runs.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
    for (const run of runs) {
      const width = Math.max(...run.map((i) => lengths[i] as number));
      assert.ok(run.length === 1 || (run.length * width <= 2048 && run.length * width * width <= 2048 * ATTENTION_WIDTH), `${run.length} pairs of ${width}`);
      assert.ok(fitsRun(run.length, width, 2048) || run.length === 1);
    }
  });
});

describe('sliceFlatBatch', () => {
  const pair = (ids: number[], types?: number[]): EncodedPair =>
    types ? { ids: Int32Array.from(ids), typeIds: Uint8Array.from(types), length: ids.length } : { ids: Int32Array.from(ids), length: ids.length };

  it('takes the pairs at the indexes, in that order, with their type ids and width', () => {
    const batch = flattenBatch([pair([1, 2, 3], [0, 0, 1]), pair([4], [0]), pair([5, 6], [0, 1])], true);
    assert.deepEqual(sliceFlatBatch(batch, [2, 0]), {
      count: 2,
      width: 3,
      lengths: Int32Array.from([2, 3]),
      ids: Int32Array.from([5, 6, 1, 2, 3]),
      typeIds: Uint8Array.from([0, 1, 0, 0, 1]),
    });
  });

  it('has no type ids when the batch has none', () => {
    const batch = flattenBatch([pair([1, 2]), pair([3])], false);
    assert.deepEqual(sliceFlatBatch(batch, [1]), { count: 1, width: 1, lengths: Int32Array.from([1]), ids: Int32Array.from([3]) });
  });
});

describe('cpuRunTokensSetting', () => {
  it('reads RERANK_CPU_RUN_TOKENS: a number of tokens, off, or the default when unset', () => {
    assert.equal(cpuRunTokensSetting({}), CPU_RUN_TOKENS);
    assert.equal(cpuRunTokensSetting({ RERANK_CPU_RUN_TOKENS: '4096' }), 4096);
    assert.equal(cpuRunTokensSetting({ RERANK_CPU_RUN_TOKENS: 'off' }), Infinity);
  });

  it('refuses anything else, naming the variable', () => {
    for (const value of ['0', '-5', '2.5', 'lots']) {
      assert.throws(() => cpuRunTokensSetting({ RERANK_CPU_RUN_TOKENS: value }), new RegExp(`RERANK_CPU_RUN_TOKENS .*"${value}"`));
    }
  });
});
