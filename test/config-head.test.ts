import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { load } from 'js-yaml';
import { ConfigError, parseConfig } from '../server/config/load.ts';
import { renderServingConfig } from '../operator/plan/serving-config.ts';
import { weightsInEffect } from '../operator/weights.ts';
import { example } from './operator/support/examples.ts';

/** A version's `head` in the serving config (zod), and as the operator renders it from a RerankerConfig. */

function parse(head: unknown) {
  return parseConfig(JSON.stringify({ defaultVersion: 'v', versions: { v: { model: '/m', head } } }), { source: 'test', baseDir: '/' });
}

function issues(head: unknown): string[] {
  try {
    parse(head);
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
  return [];
}

describe('serving config: head', () => {
  it('takes the named templates with their knobs, and a custom one', () => {
    assert.deepEqual(parse({ type: 'causal-lm-yes-no', template: 'qwen3', instruction: 'Find code' }).config.versions.v?.head, {
      type: 'causal-lm-yes-no',
      template: 'qwen3',
      instruction: 'Find code',
    });
    assert.equal(parse({ type: 'causal-lm-yes-no', template: 'custom', body: 'Q: {query} D: {document}', yesToken: 'yes', normalize: 'logit' }).config.versions.v?.head?.template, 'custom');
    assert.equal(parse(undefined).config.versions.v?.head, undefined, 'absent: the catalogue or cross-encoder decides at load');
  });

  it('refuses what does not fit, naming the field', () => {
    assert.deepEqual(issues({ type: 'cross-encoder', template: 'qwen3' }), ['versions.v.head.template: applies to type causal-lm-yes-no, not cross-encoder']);
    assert.deepEqual(issues({ type: 'causal-lm-yes-no', template: 'qwen3', body: '{query}{document}' }), ['versions.v.head.body: applies to template custom']);
    assert.deepEqual(issues({ type: 'causal-lm-yes-no', template: 'custom', body: 'Q: {query}', yesToken: 'yes' }), ['versions.v.head.body: must hold {document}']);
    assert.deepEqual(issues({ type: 'causal-lm-yes-no', template: 'custom', body: '{query}{document}' }), ['versions.v.head.yesToken: template custom needs yesToken or yesTokenId']);
    assert.deepEqual(issues({ type: 'causal-lm-yes-no', template: 'bge-gemma', noToken: 'No', noTokenId: 3 }), ['versions.v.head.noTokenId: give noToken or noTokenId, not both']);
    assert.equal(issues({ type: 'causal-lm-yes-no', template: 'bge-gemma', normalize: 'probit' }).length, 1);
  });
});

describe('operator: head in the rendered serving config', () => {
  function rendered(mutate: (spec: ReturnType<typeof example>['spec']) => void): Record<string, { head?: unknown }> {
    const rrc = example('seed');
    mutate(rrc.spec);
    const weights = weightsInEffect(rrc.spec, Object.fromEntries(rrc.spec.versions.map((v) => [v.name, { primary: 1, fallback: 0 }])));
    const config = load(renderServingConfig(rrc, weights).files[0]!.text) as { versions: Record<string, { head?: unknown }> };
    return config.versions;
  }

  it('passes a version\'s head through, and gives an hf:// source the catalogue knows the catalogue\'s head', () => {
    const versions = rendered((spec) => {
      spec.versions[2]!.model = { source: 'hf://Qwen/Qwen3-Reranker-0.6B@main' };
    });
    assert.deepEqual(versions['v2-gemma']?.head, { type: 'causal-lm-yes-no', template: 'bge-gemma' }, 'the seed names it');
    assert.deepEqual(versions.v1?.head, { type: 'causal-lm-yes-no', template: 'qwen3' }, 'from the catalogue');
    assert.equal(versions['v2-m3']?.head, undefined, 'a cross-encoder the catalogue knows needs none');
  });

  it('a version\'s own head wins over the catalogue\'s', () => {
    const versions = rendered((spec) => {
      spec.versions[2]!.model = { source: 'hf://Qwen/Qwen3-Reranker-0.6B' };
      spec.versions[2]!.head = { type: 'causal-lm-yes-no', template: 'qwen3', instruction: 'Find code' };
    });
    assert.deepEqual(versions.v1?.head, { type: 'causal-lm-yes-no', template: 'qwen3', instruction: 'Find code' });
  });
});
