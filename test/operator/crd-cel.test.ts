import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCustomResourceDefinition } from '../../operator/crd/definition.ts';
import { RerankerConfigSpecSchema } from '../../operator/crd/spec.ts';
import { ACCEPTED, REJECTED, specWith } from './support/cel-cases.ts';
import { validateAgainstCrd } from './support/structural.ts';

const specSchema = buildCustomResourceDefinition().spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!;

// The cases live in support/cel-cases.ts: test/cluster/crd.test.ts puts the same ones to a real apiserver.
describe('CRD validation rules (structural schema + CEL), and the zod schema agreeing with them', () => {
  test('the seed example passes', () => {
    assert.deepEqual(validateAgainstCrd(specSchema, specWith(ACCEPTED.seed.mutate)), []);
  });

  test('weights of 0 and 100 and a default version left at its defaults pass', () => {
    const spec = specWith(ACCEPTED.edgeWeights.mutate);
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    assert.equal(RerankerConfigSpecSchema.safeParse(spec).success, true);
  });

  test('a token Secret on an hf:// source passes, its key defaulting to HF_TOKEN', () => {
    const spec = specWith(ACCEPTED.hfToken.mutate);
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    const parsed = RerankerConfigSpecSchema.parse(spec);
    assert.deepEqual(parsed.versions[0]!.model.tokenSecretRef, { name: 'hf-token', key: 'HF_TOKEN' });
  });

  test('autoscaling, disruption, priority class and GPU budget pass; disruption defaults to maxUnavailable 1, autoscaling to an HPA on CPU', () => {
    const spec = specWith(ACCEPTED.autoscaling.mutate);
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    const parsed = RerankerConfigSpecSchema.parse(spec);
    assert.deepEqual(parsed.versions[1]!.disruption, { maxUnavailable: 1 });
    assert.equal(parsed.gpuBudget, 6);
    const defaulted = RerankerConfigSpecSchema.parse(specWith((s) => (s.versions[0]!.autoscaling = { maxReplicas: 3, target: 60 })));
    assert.deepEqual(defaulted.versions[0]!.autoscaling, { minReplicas: 1, maxReplicas: 3, target: 60, metric: 'cpu', engine: 'hpa' });
  });

  test('a rollout passes with every gate, and one naming only its canary takes the defaults', () => {
    const spec = specWith(ACCEPTED.rollout.mutate);
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    assert.equal(RerankerConfigSpecSchema.parse(spec).rollout?.stepInterval, '1m30s');
    const minimal = specWith((s) => (s.rollout = { canary: 'v2-gemma' }));
    assert.deepEqual(validateAgainstCrd(specSchema, minimal), []);
    assert.deepEqual(RerankerConfigSpecSchema.parse(minimal).rollout, {
      canary: 'v2-gemma',
      steps: [5, 10, 25, 50, 100],
      stepInterval: '2m',
      minRequests: 50,
      analysis: {},
      onSuccess: 'promote',
      onFailure: 'rollback',
      keepStableFor: '10m',
    });
  });

  test('a rollout with its figures from Prometheus passes; the queries it leaves out stay absent (the operator fills in its defaults)', () => {
    const spec = specWith(ACCEPTED.prometheus.mutate);
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    assert.deepEqual(Object.keys(RerankerConfigSpecSchema.parse(spec).rollout?.analysis.prometheus?.queries ?? {}), ['requests']);
  });

  test("a Prometheus with auth, tls, headers and a timeout passes; the Secret keys default to token and ca.crt, the timeout and insecureSkipVerify stay as written", () => {
    const spec = specWith(ACCEPTED.prometheusAuth.mutate);
    assert.deepEqual(validateAgainstCrd(specSchema, spec), []);
    const prometheus = RerankerConfigSpecSchema.parse(spec).rollout?.analysis.prometheus;
    assert.deepEqual(prometheus?.auth, { bearerTokenSecret: { name: 'mimir-token', key: 'token' } });
    assert.deepEqual(prometheus?.tls, { caSecret: { name: 'mimir-ca', key: 'ca.crt' } });
    assert.equal(prometheus?.timeout, '1m');
    const basic = specWith(ACCEPTED.prometheusBasic.mutate);
    assert.deepEqual(validateAgainstCrd(specSchema, basic), []);
    assert.deepEqual(RerankerConfigSpecSchema.parse(basic).rollout?.analysis.prometheus?.tls, { insecureSkipVerify: true });
    // No timeout written, none added: a default here would change the revision of rollouts already running.
    assert.equal(RerankerConfigSpecSchema.parse(specWith(ACCEPTED.prometheus.mutate)).rollout?.analysis.prometheus?.timeout, undefined);
  });

  for (const [what, mutate, why] of REJECTED) {
    test(`refused: ${what}`, () => {
      const spec = specWith(mutate);
      const errors = validateAgainstCrd(specSchema, spec);
      assert.ok(errors.some((e) => why.test(e)), `CRD errors ${JSON.stringify(errors)} do not match ${why}`);
      assert.equal(RerankerConfigSpecSchema.safeParse(spec).success, false, 'zod accepted what the CRD refuses');
    });
  }
});
