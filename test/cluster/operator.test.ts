/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from kubectl as JSON */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseRerankerConfig } from '../../operator/crd/parse.ts';
import { plan } from '../../operator/planner.ts';
import { clusterSkip } from './harness.ts';
import { eventually, leadingOperator } from './operator-process.ts';
import { examples, Resources } from './resources.ts';

/**
 * The operator as a process (`node operator/main.ts`, leader election on) against the real API
 * server of ../shared/k8s: what the server decides (schema, SSA field ownership, owner references
 * and garbage collection, the status subresource, watches) is what these tests see. No kubelet runs
 * here, so pods stay Pending unless a test reports them ready through their status subresource.
 */
describe('operator on a real API server', { skip: clusterSkip, timeout: 240_000 }, () => {
  const env = leadingOperator({ gatewayApi: true });

  /** Create `object` in a fresh namespace and wait until the operator has written status for its generation. */
  async function created(prefix: string, object: any): Promise<Resources> {
    const r = new Resources(env.cluster, await env.cluster.namespace(prefix));
    object.metadata.namespace = r.namespace;
    await r.apply(object);
    await reconciledGeneration(r, object.metadata.name);
    return r;
  }

  async function reconciledGeneration(r: Resources, name: string): Promise<any> {
    return eventually(`${r.namespace}/${name} reconciled at its generation`, async () => {
      const live = await r.get('rerankerconfig', name);
      return live?.status?.observedGeneration === live?.metadata.generation && live.status.conditions?.length === 4 ? live : undefined;
    });
  }

  const exampleList = examples('placeholder');
  for (const { file } of exampleList) {
    test(`${file}: the planned ConfigMap, Services, Deployments and route, owned by the resource; printer columns and status`, async () => {
      const { object } = examples('placeholder').find((e) => e.file === file)!;
      const r = await created('rrc-example', object);
      const live = await r.get('rerankerconfig', object.metadata.name);
      // What the pure planner says this spec owns is exactly what the server holds.
      const expected = plan(parseRerankerConfig(live), { server: 'registry.invalid/rerank-server:test' }, {}).objects;
      for (const kind of ['ConfigMap', 'Service', 'Deployment', 'HTTPRoute']) {
        const want = expected.filter((o) => o.kind === kind).map((o) => o.metadata.name).sort();
        const resource = kind === 'HTTPRoute' ? 'httproutes.gateway.networking.k8s.io' : kind.toLowerCase();
        assert.deepEqual(await eventually(`${kind}s of ${file}`, async () => {
          const have = await r.names(resource);
          return have.length === want.length ? have : undefined;
        }), want, `${kind}s of ${file}`);
      }
      for (const kind of ['configmap', 'service', 'deployment']) {
        for (const child of await r.list(kind, 'app.kubernetes.io/managed-by=rerank-operator')) {
          assert.deepEqual(
            child.metadata.ownerReferences.map((o: any) => [o.kind, o.name, o.uid, o.controller]),
            [['RerankerConfig', object.metadata.name, live.metadata.uid, true]],
            `owner of ${kind} ${child.metadata.name}`,
          );
          assert.ok(child.metadata.managedFields.some((m: any) => m.manager === 'rerank-operator' && m.operation === 'Apply'), `${kind} ${child.metadata.name} applied by rerank-operator`);
        }
      }
      const conditions = Object.fromEntries(live.status.conditions.map((c: any) => [c.type, [c.status, c.reason]]));
      assert.deepEqual(conditions.Ready, ['False', 'VersionsNotReady'], 'no pod runs here: nothing is Ready');
      assert.deepEqual(conditions.ConfigApplied, ['False', 'NoReadyPods']);
      for (const c of live.status.conditions) assert.equal(c.observedGeneration, live.metadata.generation);
      const table = await r.kubectl(['get', 'rerankerconfig', object.metadata.name]);
      assert.match(table.split('\n')[0]!, /^NAME\s+VERSIONS\s+WEIGHTS\s+READY\s+CONFIG-HASH\s+AGE/);
      assert.match(table.split('\n')[1]!, new RegExp(`^${object.metadata.name}\\s+${live.status.versionNames}\\s+\\S+\\s+False\\s+${live.status.configHash}`));
    });
  }

  function routerExample(): any {
    return examples('placeholder').find((e) => e.file === 'router.yaml')!.object;
  }

  test('a knob edit changes the ConfigMap and no pod template; status follows the new hash', async () => {
    const r = await created('rrc-knob', routerExample());
    const before = await r.list('deployment', 'app.kubernetes.io/managed-by=rerank-operator');
    const hash = (await r.get('rerankerconfig', 'rerankers-lite')).status.configHash;
    await r.mergePatch('rerankerconfig', 'rerankers-lite', { spec: { serving: { topK: 3 } } });
    const live = await reconciledGeneration(r, 'rerankers-lite');
    assert.notEqual(live.status.configHash, hash);
    const config = await r.get('configmap', 'rerankers-lite-config');
    assert.match(config.data['config.yaml'], /topK: 3/);
    const afterEdit = await r.list('deployment', 'app.kubernetes.io/managed-by=rerank-operator');
    assert.deepEqual(
      afterEdit.map((d) => [d.metadata.name, d.metadata.generation, JSON.stringify(d.spec.template)]),
      before.map((d) => [d.metadata.name, d.metadata.generation, JSON.stringify(d.spec.template)]),
      'a knob edit moved a pod template',
    );
  });

  test('a weight edit changes the router config (weights in effect follow ready pods); removing a version prunes its objects', async () => {
    const r = await created('rrc-weight', routerExample());
    const routed = async () => {
      const config = await r.get('configmap', 'rerankers-lite-config');
      const versions = (await import('js-yaml')).load(config.data['config.yaml']) as { versions: Record<string, { weight: number }> };
      return Object.entries(versions.versions).map(([name, v]) => `${name}=${v.weight}`).sort().join(',');
    };
    assert.equal(await routed(), 'candidate=0,stable=0', 'no ready endpoints: no weight anywhere');
    await eventually('pods of both versions', async () => (await r.list('pods', 'app.kubernetes.io/component=server')).length === 3);
    await r.markPodsReady('app.kubernetes.io/component=server');
    await eventually('weights in effect 80/20 once pods are ready', async () => (await routed()) === 'candidate=20,stable=80');
    // The ConfigMap is applied before status is written: status follows a moment later.
    await eventually('status weights 80/20', async () => (await r.get('rerankerconfig', 'rerankers-lite')).status.weights === 'stable=80,candidate=20');

    const live = await r.get('rerankerconfig', 'rerankers-lite');
    await r.jsonPatch('rerankerconfig', 'rerankers-lite', [
      { op: 'replace', path: '/spec/versions/0/weight', value: 50 },
      { op: 'replace', path: '/spec/versions/1/weight', value: 50 },
    ]);
    await eventually('weights 50/50', async () => (await routed()) === 'candidate=50,stable=50');
    assert.ok((await r.get('rerankerconfig', 'rerankers-lite')).metadata.generation > live.metadata.generation);

    await r.jsonPatch('rerankerconfig', 'rerankers-lite', [{ op: 'remove', path: '/spec/versions/1' }]);
    await eventually('the candidate pruned', async () => {
      const [deployments, services] = [await r.names('deployment'), await r.names('service')];
      return deployments.join() === 'rerankers-lite-router,rerankers-lite-stable' && services.join() === 'rerankers-lite,rerankers-lite-stable';
    });
    assert.equal(await routed(), 'stable=100');
  });

  test('deleting the resource garbage-collects every child (owner references, the real garbage collector)', async () => {
    const r = await created('rrc-delete', routerExample());
    assert.ok((await r.names('deployment')).length > 0);
    await r.delete('rerankerconfig', 'rerankers-lite');
    await eventually('children gone', async () => {
      const left = [...(await r.names('deployment')), ...(await r.names('service')), ...(await r.names('configmap'))];
      return left.length === 0;
    }, 60_000);
  });

  test('config history: a ControllerRevision per spec, owned and garbage-collected; rollback-to restores a spec and applies it', async () => {
    const r = await created('rrc-history', routerExample());
    const revisions = async () => (await r.list('controllerrevisions', 'rerank.dev/owner=rerankers-lite')).sort((a, b) => a.revision - b.revision);
    const first = await eventually('the first revision', async () => (await revisions())[0]);
    const live = await r.get('rerankerconfig', 'rerankers-lite');
    assert.deepEqual(first.metadata.ownerReferences.map((o: any) => [o.kind, o.name, o.uid, o.controller]), [['RerankerConfig', 'rerankers-lite', live.metadata.uid, true]]);
    assert.equal(first.revision, 1);
    assert.deepEqual(first.data.spec, live.spec);
    assert.equal(first.data.manager, 'rerank-tests', 'the server-side apply that created the spec');
    const stableConfig = async () => (await r.get('configmap', 'rerankers-lite-config')).data['config.yaml'] as string;
    const before = await stableConfig();

    // managedFields times have one-second resolution: the patch must be newer than the apply to be told apart.
    await sleep(1100);
    await r.mergePatch('rerankerconfig', 'rerankers-lite', { spec: { serving: { topK: 3 } } });
    const second = await eventually('a second revision', async () => (await revisions())[1]);
    assert.equal(second.revision, 2);
    assert.equal(second.data.spec.serving.topK, 3);
    assert.equal(second.data.manager, 'kubectl-patch');
    await eventually('status names the second', async () => (await r.get('rerankerconfig', 'rerankers-lite')).status.currentRevision === second.metadata.name);
    assert.match(await stableConfig(), /topK: 3/);

    await r.kubectl(['annotate', 'rerankerconfig', 'rerankers-lite', 'rerank.dev/rollback-to=1']);
    const restored = await eventually('the first spec back, the annotation gone, status on the first revision', async () => {
      const now = await r.get('rerankerconfig', 'rerankers-lite');
      const done = now.status.currentRevision === first.metadata.name && !now.metadata.annotations?.['rerank.dev/rollback-to'] && now.status.observedGeneration === now.metadata.generation;
      return done ? now : undefined;
    });
    assert.deepEqual(restored.spec, live.spec);
    assert.equal(await stableConfig(), before);
    assert.deepEqual((await revisions()).map((c) => [c.revision, c.metadata.name]), [[2, second.metadata.name], [3, first.metadata.name]]);
    const events = await r.list('events');
    assert.ok(events.some((e) => e.reason === 'RolledBackTo' && e.involvedObject.name === 'rerankers-lite'), 'a RolledBackTo Event');

    await r.delete('rerankerconfig', 'rerankers-lite');
    await eventually('revisions garbage-collected', async () => (await revisions()).length === 0, 60_000);
  });

  test('drift: a child deleted by hand comes back; fields edited by hand (kubectl patch, scale) are put back', async () => {
    const r = await created('rrc-drift', routerExample());
    const uid = (await r.get('service', 'rerankers-lite-stable')).metadata.uid;
    await r.delete('service', 'rerankers-lite-stable');
    await eventually('the Service recreated', async () => {
      const svc = await r.get('service', 'rerankers-lite-stable');
      return svc && svc.metadata.uid !== uid;
    });
    const configBefore = (await r.get('configmap', 'rerankers-lite-config')).data['config.yaml'];
    await r.mergePatch('configmap', 'rerankers-lite-config', { data: { 'config.yaml': 'defaultVersion: hand-edited\n' } });
    await r.kubectl(['scale', 'deployment', 'rerankers-lite-stable', '--replicas=5']);
    await eventually('the ConfigMap put back', async () => (await r.get('configmap', 'rerankers-lite-config')).data['config.yaml'] === configBefore);
    await eventually('replicas put back', async () => (await r.get('deployment', 'rerankers-lite-stable')).spec.replicas === 2);
    // No pod runs here: Degraded says the versions have no ready endpoints, and nothing else.
    assert.equal((await r.condition('rerankers-lite', 'Degraded'))?.reason, 'VersionUnavailable', 'drift repaired is not a fault');
  });

  test('a field another manager applied is reported (FieldConflict), not fought over: the object stays put', async () => {
    const r = await created('rrc-conflict', routerExample());
    const claim = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'rerankers-lite-config' }, data: { 'router.yaml': 'router: {}\n' } };
    await r.apply(claim, 'gitops');
    const reported = await eventually('FieldConflict in status', async () => {
      const degraded = await r.condition('rerankers-lite', 'Degraded');
      return degraded?.reason === 'FieldConflict' ? degraded : undefined;
    });
    assert.match(reported.message, /ConfigMap .*rerankers-lite-config: \.data\.router\.yaml \(applied by "gitops"\)/);
    const version = (await r.get('configmap', 'rerankers-lite-config')).metadata.resourceVersion;
    await sleep(4000);
    assert.equal((await r.get('configmap', 'rerankers-lite-config')).metadata.resourceVersion, version, 'the operator and the other manager took turns writing it');
    const events = await r.kubectl(['get', 'events', '--field-selector', 'reason=FieldConflict', '-o', 'name']);
    assert.ok(events.trim().length > 0, 'an Event says so');
    // The other manager lets go of the field: the operator's next apply sets it again.
    await r.apply({ ...claim, data: {} }, 'gitops');
    await eventually('the operator owns router.yaml again', async () => {
      const cm = await r.get('configmap', 'rerankers-lite-config');
      return /upstreams/.test(cm.data['router.yaml'] ?? '') && (await r.condition('rerankers-lite', 'Degraded'))?.reason === 'VersionUnavailable';
    });
  });

  test('a spec the CRD cannot reject (a model source models pull cannot parse) is reported in status', async () => {
    const object = routerExample();
    object.spec.versions[1].model.source = 'hf://BAAI/bge-reranker-base/onnx';
    const r = await created('rrc-badsource', object);
    const ready = await r.condition('rerankers-lite', 'Ready');
    assert.equal(ready?.reason, 'InvalidSpec');
    assert.match(ready!.message, /spec\.versions\[1\]\.model\.source \(candidate\)/);
    assert.deepEqual(await r.names('deployment'), [], 'nothing applied for a spec it cannot act on');
    const events = await r.kubectl(['get', 'events', '--field-selector', 'reason=InvalidSpec', '-o', 'name']);
    assert.ok(events.trim().length > 0);
  });

  test('API errors are counted and every list/watch is healthy in /metrics and /readyz', async () => {
    const metrics = await env.operator.metrics();
    assert.match(metrics, /rerank_operator_leader 1/);
    assert.match(metrics, /rerank_operator_reconciles_total\{outcome="(done|requeue)"\} [1-9]/);
    // The conflict test above drew 409s from non-forced applies: counted by verb, kind and code.
    assert.match(metrics, /rerank_operator_api_errors_total\{verb="apply",kind="ConfigMap",code="409"\} [1-9]/);
    assert.deepEqual(await env.operator.readyz(), { status: 200, body: 'ok: leading\n' });
  });
});
