/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from kubectl as JSON */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chartOperatorCredentials, helmSkip, installChart, uninstallChart } from './chart.ts';
import { clusterSkip, installCrd, installGatewayApi, startCluster, type Cluster } from './harness.ts';
import { eventually, startOperator, type OperatorProcess } from './operator-process.ts';
import { examples, Resources } from './resources.ts';

/**
 * The operator as the chart deploys it: installed with `helm install`, then run with the chart's own
 * ServiceAccount token (kubectl create token) and the environment of the chart's Deployment, leader
 * election on. It may do nothing more than the chart grants, so a call the chart forgot is a 403 here.
 */
describe('the operator with the chart\'s ServiceAccount and RBAC', { skip: clusterSkip || helmSkip, timeout: 180_000 }, () => {
  let cluster: Cluster;
  let operator: OperatorProcess;
  let releaseNamespace: string;

  before(async () => {
    cluster = await startCluster();
    // The CRDs served before the operator starts (helm then leaves the existing CRD as it is): on a
    // fresh API server a new CRD's storage answers 429 for a moment, which the operator rides out
    // with backoff, but this test is about RBAC, not start-up races.
    await installCrd(cluster);
    await installGatewayApi(cluster);
    releaseNamespace = await cluster.namespace('rerank-system');
    const release = await installChart(cluster, releaseNamespace, { 'images.server.repository': 'registry.invalid/rerank-server', 'images.server.tag': 'chart' });
    const deployment = release.objects.find((o) => o.kind === 'Deployment') as any;
    const env: Record<string, string> = {};
    for (const e of deployment.spec.template.spec.containers[0].env as Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[e.name] = releaseNamespace;
      else throw new Error(`the chart sets ${e.name} from ${JSON.stringify(e.valueFrom)}: teach this test to resolve it`);
    }
    assert.equal(env.LEADER_ELECT, 'true');
    assert.equal(env.POD_NAMESPACE, releaseNamespace);
    const { kubeconfig } = await chartOperatorCredentials(cluster, releaseNamespace);
    operator = await startOperator({ kubeconfig, env });
    await eventually('the operator to lead', async () => (await operator.readyz()).body === 'ok: leading\n', 30_000).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\noperator log:\n${operator.logs.slice(-20).join('\n')}`);
    });
  });

  after(async () => {
    await operator?.stop();
    if (releaseNamespace) await uninstallChart(cluster, releaseNamespace, { ignoreMissing: true });
    await cluster?.cleanup();
  });

  test('every example reconciled; pods annotated and read; a hand edit repaired; the resource deleted; no call refused', async () => {
    const r = new Resources(cluster, await cluster.namespace('rrc-chart'));
    for (const { object } of examples(r.namespace)) {
      // quickstart.yaml and seed.yaml share a name; the quick start gets its own.
      if (object.spec.defaultVersion === 'base') object.metadata.name = 'quickstart';
      await r.apply(object);
    }
    const names = ['quickstart', 'rerankers', 'rerankers-lite'];
    for (const name of names) {
      await eventually(`${name} reconciled`, async () => {
        const live = await r.get('rerankerconfig', name);
        return live?.status?.observedGeneration === live?.metadata.generation && live.status.conditions?.length === 4;
      });
    }
    assert.ok((await r.names('httproutes.gateway.networking.k8s.io')).includes('rerankers'));

    // Ready pods of the router example: the operator annotates them with the config hash (pods patch).
    await eventually('pods of rerankers-lite', async () => (await r.list('pods', 'rerank.dev/owner=rerankers-lite,app.kubernetes.io/component=server')).length === 3);
    await r.markPodsReady('rerank.dev/owner=rerankers-lite,app.kubernetes.io/component=server');
    const hash = await eventually('the weights in effect', async () => {
      const live = await r.get('rerankerconfig', 'rerankers-lite');
      return live.status.weights === 'stable=80,candidate=20' ? live.status.configHash : undefined;
    });
    await eventually('config-hash annotations', async () => {
      const pods = await r.list('pods', 'rerank.dev/owner=rerankers-lite,app.kubernetes.io/component=server');
      return pods.every((p) => p.metadata.annotations?.['rerank.dev/config-hash']);
    });
    assert.ok(hash);

    // A hand edit of a child: the unforced apply conflicts, the operator reads the owner (get), forces.
    const data = (await r.get('configmap', 'rerankers-lite-config')).data['config.yaml'];
    await r.mergePatch('configmap', 'rerankers-lite-config', { data: { 'config.yaml': 'hand: edited\n' } });
    await eventually('the ConfigMap repaired', async () => (await r.get('configmap', 'rerankers-lite-config')).data['config.yaml'] === data);

    await r.delete('rerankerconfig', 'rerankers-lite');
    await eventually('its children collected', async () => (await r.list('deployment', 'rerank.dev/owner=rerankers-lite')).length === 0, 60_000);

    const events = JSON.parse(await r.kubectl(['get', 'events', '-o', 'json'])).items.filter((e: any) => e.source?.component === 'rerank-operator');
    assert.ok(events.length > 0, 'the operator wrote Events');
    const metrics = await operator.metrics();
    // A fresh API server may answer 429 while a new CRD's storage initialises; what must never
    // appear is a 403: a call the chart does not grant.
    const failures = metrics.split('\n').filter((l) => /^rerank_operator_(api_errors|watch_restarts)_total\{/.test(l)).join('\n');
    assert.doesNotMatch(failures, /code="403"|reason="403 /, `a call the chart does not grant:\n${failures}`);
    const lease = JSON.parse(await cluster.kubectl(['get', 'lease', 'rerank-operator-leader', '-n', releaseNamespace, '-o', 'json']));
    assert.match(lease.spec.holderIdentity, /_/);
    assert.deepEqual(await operator.readyz(), { status: 200, body: 'ok: leading\n' });
  });
});
