/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from kubectl as JSON */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { load } from 'js-yaml';
import { clusterSkip, installCrd, startCluster, type Cluster } from './harness.ts';
import { kubeletSkip, startTestKubelet, type TestKubelet } from './kubelet.ts';
import { eventually, startOperator, type OperatorProcess } from './operator-process.ts';
import { Resources } from './resources.ts';

/**
 * The whole loop with pods that really answer: the operator process, the real API server and
 * controller-manager, and the test kubelet running each server pod as a local `rerank-server` on its
 * own 127.0.0.N. Status here is read back from the pods themselves (GET /config on each pod IP).
 */
describe('the operator with pods that really run (test kubelet)', { skip: clusterSkip || kubeletSkip, timeout: 240_000 }, () => {
  let cluster: Cluster;
  let operator: OperatorProcess;
  let kubelet: TestKubelet;
  let r: Resources;

  const rrc = {
    apiVersion: 'rerank.dev/v1alpha1',
    kind: 'RerankerConfig',
    metadata: { name: 'loop' },
    spec: {
      defaultVersion: 'stable',
      versions: [
        { name: 'stable', model: { source: 'hf://example/stable' }, replicas: 2, weight: 80 },
        { name: 'canary', model: { source: 'hf://example/canary' }, replicas: 1, weight: 20 },
      ],
      routing: { mode: 'router', router: { replicas: 1 } },
      serving: { topK: 5, maxLength: 128 },
    },
  };

  before(async () => {
    cluster = await startCluster();
    await installCrd(cluster);
    r = new Resources(cluster, await cluster.namespace('rrc-pods'));
    // Pods of the version "broken" never get ready: their model never arrives.
    kubelet = await startTestKubelet({ kubeConfig: cluster.kubeConfig(), namespaces: [r.namespace], neverReady: (pod) => pod.metadata?.labels?.['rerank.dev/version'] === 'broken' });
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, env: { LEADER_ELECT: 'false' } });
  });

  after(async () => {
    await operator?.stop();
    await kubelet?.stop();
    await cluster?.cleanup();
  });

  const status = async () => (await r.get('rerankerconfig', 'loop'))?.status;
  const condition = async (type: string) => (await status())?.conditions?.find((c: any) => c.type === type);
  const routed = async () => {
    const config = load((await r.get('configmap', 'loop-config')).data['config.yaml']) as { versions: Record<string, { weight: number }> };
    return Object.entries(config.versions).map(([name, v]) => `${name}=${v.weight}`).sort().join(',');
  };
  const pids = () => kubelet.pods().map((p) => `${p.name}:${p.pid}:${p.restartCount}`).sort();

  test('apply: pods start, get ready, and report the config they run: Ready=True, ConfigApplied 3/3, weights in effect', async () => {
    await r.apply(rrc);
    const ready = await eventually('Ready=True', async () => {
      const c = await condition('Ready');
      return c?.status === 'True' ? c : undefined;
    }, 90_000, 500);
    assert.equal(ready.reason, 'Ready');
    const s = await eventually('ConfigApplied 3/3', async () => {
      const current = await status();
      return current.configApplied === '3/3' ? current : undefined;
    }, 30_000);
    assert.equal((await condition('ConfigApplied')).status, 'True');
    assert.equal(s.weights, 'stable=80,canary=20');
    assert.equal(await routed(), 'canary=20,stable=80');
    // readyReplicas comes from the Deployments, which the controller-manager updates a moment after the pods.
    await eventually('ready replicas per version', async () => {
      const versions = (await status()).versions.map((v: any) => [v.name, v.readyReplicas, v.configApplied]);
      return JSON.stringify(versions) === JSON.stringify([['stable', 2, '2/2'], ['canary', 1, '1/1']]);
    });
    // Each pod answers on its own address with the hash the operator expects of it.
    for (const pod of kubelet.pods()) {
      const applied = (await (await fetch(`http://${pod.ip}:8080/config`)).json()) as { hash: string };
      const expected = (await r.list('pods', `rerank.dev/owner=loop,rerank.dev/version=${pod.name.includes('canary') ? 'canary' : 'stable'}`))
        .find((p) => p.metadata.name === pod.name)?.metadata.annotations?.['rerank.dev/config-hash'];
      assert.equal(applied.hash, expected, `pod ${pod.name}`);
    }
  });

  test('a knob edit: the pods hot-reload it (same processes, no restart) and ConfigApplied comes back to 3/3 with the new hash', async (t) => {
    const before = pids();
    const hashBefore = (await status()).configHash;
    const editedAt = Date.now();
    await r.mergePatch('rerankerconfig', 'loop', { spec: { serving: { topK: 2 } } });
    const after = await eventually('3/3 pods on the new config', async () => {
      const s = await status();
      return s.configHash !== hashBefore && s.configApplied === '3/3' && s.observedGeneration === 2 ? s : undefined;
    }, 30_000, 100);
    const tookMs = Date.now() - editedAt;
    t.diagnostic(`edit → 3/3 pods report the new hash: ${tookMs} ms`);
    assert.equal((await condition('ConfigApplied')).status, 'True');
    assert.deepEqual(pids(), before, 'a pod restarted');
    // Well under kubelet's one-minute sync, which the test kubelet keeps: the operator's nudge did it.
    assert.ok(tookMs < 20_000, `the config reached the pods after ${tookMs} ms`);
    for (const pod of kubelet.pods()) {
      const info = (await (await fetch(`http://${pod.ip}:8080/config`)).json()) as { config: { serving: { topK: number } } };
      assert.equal(info.config.serving.topK, 2, `pod ${pod.name} serves the edit`);
    }
    assert.notEqual(after.configHash, hashBefore);
  });

  test('a weight edit: the weights in effect follow', async () => {
    await r.jsonPatch('rerankerconfig', 'loop', [
      { op: 'replace', path: '/spec/versions/0/weight', value: 40 },
      { op: 'replace', path: '/spec/versions/1/weight', value: 60 },
    ]);
    await eventually('weights 40/60', async () => (await status()).weights === 'stable=40,canary=60' && (await routed()) === 'canary=60,stable=40');
  });

  test('a version whose pods never get ready: its weight goes to the others, Degraded and Ready say why', async () => {
    await r.jsonPatch('rerankerconfig', 'loop', [
      { op: 'add', path: '/spec/versions/-', value: { name: 'broken', model: { source: 'hf://example/broken' }, replicas: 1, weight: 50 } },
    ]);
    const degraded = await eventually('Degraded=True VersionUnavailable', async () => {
      const c = await condition('Degraded');
      return c?.reason === 'VersionUnavailable' ? c : undefined;
    }, 30_000);
    assert.match(degraded.message, /no ready endpoints: broken \(weight 50\); weight in effect: stable=40, canary=60/);
    assert.equal((await status()).weights, 'stable=40,canary=60,broken=0');
    assert.equal(await routed(), 'broken=0,canary=60,stable=40');
    const ready = await condition('Ready');
    assert.deepEqual([ready.status, ready.reason, ready.message], ['False', 'VersionsNotReady', 'no ready endpoints: broken']);
    assert.ok(kubelet.pods().some((p) => p.name.startsWith('loop-broken-') && !p.ready), 'the broken pod is bound but not ready');
  });
});
