import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfigFile, parseConfig } from '../server/config/load.ts';
import { configIssues } from './support/config-issues.ts';

const base = { source: 'test.yaml', baseDir: '/srv/config' };

function issuesOf(text: string): string[] {
  return configIssues(text, base);
}

describe('serving config', () => {
  test('the documented example is accepted, defaults filled, model paths resolved against the file', () => {
    const { config, hash } = parseConfig(
      `
defaultVersion: v2-m3
versions:
  v2-m3:
    enabled: true
    description: "bge-reranker-v2-m3, long Chinese text"
    model: ./models/bge-reranker-v2-m3
    device: cpu
    weight: 100
    fallbackToCpu: true
    gpuMemoryThresholdMb: 1500
serving:
  topK: 5
  threshold: 0.0
  maxLength: 512
  maxBatchTokens: 16384
  maxBatchSize: 32
  useFp16: false
  logLevel: info
`,
      base,
    );
    assert.equal(config.versions['v2-m3']?.model, '/srv/config/models/bge-reranker-v2-m3');
    assert.equal(config.serving.topK, 5);
    assert.equal(config.serving.maxQueuedPairs, 8192);
    assert.match(hash, /^[0-9a-f]{16}$/);
  });

  test('the hash is stable under key order and changes with any value', () => {
    const a = parseConfig('defaultVersion: a\nversions: {a: {model: m, weight: 5}}\nserving: {topK: 3}', base).hash;
    const b = parseConfig('serving: {topK: 3}\nversions: {a: {weight: 5, model: m}}\ndefaultVersion: a', base).hash;
    const c = parseConfig('defaultVersion: a\nversions: {a: {model: m, weight: 5}}\nserving: {topK: 4}', base).hash;
    assert.equal(a, b);
    assert.notEqual(a, c);
  });

  const rejected: Array<[string, string, RegExp]> = [
    ['weight out of range', 'defaultVersion: a\nversions: {a: {model: m, weight: 200}}', /^versions\.a\.weight: /],
    ['misspelt knob', 'defaultVersion: a\nversions: {a: {model: m}}\nserving: {topk: 3}', /^serving: .*"topk"/],
    ['unknown version key', 'defaultVersion: a\nversions: {a: {model: m, modle: x}}', /^versions\.a: .*"modle"/],
    ['default names no version', 'defaultVersion: b\nversions: {a: {model: m}}', /^defaultVersion: names "b"/],
    ['default is disabled', 'defaultVersion: a\nversions: {a: {model: m, enabled: false}}', /^defaultVersion: .*disabled/],
    ['version name not DNS-safe', 'defaultVersion: a\nversions: {a: {model: m}, Big_One: {model: x}}', /^versions\.Big_One: version name must be lower-case/],
    ['no versions', 'defaultVersion: a\nversions: {}', /^versions: must define at least one version/],
    ['bad device', 'defaultVersion: a\nversions: {a: {model: m, device: tpu}}', /^versions\.a\.device: /],
    ['batch size of zero', 'defaultVersion: a\nversions: {a: {model: m}}\nserving: {maxBatchSize: 0}', /^serving\.maxBatchSize: /],
    ['bad log level', 'defaultVersion: a\nversions: {a: {model: m}}\nserving: {logLevel: loud}', /^serving\.logLevel: /],
    ['not YAML', 'defaultVersion: [a\n', /^\(yaml\): /],
    ['empty file', '', /^\(yaml\): .*empty/],
  ];
  for (const [name, text, expected] of rejected) {
    test(`rejects ${name}, naming the key`, () => {
      const issues = issuesOf(text);
      assert.ok(
        issues.some((issue) => expected.test(issue)),
        `no issue matches ${expected}: ${JSON.stringify(issues)}`,
      );
    });
  }

  test('a missing file is a ConfigError naming the file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-config-'));
    await assert.rejects(loadConfigFile(path.join(dir, 'absent.yaml')), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /absent\.yaml/);
      assert.match(error.issues[0] ?? '', /ENOENT/);
      return true;
    });
    await writeFile(path.join(dir, 'ok.yaml'), 'defaultVersion: a\nversions: {a: {model: ./m}}\n');
    const loaded = await loadConfigFile(path.join(dir, 'ok.yaml'));
    assert.equal(loaded.config.versions.a?.model, path.join(dir, 'm'));
  });
});
