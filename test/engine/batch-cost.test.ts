import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchCost, bucketOf } from '../../server/engine/batch-cost.ts';

const close = (actual: number, expected: number) => assert.ok(Math.abs(actual - expected) < 1e-12, `${actual} ≠ ${expected}`);

describe('BatchCost', () => {
  it('knows nothing before a batch: no cost, no padding', () => {
    const cost = new BatchCost();
    assert.equal(cost.measured, false);
    assert.equal(cost.secondsForTokens(bucketOf(100), 1000), 0);
    assert.equal(cost.slotsPerToken(bucketOf(100)), 1);
  });

  it('keeps wide and narrow batches apart: narrow batches run last do not make a queue of wide pairs look cheap', () => {
    const cost = new BatchCost();
    cost.observe({ width: 400, slots: 4000, tokens: 3800, seconds: 0.4 }); // 100 µs per slot
    for (let i = 0; i < 20; i += 1) cost.observe({ width: 40, slots: 400, tokens: 400, seconds: 0.008 }); // 20 µs per slot
    close(cost.secondsPerSlot(bucketOf(400)), 1e-4);
    close(cost.secondsPerSlot(bucketOf(40)), 2e-5);
    close(cost.secondsForTokens(bucketOf(400), 3800), 0.4);
  });

  it('a width not seen yet costs what all batches cost together', () => {
    const cost = new BatchCost();
    cost.observe({ width: 40, slots: 400, tokens: 400, seconds: 0.01 });
    cost.observe({ width: 400, slots: 4000, tokens: 4000, seconds: 0.1 });
    // Exponentially weighted sums over both: (0.01 × 0.7 + 0.1) / (400 × 0.7 + 4000).
    close(cost.secondsPerSlot(bucketOf(200)), (0.01 * 0.7 + 0.1) / (400 * 0.7 + 4000));
  });

  it('weighs a batch by its slots and follows a change in cost', () => {
    const cost = new BatchCost();
    cost.observe({ width: 100, slots: 100, tokens: 100, seconds: 0.1 }); // 1 ms per slot, 1 pair
    cost.observe({ width: 100, slots: 3200, tokens: 3200, seconds: 0.32 }); // 0.1 ms per slot, 32 pairs
    close(cost.secondsPerSlot(bucketOf(100)), (0.1 * 0.7 + 0.32) / (100 * 0.7 + 3200));
    for (let i = 0; i < 60; i += 1) cost.observe({ width: 100, slots: 3200, tokens: 3200, seconds: 0.64 });
    assert.ok(Math.abs(cost.secondsPerSlot(bucketOf(100)) - 2e-4) < 1e-9, 'the old cost has faded');
  });

  it('counts padding per width', () => {
    const cost = new BatchCost();
    cost.observe({ width: 300, slots: 3000, tokens: 2400, seconds: 0.3 });
    close(cost.slotsPerToken(bucketOf(300)), 1.25);
    close(cost.secondsForTokens(bucketOf(300), 2400), 0.3);
  });
});
