import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Targets } from '../bench/targets.ts';

test('benchmark targets: PASS or FAIL per figure, a summary, and exit code 1 on a miss', () => {
  const targets = new Targets();
  assert.equal(targets.check('ratio', 0.97, '>=', 0.95), 'PASS (target ≥ 0.95)');
  assert.equal(targets.check('p99', 61.2, '<=', 50, ' ms'), 'FAIL (target ≤ 50 ms)');
  assert.equal(targets.check('nothing measured', Number.NaN, '<=', 1), 'FAIL (target ≤ 1)', 'NaN never meets a target');
  assert.deepEqual(targets.summary(), [
    'PASS  ratio: 0.97 (target ≥ 0.95)',
    'FAIL  p99: 61.2 ms (target ≤ 50 ms)',
    'FAIL  nothing measured: n/a (target ≤ 1)',
    '2 of 3 targets missed',
  ]);
  const before = process.exitCode;
  const printed: string[] = [];
  try {
    targets.report((line) => printed.push(line));
    assert.equal(process.exitCode, 1);
  } finally {
    process.exitCode = before;
  }
  assert.equal(printed.at(-1), '2 of 3 targets missed');
  const all = new Targets();
  all.check('a', 1, '<=', 1);
  all.report(() => {});
  assert.equal(process.exitCode, before, 'all met leaves the exit code alone');
});
