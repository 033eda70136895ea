import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { systemClock } from '../../operator/clock.ts';
import { buildCustomResourceDefinition } from '../../operator/crd/definition.ts';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import type { KubeClient, KubeObject } from '../../operator/kube.ts';
import { FIELD_MANAGER } from '../../operator/names.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import { readExample } from '../operator/support/examples.ts';

/**
 * The operator against a real apiserver: install the CRD, create the router example in a fresh
 * namespace, reconcile, change a knob, delete. No images are pulled to readiness here (a cluster may
 * have no GPUs and no registry access), so it checks what the apiserver does: schema and CEL admission,
 * server-side apply, owner references and garbage collection, the status subresource. Every behaviour
 * here is also covered against the fake in test/operator/.
 */
export async function runScenario(kube: KubeClient): Promise<void> {
  const namespace = `rerank-e2e-${Date.now().toString(36)}`;
  await kube.apply(buildCustomResourceDefinition() as unknown as KubeObject, FIELD_MANAGER);
  await waitFor(async () => (await kube.list({ apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig' }).then(() => true, () => false)));
  await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }, FIELD_MANAGER);
  try {
    const example = readExample('router');
    const rrc = { ...example, metadata: { name: example.metadata.name, namespace } } as unknown as KubeObject;

    // CEL admission: a default version that is not among the versions is refused by the apiserver.
    const bad = structuredClone(rrc) as KubeObject & RerankerConfigObject;
    bad.metadata.name = 'bad';
    bad.spec.defaultVersion = 'missing';
    await assert.rejects(kube.create(bad), /defaultVersion must name one of versions/);

    await kube.create(rrc);
    const reconciler = new Reconciler({ kube, clock: systemClock, podConfig: { read: async () => ({ hash: '', appliedAt: '' }) }, images: { server: 'registry.invalid/rerank-server:e2e' } });
    const key = { namespace, name: example.metadata.name };
    await reconciler.reconcile(key);
    const deployments = await kube.list({ apiVersion: 'apps/v1', kind: 'Deployment' }, { namespace });
    assert.deepEqual(deployments.items.map((d) => d.metadata.name).sort(), ['rerankers-lite-candidate', 'rerankers-lite-router', 'rerankers-lite-stable']);
    const live = await kube.get<KubeObject & RerankerConfigObject>({ apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig', namespace, name: key.name });
    assert.equal(live?.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');

    const before = deployments.items.map((d) => d.metadata.generation);
    live!.spec.serving = { ...live!.spec.serving, topK: 3 };
    await kube.replace(live!);
    await reconciler.reconcile(key);
    const after = await kube.list({ apiVersion: 'apps/v1', kind: 'Deployment' }, { namespace });
    assert.deepEqual(after.items.map((d) => d.metadata.generation), before, 'a knob change moved a pod template');

    await kube.delete({ apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig', namespace, name: key.name });
    await waitFor(async () => (await kube.list({ apiVersion: 'apps/v1', kind: 'Deployment' }, { namespace })).items.length === 0);
  } finally {
    await kube.delete({ apiVersion: 'v1', kind: 'Namespace', name: namespace });
  }
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(500);
  }
  throw new Error('timed out waiting');
}
