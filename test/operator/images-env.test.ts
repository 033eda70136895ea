import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_SERVER_IMAGE, imagesFromEnv } from '../../operator/images-env.ts';
import { plan } from '../../operator/planner.ts';
import { example } from './support/examples.ts';

test('images from the environment the chart sets', () => {
  assert.deepEqual(imagesFromEnv({}), { server: DEFAULT_SERVER_IMAGE });
  assert.deepEqual(
    imagesFromEnv({ RERANK_SERVER_IMAGE: 's:1', RERANK_MODEL_FETCHER_IMAGE: 'f:1', RERANK_SERVER_IMAGE_PULL_POLICY: 'Never' }),
    { server: 's:1', modelFetcher: 'f:1', pullPolicy: 'Never' },
  );
  assert.throws(() => imagesFromEnv({ RERANK_SERVER_IMAGE_PULL_POLICY: 'never' }), /RERANK_SERVER_IMAGE_PULL_POLICY=never: expected one of Always, IfNotPresent, Never/);
});

test('the default pull policy reaches every server and init container; spec.images.pullPolicy wins', () => {
  const policies = (rrc: ReturnType<typeof example>) =>
    plan(rrc, imagesFromEnv({ RERANK_SERVER_IMAGE: 's:1', RERANK_SERVER_IMAGE_PULL_POLICY: 'Never' }), {})
      .objects.filter((o) => o.kind === 'Deployment')
      .flatMap((d) => {
        const spec = (d as unknown as { spec: { template: { spec: { containers: { imagePullPolicy?: string }[]; initContainers?: { imagePullPolicy?: string }[] } } } }).spec.template.spec;
        return [...spec.containers, ...(spec.initContainers ?? [])].map((c) => c.imagePullPolicy);
      });
  const router = example('router');
  assert.ok(policies(router).length >= 5);
  assert.ok(policies(router).every((p) => p === 'Never'));
  router.spec.images = { ...router.spec.images, pullPolicy: 'Always' };
  assert.ok(policies(router).every((p) => p === 'Always'));
});
