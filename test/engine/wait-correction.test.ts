import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WaitCorrection } from '../../server/engine/wait-correction.ts';

const close = (actual: number, expected: number, message?: string) => assert.ok(Math.abs(actual - expected) < 1e-9, message ?? `${actual} ≠ ${expected}`);

describe('WaitCorrection', () => {
  it('starts at 1 and sits above the smoothed ratio by four smoothed deviations', () => {
    const correction = new WaitCorrection();
    assert.equal(correction.factor, 1);
    correction.observe(1, 1.5); // ratio 1.5: mean 1 + 0.2 × 0.5, deviation 0.2 × 0.5
    close(correction.mean, 1.1);
    close(correction.factor, 1.5);
  });

  it('settles on a steady ratio, from above', () => {
    const correction = new WaitCorrection();
    const factors = [];
    for (let i = 0; i < 60; i += 1) {
      correction.observe(2, 3);
      factors.push(correction.factor);
    }
    assert.ok(Math.max(...factors) > 1.6, `passes 1.5 while learning: up to ${Math.max(...factors)}`);
    assert.ok(correction.factor >= 1.5 && correction.factor < 1.51, `settled at ${correction.factor}`);
  });

  it('stays above most of a spread of ratios that a mean would halve', () => {
    const correction = new WaitCorrection();
    let above = 0;
    const ratios = Array.from({ length: 400 }, (_, i) => (i % 2 === 0 ? 1 : 2));
    for (const [i, ratio] of ratios.entries()) {
      if (i >= 100 && ratio <= correction.factor) above += 1;
      correction.observe(1, ratio);
    }
    assert.ok(correction.mean > 1.3 && correction.mean < 1.7, `mean ${correction.mean}`);
    assert.equal(above, 300, `factor ${correction.factor} covers every wait once learnt`);
  });

  it('ignores estimates too short to learn from, and bounds one request and the factor', () => {
    const correction = new WaitCorrection();
    correction.observe(0.01, 5);
    correction.observe(0, 1);
    correction.observe(1, Number.NaN);
    assert.equal(correction.factor, 1);
    correction.observe(1, 100); // counts as 4
    close(correction.mean, 1.6);
    for (let i = 0; i < 50; i += 1) correction.observe(1, 100);
    assert.ok(correction.factor <= 8, `at most 8: ${correction.factor}`);
    for (let i = 0; i < 200; i += 1) correction.observe(1, 0); // each counts as 0.5
    assert.ok(correction.factor >= 0.5 && correction.factor < 0.51, `at least 0.5: ${correction.factor}`);
  });
});
