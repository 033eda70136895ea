import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCustomResourceDefinition } from '../../operator/crd/definition.ts';
import { RerankerConfigSpecSchema } from '../../operator/crd/spec.ts';
import { readExample } from './support/examples.ts';
import { validateAgainstCrd } from './support/structural.ts';

const specSchema = buildCustomResourceDefinition().spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!;

type Spec = Record<string, unknown> & { versions: Array<Record<string, unknown>> };
const seed = () => structuredClone(readExample('seed').spec) as unknown as Spec;

/** Each bad spec must be refused by the apiserver (schema or CEL) AND by the operator's zod schema, naming why. */
const rejected: Array<[string, (s: Spec) => void, RegExp]> = [
  ['defaultVersion names no version', (s) => (s.defaultVersion = 'v3'), /defaultVersion must name one of versions/],
  ['defaultVersion names a disabled version', (s) => (s.versions[0]!.enabled = false), /defaultVersion must name an enabled version/],
  ['two versions share a name', (s) => (s.versions[1]!.name = 'v2-m3'), /Duplicate value|version names must be unique/],
  ['a weight above 100', (s) => (s.versions[0]!.weight = 101), /weight.*<= 100/],
  ['a negative weight', (s) => (s.versions[1]!.weight = -1), /weight.*>= 0/],
  ['a model source with an unknown scheme', (s) => (s.versions[0]!.model = { source: 's3://bucket/m' }), /source: must match/],
  ['a sha256 that is not 64 hex digits', (s) => (s.versions[2]!.model = { source: 'hf://a/b', sha256: 'abc' }), /sha256: must match/],
  ['a token Secret on a source that is not hf://', (s) => ((s.versions[1]!.model as Record<string, unknown>).tokenSecretRef = { name: 'hf-token' }), /tokenSecretRef applies to hf:\/\/ sources/],
  ['a token Secret name that is not a DNS name', (s) => ((s.versions[0]!.model as Record<string, unknown>).tokenSecretRef = { name: 'HF Token' }), /name: must match/],
  ['a version name that is not a DNS label', (s) => (s.versions[2]!.name = 'V1.old'), /name: must match/],
  ['CPU fallback on a version without GPUs', (s) => (s.versions[2]!.cpuFallback = { replicas: 1 }), /cpuFallback only makes sense/],
  ['gateway mode without parentRefs', (s) => (s.routing = { mode: 'gateway' }), /gateway mode needs gateway.parentRefs/],
  ['an unknown routing mode', (s) => (s.routing = { mode: 'mesh' }), /mode: must be one of/],
  ['an unknown serving knob', (s) => ((s.serving as Record<string, unknown>).batchSize = 4), /unknown field/],
  ['no versions at all', (s) => (s.versions = []), /at least 1 items/],
];

describe('CRD validation rules (structural schema + CEL), and the zod schema agreeing with them', () => {
  test('the seed example passes', () => {
    assert.deepEqual(validateAgainstCrd(specSchema, seed()), []);
  });

  test('weights of 0 and 100 and a default version left at its defaults pass', () => {
    const spec = seed();
    spec.versions[0]!.weight = 100;
    spec.versions[1]!.weight = 0;
    delete spec.versions[0]!.enabled;
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    assert.equal(RerankerConfigSpecSchema.safeParse(spec).success, true);
  });

  test('a token Secret on an hf:// source passes, its key defaulting to HF_TOKEN', () => {
    const spec = seed();
    (spec.versions[0]!.model as Record<string, unknown>).tokenSecretRef = { name: 'hf-token' };
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    const parsed = RerankerConfigSpecSchema.parse(spec);
    assert.deepEqual(parsed.versions[0]!.model.tokenSecretRef, { name: 'hf-token', key: 'HF_TOKEN' });
  });

  for (const [what, mutate, why] of rejected) {
    test(`refused: ${what}`, () => {
      const spec = seed();
      mutate(spec);
      const errors = validateAgainstCrd(specSchema, spec);
      assert.ok(errors.some((e) => why.test(e)), `CRD errors ${JSON.stringify(errors)} do not match ${why}`);
      assert.equal(RerankerConfigSpecSchema.safeParse(spec).success, false, 'zod accepted what the CRD refuses');
    });
  }
});
