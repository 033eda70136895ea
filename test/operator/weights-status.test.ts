import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configAppliedCondition, readyCondition, setConditions, type Observation } from '../../operator/status.ts';
import { toPercent, weightsInEffect, type Availability } from '../../operator/weights.ts';
import { example } from './support/examples.ts';

const spec = example('seed').spec;
const up = { primary: 1, fallback: 0 };
const down = { primary: 0, fallback: 0 };

describe('weights in effect', () => {
  const cases: Array<[string, Availability, Record<string, number>]> = [
    ['all ready: the spec\'s weights', { 'v2-m3': up, 'v2-gemma': up, v1: up }, { 'v2-m3': 90, 'v2-gemma': 10, v1: 0 }],
    ['canary down: its 10 goes to v2-m3', { 'v2-m3': up, 'v2-gemma': down, v1: up }, { 'v2-m3': 100, 'v2-gemma': 0, v1: 0 }],
    ['main down: the canary takes all', { 'v2-m3': down, 'v2-gemma': up, v1: up }, { 'v2-m3': 0, 'v2-gemma': 100, v1: 0 }],
    ['only the weightless v1 is up: it takes everything', { 'v2-m3': down, 'v2-gemma': down, v1: up }, { 'v2-m3': 0, 'v2-gemma': 0, v1: 100 }],
    ['nothing is up: no weight anywhere', {}, { 'v2-m3': 0, 'v2-gemma': 0, v1: 0 }],
    ['main on CPU fallback keeps its weight', { 'v2-m3': { primary: 0, fallback: 1 }, 'v2-gemma': up, v1: up }, { 'v2-m3': 90, 'v2-gemma': 10, v1: 0 }],
  ];
  for (const [what, availability, expected] of cases) {
    test(what, () => {
      const plan = weightsInEffect(spec, availability);
      assert.deepEqual(Object.fromEntries(Object.entries(plan.versions).map(([k, v]) => [k, v.weight])), expected);
    });
  }

  test('percentages always sum to 100, largest remainders rounded up', () => {
    assert.deepEqual(toPercent([{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }, { name: 'c', weight: 1 }]), { a: 34, b: 33, c: 33 });
    assert.deepEqual(toPercent([{ name: 'a', weight: 30 }, { name: 'b', weight: 30 }]), { a: 50, b: 50 });
    assert.deepEqual(toPercent([]), {});
  });
});

describe('conditions', () => {
  const base = (over: Partial<Observation>): Observation => ({
    generation: 3,
    spec,
    weights: weightsInEffect(spec, { 'v2-m3': up, 'v2-gemma': up, v1: up }),
    versions: { 'v2-m3': { pools: {}, readyPods: 2, appliedPods: 2 }, v1: { pools: {}, readyPods: 1, appliedPods: 0 } },
    configHash: 'h1',
    errors: [],
    ...over,
  });

  test('ConfigApplied counts ready pods on the current hash as n/m', () => {
    assert.deepEqual(configAppliedCondition(base({})), { type: 'ConfigApplied', status: 'False', reason: 'Rollout', message: '2/3 ready pods run config h1' });
  });

  test('Ready is never True with a reconcile error, even when every version serves', () => {
    assert.equal(readyCondition(base({})).status, 'True');
    assert.equal(readyCondition(base({ errors: ['apply Service rag/x: boom'] })).status, 'False');
  });

  test('lastTransitionTime moves only when the status does', () => {
    const t1 = new Date('2026-01-01T00:00:00Z');
    const t2 = new Date('2026-01-01T01:00:00Z');
    const first = setConditions(undefined, [{ type: 'Ready', status: 'False', reason: 'A', message: '' }], 1, t1);
    const same = setConditions(first, [{ type: 'Ready', status: 'False', reason: 'B', message: 'x' }], 2, t2);
    const flipped = setConditions(same, [{ type: 'Ready', status: 'True', reason: 'Ready', message: '' }], 2, t2);
    assert.equal(same[0]!.lastTransitionTime, t1.toISOString());
    assert.equal(flipped[0]!.lastTransitionTime, t2.toISOString());
    assert.equal(flipped[0]!.observedGeneration, 2);
  });
});
