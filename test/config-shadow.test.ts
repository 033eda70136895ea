import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../server/config/load.ts';
import { configIssues } from './support/config-issues.ts';

const base = { source: 'test.yaml', baseDir: '/srv/config' };

/** A config of versions a (enabled), b (enabled) and retired (disabled), with `shadow` on a. */
const withShadow = (shadow: string) => `
defaultVersion: a
versions:
  a:
    shadow: ${shadow}
  b: {}
  retired:
    enabled: false
`;

describe('serving config: a version\'s shadow', () => {
  test('accepted with another enabled version; topK and maxInFlight have defaults', () => {
    const { config } = parseConfig(withShadow('{ version: b, fraction: 0.25 }'), base);
    assert.deepEqual(config.versions.a?.shadow, { version: 'b', fraction: 0.25, topK: 10, maxInFlight: 4 });
    assert.equal(config.versions.b?.shadow, undefined);
  });

  test('refused, naming the field, when its version is itself, absent or disabled', () => {
    assert.deepEqual(configIssues(withShadow('{ version: a, fraction: 1 }'), base), [
      'versions.a.shadow.version: names "a", the version itself: a shadow must be another version',
    ]);
    assert.deepEqual(configIssues(withShadow('{ version: c, fraction: 1 }'), base), [
      'versions.a.shadow.version: names "c", which is not among versions (a, b, retired)',
    ]);
    assert.deepEqual(configIssues(withShadow('{ version: retired, fraction: 1 }'), base), ['versions.a.shadow.version: names "retired", which is disabled']);
  });

  test('refused, naming the field, when a number is out of range or a key unknown', () => {
    const issues = (shadow: string) => configIssues(withShadow(shadow), base).join('\n');
    assert.match(issues('{ version: b, fraction: 1.5 }'), /^versions\.a\.shadow\.fraction: /);
    assert.match(issues('{ version: b }'), /^versions\.a\.shadow\.fraction: /);
    assert.match(issues('{ version: b, fraction: 1, topK: 0 }'), /^versions\.a\.shadow\.topK: /);
    assert.match(issues('{ version: b, fraction: 1, maxInFlight: 0 }'), /^versions\.a\.shadow\.maxInFlight: /);
    assert.match(issues('{ version: b, fraction: 1, share: 1 }'), /^versions\.a\.shadow: .*share/);
  });
});
