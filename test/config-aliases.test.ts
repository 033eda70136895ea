import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIG_KEY_ALIASES } from '../server/config/aliases.ts';
import { parseConfig } from '../server/config/load.ts';
import { assertConfigIssue } from './support/config-issues.ts';
import { ServingConfigSchema, VersionConfigSchema } from '../server/config/schema.ts';
import { BGE_IMAGE_CONFIG } from './support/bge-config.ts';

const base = { source: 'config.yaml', baseDir: '/srv/bge' };


describe('configs written for the BGE reranker image', () => {
  test('are read as written: aliases renamed, models beside the file, own /rerank/<version> endpoints dropped', () => {
    const { config } = parseConfig(BGE_IMAGE_CONFIG, base);
    assert.equal(config.defaultVersion, 'v2-m3');
    assert.deepEqual(Object.keys(config.versions), ['v2-m3', 'v2-gemma', 'v1']);
    const m3 = config.versions['v2-m3'];
    assert.equal(m3?.model, '/srv/bge/v2-m3');
    assert.equal(m3?.fallbackToCpu, true);
    assert.equal(m3?.gpuMemoryThresholdMb, 1500);
    assert.equal(m3?.endpoint, undefined);
    assert.equal(config.versions['v2-gemma']?.enabled, false);
    assert.equal(config.versions.v1?.model, '/srv/bge/v1');
    assert.equal(config.serving.maxBatchSize, 16);
    assert.equal(config.serving.maxLength, 512);
    assert.equal(config.serving.useFp16, true);
  });

  test('mean what the same config in the schema\'s own keys means (same hash)', () => {
    const own = `
defaultVersion: v2-m3
versions:
  v2-m3: {description: "bge-reranker-v2-m3", model: ./v2-m3, fallbackToCpu: true, gpuMemoryThresholdMb: 1500}
  v2-gemma: {enabled: false, description: "bge-reranker-v2-gemma", model: v2-gemma}
  v1: {description: "bge-reranker-base"}
serving: {maxBatchSize: 16, maxLength: 512, useFp16: true}
`;
    assert.equal(parseConfig(own, base).hash, parseConfig(BGE_IMAGE_CONFIG, base).hash);
  });

  test('every alias stands for a key the schema has', () => {
    assert.deepEqual(Object.values(CONFIG_KEY_ALIASES.config).sort(), ['defaultVersion', 'serving']);
    for (const key of Object.values(CONFIG_KEY_ALIASES.version)) assert.ok(key in VersionConfigSchema.shape, key);
    for (const key of Object.values(CONFIG_KEY_ALIASES.serving)) assert.ok(key in ServingConfigSchema.shape, key);
  });

  const rejected: Array<[string, string, RegExp]> = [
    ['an alias beside its key', 'defaultVersion: a\ndefault_version: a\nversions: {a: {}}', /^default_version: "default_version" and "defaultVersion" both set defaultVersion: keep one/],
    ['global_config beside serving', 'defaultVersion: a\nversions: {a: {}}\nserving: {}\nglobal_config: {}', /^global_config: .*"serving" both set serving/],
    ['two aliases of one knob', 'defaultVersion: a\nversions: {a: {}}\nglobal_config: {batch_size: 8, max_batch_size: 8}', /^serving\.batch_size: "batch_size" and "max_batch_size" both set maxBatchSize/],
    ['a version alias beside its key', 'defaultVersion: a\nversions: {a: {fallback_to_cpu: true, fallbackToCpu: false}}', /^versions\.a\.fallback_to_cpu: .*both set fallbackToCpu/],
    ['another version\'s path as endpoint', 'defaultVersion: a\nversions: {a: {endpoint: /rerank/b}, b: {}}', /^versions\.a\.endpoint: "\/rerank\/b" is not this version's path: version a answers on \/rerank\/a/],
    ['an unknown snake_case knob', 'defaultVersion: a\nversions: {a: {}}\nglobal_config: {batch_sise: 8}', /^serving: .*"batch_sise"/],
  ];
  for (const [name, text, expected] of rejected) {
    test(`reject ${name}, naming the key`, () => assertConfigIssue(text, base, expected));
  }
});
