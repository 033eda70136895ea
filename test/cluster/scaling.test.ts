/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from kubectl as JSON */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterSkip } from './harness.ts';
import { eventually, leadingOperator } from './operator-process.ts';
import { Resources } from './resources.ts';

/**
 * Autoscaling against the real API server and controller-manager (its HPA and disruption controllers
 * run; no metrics server, so an HPA on CPU never computes a recommendation and moves replicas only
 * back into [min, max]). What is proven: the server accepts the planned HPA and PDB, and field
 * ownership keeps the operator and an autoscaler from writing the replica count in turn.
 */
describe('autoscaling on a real API server', { skip: clusterSkip, timeout: 240_000 }, () => {
  const env = leadingOperator();

  const NAME = 'scaled';
  const DEPLOYMENT = `${NAME}-stable`;

  function resource(namespace: string, autoscaling?: unknown): any {
    return {
      apiVersion: 'rerank.dev/v1alpha1',
      kind: 'RerankerConfig',
      metadata: { name: NAME, namespace },
      spec: {
        defaultVersion: 'stable',
        versions: [{
          name: 'stable',
          model: { source: 'pvc://models/bge-reranker-base' },
          replicas: 2,
          weight: 100,
          resources: { requests: { cpu: '1', memory: '1Gi' } },
          ...(autoscaling ? { autoscaling } : {}),
        }],
        routing: { mode: 'router', router: { replicas: 1 } },
      },
    };
  }

  const reconciles = async () => {
    const text = await env.operator.metrics();
    return [...text.matchAll(/^rerank_operator_reconciles_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  };
  /** Whether `manager`'s entry in the Deployment's managedFields owns spec.replicas. */
  const ownsReplicas = (deployment: any, manager: string) =>
    deployment.metadata.managedFields.some((m: any) => m.manager === manager && m.fieldsV1?.['f:spec']?.['f:replicas'] !== undefined);
  /** The Deployment once its controller has caught up with `replicas` (no status writes pending). */
  const settled = (r: Resources, replicas: number) =>
    eventually(`${DEPLOYMENT} settled at ${replicas} replicas`, async () => {
      const d = await r.get('deployment', DEPLOYMENT);
      return d?.spec.replicas === replicas && d.status?.observedGeneration === d.metadata.generation && d.status?.replicas === replicas ? d : undefined;
    });

  test('an autoscaled version: the HPA and PDB are accepted; the operator lets go of replicas and never writes them back over the autoscaler', async () => {
    const r = new Resources(env.cluster, await env.cluster.namespace('rrc-scale'));
    await r.apply(resource(r.namespace));
    const fixed = await settled(r, 2);
    assert.ok(ownsReplicas(fixed, 'rerank-operator'), 'without autoscaling the operator applies replicas');

    await r.apply(resource(r.namespace, { minReplicas: 1, maxReplicas: 5, metric: 'cpu', target: 70 }));
    const hpa = await eventually('the HPA', async () => r.get('hpa', DEPLOYMENT));
    assert.deepEqual(
      [hpa.apiVersion, hpa.spec.scaleTargetRef, hpa.spec.minReplicas, hpa.spec.maxReplicas, hpa.spec.metrics[0].resource],
      ['autoscaling/v2', { apiVersion: 'apps/v1', kind: 'Deployment', name: DEPLOYMENT }, 1, 5, { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } }],
    );
    assert.equal(hpa.metadata.ownerReferences[0].kind, 'RerankerConfig');
    const handedOver = await eventually('the operator to stop applying replicas', async () => {
      const d = await r.get('deployment', DEPLOYMENT);
      return ownsReplicas(d, 'rerank-operator') ? undefined : d;
    });
    assert.equal(handedOver.spec.replicas, 2, 'replicas kept their value when the operator let go (not reset to the default 1)');
    assert.ok(ownsReplicas(handedOver, 'rerank-operator-handover'), 'held by the handover manager until the autoscaler writes them');
    // The disruption controller reads the PDB: it is accepted and selects the version's pods.
    const pdb = await eventually('the PDB, counted by the disruption controller', async () => {
      const p = await r.get('pdb', DEPLOYMENT);
      return p?.status?.expectedPods === 2 ? p : undefined;
    });
    assert.equal(pdb.spec.maxUnavailable, 1);

    // The autoscaler's write, as the HPA controller makes it: an Update of the scale subresource.
    await r.kubectl(['scale', 'deployment', DEPLOYMENT, '--replicas=3']);
    const scaled = await settled(r, 3);
    const before = await reconciles();
    // Pods never get ready here, so Progressing stays True and the operator looks again every 5 s.
    await eventually('three more reconciles', async () => (await reconciles()) >= before + 3, 60_000, 500);
    const afterwards = await r.get('deployment', DEPLOYMENT);
    assert.equal(afterwards.spec.replicas, 3);
    assert.equal(afterwards.metadata.resourceVersion, scaled.metadata.resourceVersion, 'the operator wrote the Deployment again');
    assert.equal(ownsReplicas(afterwards, 'rerank-operator'), false);
    const status = await eventually('status to report the autoscaler\'s replicas', async () => {
      const s = (await r.get('rerankerconfig', NAME)).status;
      return s.versions?.[0]?.replicas === 3 ? s : undefined;
    });
    assert.match(status.versions[0].scaling, /^1-5 pods, HPA on cpu \(target 70\)$/);
  });

  test('engine keda on a cluster without KEDA: the ScaledObject cannot be applied, and Degraded says so; everything else is applied', async () => {
    const r = new Resources(env.cluster, await env.cluster.namespace('rrc-keda'));
    await r.apply(resource(r.namespace, { minReplicas: 1, maxReplicas: 3, metric: 'queue', target: 32, engine: 'keda', prometheusAddress: 'http://prometheus:9090' }));
    const degraded = await eventually('Degraded naming the ScaledObject', async () => {
      const c = await r.condition(NAME, 'Degraded');
      return c?.status === 'True' && /ScaledObject/.test(c.message) ? c : undefined;
    });
    assert.equal(degraded.reason, 'ReconcileFailed');
    assert.equal((await r.get('deployment', DEPLOYMENT)).spec.replicas, 1, 'applied without replicas: the Deployment default, for KEDA to take over');
    assert.ok(await r.get('pdb', DEPLOYMENT));
  });

  test('without autoscaling the spec\'s replicas are enforced as before: the HPA is pruned and a scale is undone', async () => {
    const r = new Resources(env.cluster, await env.cluster.namespace('rrc-fixed'));
    await r.apply(resource(r.namespace, { minReplicas: 1, maxReplicas: 5, target: 70 }));
    await eventually('the HPA', async () => r.get('hpa', DEPLOYMENT));
    await r.kubectl(['scale', 'deployment', DEPLOYMENT, '--replicas=4']);
    await settled(r, 4);

    await r.apply(resource(r.namespace));
    await eventually('the HPA pruned', async () => (await r.get('hpa', DEPLOYMENT)) === undefined);
    const enforced = await settled(r, 2);
    assert.ok(ownsReplicas(enforced, 'rerank-operator'), 'the operator took replicas back');
    await r.kubectl(['scale', 'deployment', DEPLOYMENT, '--replicas=4']);
    await eventually('the spec\'s 2 replicas restored', async () => (await r.get('deployment', DEPLOYMENT))?.spec.replicas === 2);
  });
});
