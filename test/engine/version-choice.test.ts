import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRerankError } from '../../server/errors.ts';
import { chooseVersion, stickyPoint, type VersionCandidate, type VersionChoice, type VersionChoiceInput } from '../../server/engine/version-choice.ts';

const v = (name: string, weight: number, extra: Partial<VersionCandidate> = {}): VersionCandidate => ({
  name,
  weight,
  enabled: true,
  ready: true,
  ...extra,
});

// On the weight line in name order: canary [0, 0.1), stable [0.1, 1).
const stableCanary = [v('stable', 90), v('canary', 10)];

/** The first key `user-N` whose sticky point lies within 0.04 of `point`. */
function keyAt(point: number): string {
  for (let n = 0; ; n += 1) if (Math.abs(stickyPoint(`user-${n}`) - point) < 0.04) return `user-${n}`;
}

describe('chooseVersion', () => {
  const cases: { name: string; input: Partial<VersionChoiceInput>; expected: VersionChoice }[] = [
    { name: 'path version wins', input: { pathVersion: 'canary', headerVersion: 'stable', random: () => 0 }, expected: { version: 'canary', reason: 'path' } },
    { name: 'header version next', input: { headerVersion: 'canary', random: () => 0 }, expected: { version: 'canary', reason: 'header' } },
    { name: 'header value is trimmed', input: { headerVersion: ' canary ' }, expected: { version: 'canary', reason: 'header' } },
    { name: 'empty header is no header', input: { headerVersion: '', random: () => 0.05 }, expected: { version: 'canary', reason: 'weighted' } },
    { name: 'weighted: low draw', input: { random: () => 0 }, expected: { version: 'canary', reason: 'weighted' } },
    { name: 'weighted: draw just under the split', input: { random: () => 0.0999 }, expected: { version: 'canary', reason: 'weighted' } },
    { name: 'weighted: draw at the split', input: { random: () => 0.1 }, expected: { version: 'stable', reason: 'weighted' } },
    { name: 'weighted: top draw', input: { random: () => 0.999999 }, expected: { version: 'stable', reason: 'weighted' } },
    {
      name: 'unknown header version falls back to the default',
      input: { headerVersion: 'nope' },
      expected: { version: 'stable', reason: 'default', fallbackFrom: 'nope' },
    },
    {
      name: 'disabled version falls back',
      input: { versions: [v('stable', 90), v('canary', 10, { enabled: false })], pathVersion: 'canary' },
      expected: { version: 'stable', reason: 'default', fallbackFrom: 'canary' },
    },
    {
      name: 'version still loading falls back',
      input: { versions: [v('stable', 90), v('canary', 10, { ready: false })], headerVersion: 'canary' },
      expected: { version: 'stable', reason: 'default', fallbackFrom: 'canary' },
    },
    {
      name: 'a version that cannot serve gets no weighted traffic',
      input: { versions: [v('stable', 90), v('canary', 10, { ready: false })], random: () => 0 },
      expected: { version: 'stable', reason: 'weighted' },
    },
    {
      name: 'all weights zero: the default',
      input: { versions: [v('stable', 0), v('canary', 0)], random: () => 0.5 },
      expected: { version: 'stable', reason: 'default' },
    },
    {
      name: 'default not ready: weight goes to the ready versions',
      input: { versions: [v('stable', 90, { ready: false }), v('canary', 10)], random: () => 0.99 },
      expected: { version: 'canary', reason: 'weighted' },
    },
    {
      name: 'sticky key: the point comes from the key, not the random source',
      input: { stickyKey: keyAt(0.05), random: () => 0.99 },
      expected: { version: 'canary', reason: 'sticky' },
    },
    {
      name: 'sticky key past the split',
      input: { stickyKey: keyAt(0.95), random: () => 0 },
      expected: { version: 'stable', reason: 'sticky' },
    },
    { name: 'empty sticky key: a random draw', input: { stickyKey: '', random: () => 0.05 }, expected: { version: 'canary', reason: 'weighted' } },
    { name: 'header version beats the sticky key', input: { stickyKey: keyAt(0.95), headerVersion: 'canary' }, expected: { version: 'canary', reason: 'header' } },
    {
      name: 'sticky key with nothing weighted: the default',
      input: { versions: [v('stable', 0), v('canary', 0)], stickyKey: keyAt(0.95) },
      expected: { version: 'stable', reason: 'default' },
    },
    {
      name: 'nothing can serve: still the default (the engine answers unavailable)',
      input: { versions: [v('stable', 90, { ready: false }), v('canary', 10, { enabled: false })], random: () => 0 },
      expected: { version: 'stable', reason: 'default' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const input: VersionChoiceInput = { versions: stableCanary, defaultVersion: 'stable', random: () => 0.5, ...c.input };
      assert.deepEqual(chooseVersion(input), c.expected);
    });
  }

  it('a path naming no configured version is not_found, listing the configured versions (header ignored)', () => {
    const versions = [v('stable', 90), v('canary', 10, { enabled: false })];
    assert.throws(
      () => chooseVersion({ versions, defaultVersion: 'stable', random: Math.random, pathVersion: 'nope', headerVersion: 'stable' }),
      (error: unknown) => isRerankError(error) && error.kind === 'not_found' && error.message === 'no version "nope": the configured versions are canary (disabled), stable',
    );
  });

  it('splits unpinned traffic by weight', () => {
    // mulberry32: a seeded uniform source, so the test is deterministic.
    let state = 1234;
    const random = () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const versions = [v('a', 70), v('b', 20), v('c', 10), v('off', 50, { enabled: false })];
    const counts: Record<string, number> = {};
    const draws = 20_000;
    for (let i = 0; i < draws; i += 1) {
      const { version } = chooseVersion({ versions, defaultVersion: 'a', random });
      counts[version] = (counts[version] ?? 0) + 1;
    }
    assert.equal(counts.off, undefined);
    for (const [name, share] of [['a', 0.7], ['b', 0.2], ['c', 0.1]] as const) {
      const observed = (counts[name] ?? 0) / draws;
      // Five standard deviations of a binomial share: fails by chance about once in 3 million runs.
      const tolerance = 5 * Math.sqrt((share * (1 - share)) / draws);
      assert.ok(Math.abs(observed - share) < tolerance, `${name}: ${observed} vs ${share} ± ${tolerance.toFixed(4)}`);
    }
  });

  it('keeps a sticky key on one version, and spreads keys by weight', () => {
    const versions = [v('a', 70), v('b', 20), v('c', 10)];
    let calls = 0;
    const random = () => {
      calls += 1;
      return Math.random();
    };
    const counts: Record<string, number> = {};
    const keys = 20_000;
    for (let i = 0; i < keys; i += 1) {
      const stickyKey = `session-${i}`;
      const first = chooseVersion({ versions, defaultVersion: 'a', random, stickyKey });
      for (let again = 0; again < 3; again += 1) assert.deepEqual(chooseVersion({ versions, defaultVersion: 'a', random, stickyKey }), first);
      counts[first.version] = (counts[first.version] ?? 0) + 1;
    }
    assert.equal(calls, 0, 'a sticky draw never reads the random source');
    for (const [name, share] of [['a', 0.7], ['b', 0.2], ['c', 0.1]] as const) {
      const observed = (counts[name] ?? 0) / keys;
      const tolerance = 5 * Math.sqrt((share * (1 - share)) / keys);
      assert.ok(Math.abs(observed - share) < tolerance, `${name}: ${observed} vs ${share} ± ${tolerance.toFixed(4)}`);
    }
  });

  it('moves only the keys that must move when a canary weight grows', () => {
    const before = [v('canary', 10), v('stable', 90)];
    const after = [v('canary', 20), v('stable', 80)];
    let moved = 0;
    for (let i = 0; i < 10_000; i += 1) {
      const stickyKey = `user-${i}`;
      const was = chooseVersion({ versions: before, defaultVersion: 'stable', random: Math.random, stickyKey }).version;
      const now = chooseVersion({ versions: after, defaultVersion: 'stable', random: Math.random, stickyKey }).version;
      if (was !== now) {
        assert.equal(was, 'stable');
        moved += 1;
      }
    }
    assert.ok(Math.abs(moved / 10_000 - 0.1) < 0.02, `${moved} of 10000 keys moved`);
  });

  it('walks the weight line in name order, whatever order the versions come in', () => {
    const inFileOrder = [v('b', 50), v('a', 50)];
    const inNameOrder = [v('a', 50), v('b', 50)];
    for (let i = 0; i < 1000; i += 1) {
      const stickyKey = `user-${i}`;
      const expected = stickyPoint(stickyKey) < 0.5 ? 'a' : 'b';
      for (const versions of [inFileOrder, inNameOrder]) {
        assert.equal(chooseVersion({ versions, defaultVersion: 'a', random: Math.random, stickyKey }).version, expected, stickyKey);
      }
    }
    assert.equal(chooseVersion({ versions: inFileOrder, defaultVersion: 'a', random: () => 0 }).version, 'a', 'random draws too');
  });

  it('derives points in [0, 1) that differ between near keys', () => {
    const points = new Set<number>();
    for (let i = 0; i < 1000; i += 1) {
      const point = stickyPoint(`k${i}`);
      assert.ok(point >= 0 && point < 1);
      points.add(point);
    }
    assert.equal(points.size, 1000);
    assert.equal(stickyPoint('user-42'), stickyPoint('user-42'));
  });
});
