/* eslint-disable @typescript-eslint/no-explicit-any -- tests read deep into stored objects */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { Reconciler, type ReconcileResult } from '../../operator/reconciler.ts';
import { FakeClock } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { IMAGES, readExample } from './support/examples.ts';

const key = { namespace: 'rag', name: 'rerankers' };

async function setup(name = 'seed') {
  const kube = new FakeKube();
  const podConfig = new FakePodConfigReader(kube);
  const clock = new FakeClock();
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const reconciler = new Reconciler({ kube, podConfig, clock, images: IMAGES, metrics });
  await kube.create(readExample(name) as unknown as KubeObject);
  const rrc = () => kube.find<KubeObject & RerankerConfigObject>('RerankerConfig', 'rag', readExample(name).metadata.name)!;
  const condition = (type: string) => rrc().status?.conditions?.find((c) => c.type === type);
  const editSpec = (change: (spec: any) => void) => kube.edit('RerankerConfig', 'rag', readExample(name).metadata.name, (o) => change(o.spec));
  return { kube, podConfig, clock, metrics, reconciler, rrc, condition, editSpec };
}

/** A gauge's series as "label=value,... value" lines, sorted, as a scrape would show them. */
async function series(metrics: OperatorMetrics, name: string): Promise<string[]> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? [])
    .map((v) => `${Object.entries(v.labels).filter(([k]) => k !== 'namespace' && k !== 'name').map(([k, l]) => `${k}=${l}`).join(',')} ${v.value}`)
    .sort();
}

/** Reconcile, let the cluster's controllers catch up, reconcile again until the world is still. */
async function converge(ctx: Awaited<ReturnType<typeof setup>>, ready?: (d: any) => number): Promise<ReconcileResult> {
  await ctx.reconciler.reconcile(key);
  ctx.kube.settleDeployments(ready);
  await ctx.reconciler.reconcile(key);
  return ctx.reconciler.reconcile(key);
}

const routeWeights = (kube: FakeKube) =>
  kube.find('HTTPRoute', 'rag', 'rerankers')!.spec.rules.at(-1).backendRefs.map((b: any) => `${b.name}=${b.weight}`);

describe('Reconciler against the fake apiserver', () => {
  test('create: objects applied under one field manager; nothing Ready until pods are; then Ready with weights in effect', async () => {
    const ctx = await setup();
    const first = await ctx.reconciler.reconcile(key);
    assert.deepEqual(first, { outcome: 'requeue', afterMs: 5000 });
    assert.equal(ctx.kube.all('Deployment').length, 4);
    assert.equal(ctx.condition('Ready')?.status, 'False');
    assert.equal(ctx.condition('Ready')?.reason, 'VersionsNotReady');
    assert.equal(ctx.condition('ConfigApplied')?.reason, 'NoReadyPods');
    assert.equal(ctx.rrc().status?.observedGeneration, 1);

    const last = await converge(ctx);
    assert.deepEqual(last, { outcome: 'done' });
    assert.equal(ctx.condition('Ready')?.status, 'True');
    assert.equal(ctx.condition('ConfigApplied')?.status, 'True');
    assert.equal(ctx.condition('ConfigApplied')?.message.startsWith('5/5 ready pods run config'), true);
    assert.equal(ctx.condition('Progressing')?.status, 'False');
    assert.equal(ctx.condition('Degraded')?.status, 'False');
    const status = ctx.rrc().status!;
    assert.equal(status.weights, 'v2-m3=90,v2-gemma=10,v1=0');
    assert.equal(status.versionNames, 'v2-m3,v2-gemma,v1');
    assert.deepEqual(status.versions?.map((v) => [v.name, v.readyReplicas, v.device, v.configApplied]), [
      ['v2-m3', 2, 'cuda', '3/3'], ['v2-gemma', 1, 'cuda', '1/1'], ['v1', 1, 'cpu', '1/1'],
    ]);
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=90', 'rerankers-v2-gemma=10']);
  });

  test('gauges: weights in effect, replicas, pods on the current config and conditions, per version', async () => {
    const ctx = await setup();
    await ctx.reconciler.reconcile(key);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_weight'), ['version=v1 0', 'version=v2-gemma 0', 'version=v2-m3 0']);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_condition'), [
      'type=ConfigApplied,status=false 1', 'type=ConfigApplied,status=true 0', 'type=ConfigApplied,status=unknown 0',
      'type=Degraded,status=false 0', 'type=Degraded,status=true 1', 'type=Degraded,status=unknown 0',
      'type=Progressing,status=false 0', 'type=Progressing,status=true 1', 'type=Progressing,status=unknown 0',
      'type=Ready,status=false 1', 'type=Ready,status=true 0', 'type=Ready,status=unknown 0',
    ]);

    await converge(ctx);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_weight'), ['version=v1 0', 'version=v2-gemma 10', 'version=v2-m3 90']);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_replicas'), ['version=v1 1', 'version=v2-gemma 1', 'version=v2-m3 2']);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_ready_replicas'), ['version=v1 1', 'version=v2-gemma 1', 'version=v2-m3 2']);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_fallback_ready_replicas'), ['version=v2-m3 1']);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_ready_pods'), [
      'version=v1,config=current 1', 'version=v1,config=stale 0',
      'version=v2-gemma,config=current 1', 'version=v2-gemma,config=stale 0',
      'version=v2-m3,config=current 3', 'version=v2-m3,config=stale 0',
    ]);
    const ready = (await series(ctx.metrics, 'rerank_operator_condition')).filter((s) => s.startsWith('type=Ready'));
    assert.deepEqual(ready, ['type=Ready,status=false 0', 'type=Ready,status=true 1', 'type=Ready,status=unknown 0']);
    const labels = (await ctx.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'rerank_operator_version_weight')!.values[0]!.labels;
    assert.deepEqual([labels.namespace, labels.name], ['rag', 'rerankers']);

    // A knob change: pods run the old hash until they reload.
    ctx.podConfig.refreshOnTouch = false;
    ctx.editSpec((spec) => (spec.serving.topK = 20));
    await ctx.reconciler.reconcile(key);
    assert.deepEqual((await series(ctx.metrics, 'rerank_operator_version_ready_pods')).filter((s) => s.startsWith('version=v2-m3')), [
      'version=v2-m3,config=current 0', 'version=v2-m3,config=stale 3',
    ]);
  });

  test('gauges follow a weight change, an unready version, a removed version, an invalid spec, and are removed on delete', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.editSpec((spec) => {
      spec.versions[0].weight = 50;
      spec.versions[1].weight = 50;
    });
    await ctx.reconciler.reconcile(key);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_weight'), ['version=v1 0', 'version=v2-gemma 50', 'version=v2-m3 50']);

    // The weight in effect, not the one asked for: v2-gemma's share moves to v2-m3 while it has no ready pods.
    ctx.kube.edit('Deployment', 'rag', 'rerankers-v2-gemma', (d) => (d.status.readyReplicas = 0));
    await ctx.reconciler.reconcile(key);
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_weight'), ['version=v1 0', 'version=v2-gemma 0', 'version=v2-m3 100']);
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=100']);
    assert.ok((await series(ctx.metrics, 'rerank_operator_condition')).includes('type=Degraded,status=true 1'));

    ctx.editSpec((spec) => (spec.versions = spec.versions.filter((v: any) => v.name !== 'v2-gemma')));
    await ctx.reconciler.reconcile(key);
    for (const name of ['rerank_operator_version_weight', 'rerank_operator_version_ready_replicas', 'rerank_operator_version_replicas', 'rerank_operator_version_ready_pods']) {
      assert.ok(!(await series(ctx.metrics, name)).some((s) => s.includes('v2-gemma')), `${name} still has v2-gemma`);
    }

    ctx.editSpec((spec) => (spec.defaultVersion = 'nope'));
    await ctx.reconciler.reconcile(key);
    assert.ok((await series(ctx.metrics, 'rerank_operator_condition')).includes('type=ConfigApplied,status=unknown 1'));
    assert.deepEqual(await series(ctx.metrics, 'rerank_operator_version_weight'), ['version=v1 0', 'version=v2-m3 100'], 'the last planned weights stay');

    ctx.kube.remove({ apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig', namespace: 'rag', name: 'rerankers' });
    await ctx.reconciler.reconcile(key);
    for (const metric of await ctx.metrics.registry.getMetricsAsJSON()) {
      if (metric.name.startsWith('rerank_operator_version_') || metric.name === 'rerank_operator_condition') {
        assert.deepEqual(metric.values, [], `${metric.name} kept series of the deleted resource`);
      }
    }
  });

  test('knob change: only the ConfigMap changes, pods are annotated with the new hash, ConfigApplied waits for them', async () => {
    const ctx = await setup();
    await converge(ctx);
    const generations = ctx.kube.all('Deployment').map((d) => d.metadata.generation);
    const oldHash = ctx.rrc().status!.configHash;
    ctx.podConfig.refreshOnTouch = false;
    ctx.editSpec((spec) => (spec.serving.topK = 20));

    const result = await ctx.reconciler.reconcile(key);
    assert.deepEqual(ctx.kube.all('Deployment').map((d) => d.metadata.generation), generations, 'a pod template moved');
    assert.ok(ctx.kube.find('ConfigMap', 'rag', 'rerankers-config')!.data!['config.yaml']!.includes('topK: 20'));
    assert.notEqual(ctx.rrc().status!.configHash, oldHash);
    const pods = ctx.kube.all('Pod');
    const gemmaPod = pods.find((p) => p.metadata.name.startsWith('rerankers-v2-gemma'))!;
    const gemmaHash = gemmaPod.metadata.annotations?.['rerank.dev/config-hash'];
    assert.ok(gemmaHash, 'the pod was not touched');
    assert.equal(ctx.condition('ConfigApplied')?.status, 'False');
    assert.match(ctx.condition('ConfigApplied')!.message, /^0\/5 ready pods run config/);
    assert.equal(ctx.condition('Progressing')?.reason, 'ConfigRollout');
    assert.equal(ctx.condition('Ready')?.status, 'True', 'still serving, on the old config');
    assert.deepEqual(result, { outcome: 'requeue', afterMs: 5000 });

    ctx.podConfig.refreshOnTouch = true;
    assert.deepEqual(await ctx.reconciler.reconcile(key), { outcome: 'done' });
    assert.equal(ctx.condition('ConfigApplied')?.status, 'True');

    // A pod that does not answer GET /config/hash is named in ConfigApplied, with why.
    ctx.podConfig.unreachable.add(gemmaPod.metadata.name);
    await ctx.reconciler.reconcile(key);
    assert.match(ctx.condition('ConfigApplied')!.message, new RegExp(`^4/5 ready pods run config \\w+; no answer to GET /config/hash from ${gemmaPod.metadata.name}: connect ECONNREFUSED`));
  });

  test('a version without ready endpoints gets no traffic; its weight goes to the others and Degraded says so', async () => {
    const ctx = await setup();
    await converge(ctx, (d) => (d.metadata.name === 'rerankers-v2-gemma' ? 0 : d.spec.replicas));
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=100']);
    assert.equal(ctx.condition('Degraded')?.status, 'True');
    assert.equal(ctx.condition('Degraded')?.reason, 'VersionUnavailable');
    assert.match(ctx.condition('Degraded')!.message, /v2-gemma \(weight 10\).*v2-m3=100/);
    assert.equal(ctx.condition('Ready')?.status, 'False');
    assert.equal(ctx.rrc().status!.weights, 'v2-m3=100,v2-gemma=0,v1=0');
    assert.ok(ctx.kube.events.some((e) => e.type === 'Warning' && e.reason === 'VersionUnavailable'));
  });

  test('GPU pods down, CPU fallback up: the version is served by its fallback Service', async () => {
    const ctx = await setup();
    await converge(ctx, (d) => (d.metadata.name === 'rerankers-v2-m3' ? 0 : d.spec.replicas));
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3-cpu=90', 'rerankers-v2-gemma=10']);
    assert.equal(ctx.condition('Degraded')?.reason, 'CpuFallback');
    assert.equal(ctx.rrc().status!.versions![0]!.device, 'cpu');
  });

  test('weights change: the HTTPRoute and status follow', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.editSpec((spec) => {
      spec.versions[0].weight = 50;
      spec.versions[1].weight = 50;
    });
    await ctx.reconciler.reconcile(key);
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=50', 'rerankers-v2-gemma=50']);
    assert.equal(ctx.rrc().status!.weights, 'v2-m3=50,v2-gemma=50,v1=0');
  });

  test('add and remove versions: new objects applied, objects no longer desired pruned', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.editSpec((spec) => {
      spec.versions = spec.versions.filter((v: any) => v.name !== 'v2-gemma');
      spec.versions.push({ name: 'v3', model: { source: 'hf://BAAI/bge-reranker-v3' }, weight: 5 });
    });
    await ctx.reconciler.reconcile(key);
    const names = ctx.kube.all('Deployment').map((d) => d.metadata.name).sort();
    assert.deepEqual(names, ['rerankers-v1', 'rerankers-v2-m3', 'rerankers-v2-m3-cpu', 'rerankers-v3']);
    assert.equal(ctx.kube.find('Service', 'rag', 'rerankers-v2-gemma'), undefined);
    assert.ok(ctx.kube.find('Service', 'rag', 'rerankers-v3'));
    const data = ctx.kube.find('ConfigMap', 'rag', 'rerankers-config')!.data!;
    assert.equal('version-v2-gemma.yaml' in data, false);
  });

  test('drift is repaired: a deleted Deployment comes back, an edited one is put back, a hand-edited route too', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.kube.remove({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'rag', name: 'rerankers-v2-gemma' });
    ctx.kube.edit('Deployment', 'rag', 'rerankers-v1', (d) => (d.spec.replicas = 7));
    ctx.kube.edit('HTTPRoute', 'rag', 'rerankers', (r) => (r.spec.rules.at(-1).backendRefs[0].weight = 1));
    await ctx.reconciler.reconcile(key);
    assert.ok(ctx.kube.find('Deployment', 'rag', 'rerankers-v2-gemma'));
    assert.equal(ctx.kube.find('Deployment', 'rag', 'rerankers-v1')!.spec.replicas, 1);
    // The recreated v2-gemma has no ready pods yet: its weight stays with v2-m3 until it has.
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=100']);
    ctx.kube.settleDeployments();
    await ctx.reconciler.reconcile(key);
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=90', 'rerankers-v2-gemma=10']);
  });

  test('an apply error: the rest is still applied, the error is in conditions and Events, nothing is Ready, retried', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.editSpec((spec) => (spec.versions[1].replicas = 2));
    ctx.kube.fail('apply', 'Deployment', 422, { name: 'rerankers-v2-gemma', message: 'spec.template: Invalid value' });
    ctx.editSpec((spec) => (spec.versions[2].replicas = 3));
    const result = await ctx.reconciler.reconcile(key);
    assert.equal(result.outcome, 'error');
    assert.match((result as { error: Error }).error.message, /^apply Deployment rag\/rerankers-v2-gemma: spec.template: Invalid value/);
    assert.equal(ctx.kube.find('Deployment', 'rag', 'rerankers-v1')!.spec.replicas, 3, 'later objects were not applied');
    assert.equal(ctx.condition('Ready')?.status, 'False');
    assert.equal(ctx.condition('Ready')?.reason, 'ReconcileFailed');
    assert.equal(ctx.condition('Degraded')?.reason, 'ReconcileFailed');
    assert.ok(ctx.kube.events.some((e) => e.type === 'Warning' && e.reason === 'ReconcileFailed' && e.message.includes('rerankers-v2-gemma')));
    assert.deepEqual(await ctx.reconciler.reconcile(key), { outcome: 'requeue', afterMs: 5000 }, 'the retry goes through');
    assert.equal(ctx.kube.find('Deployment', 'rag', 'rerankers-v2-gemma')!.spec.replicas, 2);
  });

  test('a 409 on the status write is an error (retried), and the next reconcile writes it', async () => {
    const ctx = await setup();
    ctx.kube.fail('patchStatus', 'RerankerConfig', 409);
    const result = await ctx.reconciler.reconcile(key);
    assert.equal(result.outcome, 'error');
    assert.match((result as { error: Error }).error.message, /update status of RerankerConfig rag\/rerankers: injected 409/);
    assert.equal(ctx.rrc().status, undefined);
    await ctx.reconciler.reconcile(key);
    assert.ok(ctx.rrc().status?.conditions);
  });

  test('a failed read of the resource is an error naming what was being done', async () => {
    const ctx = await setup();
    ctx.kube.fail('get', 'RerankerConfig', 500, { message: 'etcd timeout' });
    const result = await ctx.reconciler.reconcile(key);
    assert.equal(result.outcome, 'error');
    assert.equal((result as { error: Error }).error.message, 'get RerankerConfig rag/rerankers: etcd timeout');
  });

  test('delete: the children go with the resource (owner references); reconciling the gone key is done and applies nothing', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.kube.remove({ apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig', namespace: 'rag', name: 'rerankers' });
    assert.equal(ctx.kube.all('Deployment').length + ctx.kube.all('Service').length + ctx.kube.all('Pod').length, 0);
    const before = ctx.kube.calls.length;
    assert.deepEqual(await ctx.reconciler.reconcile(key), { outcome: 'done' });
    assert.deepEqual(ctx.kube.calls.slice(before), ['get RerankerConfig/rerankers']);
  });

  test('a spec the server schema refuses: InvalidSpec, nothing applied, not retried', async () => {
    const ctx = await setup();
    ctx.editSpec((spec) => (spec.defaultVersion = 'nope'));
    assert.deepEqual(await ctx.reconciler.reconcile(key), { outcome: 'done' });
    assert.equal(ctx.kube.all('Deployment').length, 0);
    assert.equal(ctx.condition('Ready')?.reason, 'InvalidSpec');
    assert.match(ctx.condition('Ready')!.message, /defaultVersion/);
    assert.ok(ctx.kube.events.some((e) => e.reason === 'InvalidSpec'));
  });

  test('a model source the CRD lets through but models pull cannot parse: InvalidSpec naming the field, nothing applied', async () => {
    const ctx = await setup();
    ctx.editSpec((spec) => (spec.versions[1].model = { source: 'hf://BAAI/bge-reranker-v2-gemma/onnx' }));
    assert.deepEqual(await ctx.reconciler.reconcile(key), { outcome: 'done' });
    assert.equal(ctx.kube.all('Deployment').length, 0);
    assert.equal(ctx.condition('Ready')?.reason, 'InvalidSpec');
    assert.match(ctx.condition('Ready')!.message, /spec\.versions\[1\]\.model\.source \(v2-gemma\): "hf:\/\/BAAI\/bge-reranker-v2-gemma\/onnx" is not an hf:\/\/org\/name\[@revision\] source/);
  });

  test('switching gateway → router prunes the HTTPRoute and adds the router; a cluster without Gateway API is fine in router mode', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.editSpec((spec) => (spec.routing = { mode: 'router' }));
    await ctx.reconciler.reconcile(key);
    assert.equal(ctx.kube.find('HTTPRoute', 'rag', 'rerankers'), undefined);
    assert.ok(ctx.kube.find('Deployment', 'rag', 'rerankers-router'));
    assert.ok(ctx.kube.find('Service', 'rag', 'rerankers'));
    ctx.kube.missingKinds.add('HTTPRoute');
    const result = await ctx.reconciler.reconcile(key);
    assert.notEqual(result.outcome, 'error');
  });

  test('objects with the owner label but another controller are left alone', async () => {
    const ctx = await setup();
    await ctx.kube.create({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'hand-made', namespace: 'rag', labels: { 'app.kubernetes.io/managed-by': 'rerank-operator', 'rerank.dev/owner': 'rerankers' } },
    });
    await ctx.reconciler.reconcile(key);
    assert.ok(ctx.kube.find('Service', 'rag', 'hand-made'));
  });

  test('running twice changes nothing the second time (level-based, idempotent)', async () => {
    const ctx = await setup();
    await converge(ctx);
    const snapshot = JSON.stringify([...ctx.kube.objects.values()]);
    await ctx.reconciler.reconcile(key);
    assert.equal(JSON.stringify([...ctx.kube.objects.values()]), snapshot);
  });

  test('fail static: Deployments that cannot be listed keep the weights last rendered, and status says why', async () => {
    const ctx = await setup();
    await converge(ctx);
    const config = () => ctx.kube.find('ConfigMap', 'rag', 'rerankers-config')!.data!['config.yaml'];
    const before = config();
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=90', 'rerankers-v2-gemma=10']);
    ctx.kube.fail('list', 'Deployment', 500, { times: 1, message: 'etcdserver: request timed out' });
    const result = await ctx.reconciler.reconcile(key);
    assert.equal(result.outcome, 'error');
    assert.deepEqual(routeWeights(ctx.kube), ['rerankers-v2-m3=90', 'rerankers-v2-gemma=10'], 'routed on a guess');
    assert.equal(config(), before, 'the ConfigMap moved while nothing was observed');
    assert.equal(ctx.rrc().status?.weights, 'v2-m3=90,v2-gemma=10,v1=0');
    assert.equal(ctx.condition('Degraded')?.reason, 'ReconcileFailed');
    assert.match(ctx.condition('Degraded')!.message, /list Deployment .*request timed out.*weights held at v2-m3=90,v2-gemma=10,v1=0/);
    assert.deepEqual(await converge(ctx), { outcome: 'done' });
  });

  test('fail static on a first reconcile that cannot list Deployments: nothing is applied, status says why', async () => {
    const ctx = await setup();
    ctx.kube.fail('list', 'Deployment', 403, { times: 1, message: 'deployments.apps is forbidden' });
    const result = await ctx.reconciler.reconcile(key);
    assert.equal(result.outcome, 'error');
    assert.deepEqual(['ConfigMap', 'Deployment', 'Service', 'HTTPRoute'].map((k) => ctx.kube.all(k).length), [0, 0, 0, 0]);
    assert.equal(ctx.condition('Ready')?.status, 'False');
    assert.match(ctx.condition('Degraded')!.message, /forbidden; nothing applied: weights are rendered only from a complete observation/);
    assert.ok(ctx.kube.events.some((e) => e.type === 'Warning' && /forbidden/.test(e.message)));
    await ctx.reconciler.reconcile(key);
    assert.equal(ctx.kube.all('Deployment').length, 4);
  });

  test('a field another manager applied is reported (Degraded FieldConflict), not taken: no forced write, no fast retry', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.kube.edit('ConfigMap', 'rag', 'rerankers-config', (o) => {
      o.metadata.managedFields = [{ manager: 'rerank-operator', operation: 'Apply' }, { manager: 'gitops', operation: 'Apply' }];
    });
    ctx.kube.fail('apply', 'ConfigMap', 409, { causes: [{ reason: 'FieldManagerConflict', message: 'conflict with "gitops": .data.config.yaml', field: '.data.config.yaml' }] });
    ctx.kube.calls.length = 0;
    const result = await ctx.reconciler.reconcile(key);
    assert.deepEqual(result, { outcome: 'done' }, 'a standing claim is not retried in a loop');
    assert.deepEqual(ctx.kube.calls.filter((c) => c.endsWith('ConfigMap/rerankers-config')), ['apply ConfigMap/rerankers-config', 'get ConfigMap/rerankers-config']);
    assert.equal(ctx.condition('Degraded')?.reason, 'FieldConflict');
    assert.match(ctx.condition('Degraded')!.message, /ConfigMap rag\/rerankers-config: \.data\.config\.yaml \(applied by "gitops"\)/);
    assert.ok(ctx.kube.events.some((e) => e.reason === 'FieldConflict'));
  });

  test('a field a hand edit (an Update) took is drift: the apply is repeated with force', async () => {
    const ctx = await setup();
    await converge(ctx);
    ctx.kube.edit('ConfigMap', 'rag', 'rerankers-config', (o) => {
      o.metadata.managedFields = [{ manager: 'rerank-operator', operation: 'Apply' }, { manager: 'kubectl-edit', operation: 'Update' }];
    });
    ctx.kube.fail('apply', 'ConfigMap', 409, { causes: [{ reason: 'FieldManagerConflict', message: 'conflict with "kubectl-edit" using v1: .data.config.yaml', field: '.data.config.yaml' }] });
    ctx.kube.calls.length = 0;
    assert.deepEqual(await ctx.reconciler.reconcile(key), { outcome: 'done' });
    assert.deepEqual(ctx.kube.calls.filter((c) => c.endsWith('ConfigMap/rerankers-config')), ['apply ConfigMap/rerankers-config', 'get ConfigMap/rerankers-config', 'apply ConfigMap/rerankers-config']);
    assert.equal(ctx.condition('Degraded')?.status, 'False');
  });
});
