import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  DEFAULT_MAX_PADDING_RATIO,
  compareByLength,
  packBatch,
  packSorted,
  paddingRatio,
  type PackLimits,
  type PendingPair,
} from '../../server/engine/batch-packer.ts';

/** Pending pairs of these lengths, arriving in the order listed. */
const arrivals = (lengths: number[]): PendingPair[] => lengths.map((length, order) => ({ length, order }));
const lengthsOf = (pending: PendingPair[], chosen: number[]) => chosen.map((i) => (pending[i] as PendingPair).length);

describe('packBatch', () => {
  const cases: { name: string; lengths: number[]; limits: PackLimits; expected: number[] }[] = [
    { name: 'nothing pending', lengths: [], limits: { maxBatchTokens: 100, maxBatchSize: 4 }, expected: [] },
    { name: 'one pair', lengths: [10], limits: { maxBatchTokens: 100, maxBatchSize: 4 }, expected: [0] },
    {
      name: 'equal lengths fill to the size cap, oldest first',
      lengths: [10, 10, 10, 10, 10, 10],
      limits: { maxBatchTokens: 1000, maxBatchSize: 4 },
      expected: [0, 1, 2, 3],
    },
    {
      name: 'equal lengths fill to the token budget',
      lengths: [10, 10, 10, 10, 10, 10],
      limits: { maxBatchTokens: 30, maxBatchSize: 32 },
      expected: [0, 1, 2],
    },
    {
      name: 'a pair longer than the budget runs alone',
      lengths: [500, 10, 10],
      limits: { maxBatchTokens: 100, maxBatchSize: 32 },
      expected: [0],
    },
    {
      name: 'the oldest anchors, the nearest lengths join it',
      lengths: [100, 10, 98, 11, 103, 12, 99],
      limits: { maxBatchTokens: 10_000, maxBatchSize: 4, maxPaddingRatio: 1 },
      expected: [0, 2, 4, 6],
    },
    {
      name: 'a short anchor takes short neighbours, not long ones',
      lengths: [10, 100, 11, 101, 12, 102],
      limits: { maxBatchTokens: 10_000, maxBatchSize: 3, maxPaddingRatio: 1 },
      expected: [0, 2, 4],
    },
    {
      name: 'padding cap keeps far lengths out',
      lengths: [100, 50, 40, 30],
      limits: { maxBatchTokens: 10_000, maxBatchSize: 32, maxPaddingRatio: 0.1 },
      expected: [0],
    },
    {
      name: 'padding cap off mixes everything',
      lengths: [100, 50, 40, 30],
      limits: { maxBatchTokens: 10_000, maxBatchSize: 32, maxPaddingRatio: 1 },
      expected: [0, 1, 2, 3],
    },
    {
      name: 'a longer pair that breaks the budget is skipped, shorter ones still join',
      lengths: [50, 60, 45, 44],
      limits: { maxBatchTokens: 150, maxBatchSize: 32, maxPaddingRatio: 1 },
      expected: [0, 2, 3],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(packBatch(arrivals(c.lengths), c.limits), c.expected);
    });
  }

  it('keeps padding under the default cap when lengths are mixed', () => {
    // 200 pairs of lengths spread over 30–400 tokens, in random order: what many requests leave pending.
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let pending = arrivals(Array.from({ length: 200 }, () => 30 + Math.floor(random() * 370)));
    let slots = 0;
    let tokens = 0;
    let batches = 0;
    while (pending.length > 0) {
      const chosen = packBatch(pending, { maxBatchTokens: 16_384, maxBatchSize: 32 });
      const lengths = lengthsOf(pending, chosen);
      slots += lengths.length * Math.max(...lengths);
      tokens += lengths.reduce((a, b) => a + b, 0);
      batches += 1;
      const taken = new Set(chosen);
      pending = pending.filter((_, i) => !taken.has(i));
    }
    const waste = (slots - tokens) / slots;
    assert.ok(waste <= DEFAULT_MAX_PADDING_RATIO, `padding ${(waste * 100).toFixed(1)}% of slots`);
    assert.ok(batches <= 40, `${batches} batches for 200 pairs`);
  });
});

describe('packBatch properties', () => {
  const pendingArb = fc
    .array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 300 })
    .map((lengths) => lengths.map((length, i) => ({ length, order: i * 3 + 1 })))
    .chain((pairs) => fc.shuffledSubarray(pairs, { minLength: pairs.length, maxLength: pairs.length }));
  const limitsArb = fc.record({
    maxBatchTokens: fc.integer({ min: 1, max: 20_000 }),
    maxBatchSize: fc.integer({ min: 1, max: 64 }),
    maxPaddingRatio: fc.double({ min: 0, max: 1, noNaN: true }),
  });

  it('includes the oldest, respects the cap and the budget (bar a lone pair), takes each pair once', () => {
    fc.assert(
      fc.property(pendingArb, limitsArb, (pending, limits) => {
        const chosen = packBatch(pending, limits);
        const oldest = pending.reduce((best, p, i) => (p.order < (pending[best] as PendingPair).order ? i : best), 0);
        assert.ok(chosen.includes(oldest), 'oldest pair included');
        assert.equal(new Set(chosen).size, chosen.length, 'no pair twice');
        assert.ok(chosen.length >= 1 && chosen.length <= limits.maxBatchSize, 'size cap');
        const lengths = lengthsOf(pending, chosen);
        const slots = lengths.length * Math.max(...lengths);
        if (chosen.length > 1) {
          assert.ok(slots <= limits.maxBatchTokens, `budget: ${slots} > ${limits.maxBatchTokens}`);
          assert.ok(paddingRatio(lengths) <= limits.maxPaddingRatio + 1e-12, 'padding cap');
        }
      }),
    );
  });

  it('packSorted returns a contiguous run around the anchor whose last entry is the longest', () => {
    fc.assert(
      fc.property(pendingArb, limitsArb, fc.nat(), (pending, limits, pick) => {
        const sorted = [...pending].sort(compareByLength);
        const anchor = pick % sorted.length;
        const { start, end } = packSorted(sorted, anchor, limits);
        assert.ok(start <= anchor && anchor < end && end <= sorted.length);
        const lengths = sorted.slice(start, end).map((p) => p.length);
        assert.equal(lengths.at(-1), Math.max(...lengths));
      }),
    );
  });

  it('drains any backlog: every pair is eventually chosen, the oldest each time', () => {
    fc.assert(
      fc.property(pendingArb, limitsArb, (initial, limits) => {
        let pending = initial;
        let rounds = 0;
        while (pending.length > 0) {
          const chosen = packBatch(pending, limits);
          const oldestOrder = Math.min(...pending.map((p) => p.order));
          assert.ok(chosen.some((i) => (pending[i] as PendingPair).order === oldestOrder));
          const taken = new Set(chosen);
          pending = pending.filter((_, i) => !taken.has(i));
          rounds += 1;
        }
        assert.ok(rounds <= initial.length);
      }),
      { numRuns: 50 },
    );
  });
});
