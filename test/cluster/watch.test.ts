import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientNodeKube } from '../../operator/kube-client.ts';
import { KINDS, isApiError } from '../../operator/kube.ts';
import { Informer } from '../../operator/informer.ts';
import { systemClock } from '../../operator/clock.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { clusterSkip, installCrd, killApiServer, startCluster, type Cluster } from './harness.ts';
import { eventually, startOperator, type OperatorProcess } from './operator-process.ts';
import { examples, Resources } from './resources.ts';

/** Watches that end: a resourceVersion the server no longer has (410 Gone), and the API server restarting. */
describe('watches on a real API server', { skip: clusterSkip, timeout: 180_000 }, () => {
  let cluster: Cluster;
  let operator: OperatorProcess | undefined;

  before(async () => {
    cluster = await startCluster();
    await installCrd(cluster);
  });

  after(async () => {
    await operator?.stop();
    await cluster?.cleanup();
  });

  test('a watch from a resourceVersion the server no longer has ends with 410 Gone, as the informer expects', async () => {
    const kube = new ClientNodeKube(cluster.kubeConfig());
    const namespace = await cluster.namespace('watch-410');
    const ended = new Promise<unknown>((resolve) => {
      void kube.watch(KINDS.configMap, { namespace, resourceVersion: '1' }, { onEvent: () => {}, onDone: resolve });
    });
    const error = await ended;
    assert.ok(isApiError(error, 410), `ended with ${String(error)}`);
    assert.match((error as Error).message, /too old resource version/);
  });

  test('a watch the server ends (timeoutSeconds) is watched again from where it was: no re-list, no failure, no missed edit', async () => {
    const kube = new ClientNodeKube(cluster.kubeConfig());
    const namespace = await cluster.namespace('watch-timeout');
    const seen: string[] = [];
    const errors: unknown[] = [];
    let lists = 0;
    const counting = { ...kube, get: kube.get.bind(kube), watch: kube.watch.bind(kube), list: (...args: Parameters<typeof kube.list>) => ((lists += 1), kube.list(...args)) } as unknown as typeof kube;
    const informer = new Informer({
      kube: counting, clock: systemClock, kind: KINDS.configMap, namespace, watchTimeoutSeconds: 1,
      onEvent: (event, object) => seen.push(`${event} ${object.metadata.name}`),
      onError: (error) => errors.push(error),
    });
    await informer.start();
    try {
      await sleep(3500);
      await cluster.kubectl(['create', 'configmap', 'late', '-n', namespace]);
      await eventually('the edit after the watch ended', async () => seen.includes('add late'));
      assert.deepEqual(errors, []);
      assert.equal(lists, 1, 'listed again after a watch the server ended');
    } finally {
      informer.stop();
    }
  });

  test('the API server restarts while an edit lands: the operator lists again and reconciles it, and says so in metrics', async () => {
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, env: { LEADER_ELECT: 'false' } });
    await eventually('the operator ready', async () => (await operator!.readyz()).status === 200);
    const { object } = examples('placeholder').find((e) => e.file === 'router.yaml')!;
    const r = new Resources(cluster, await cluster.namespace('watch-restart'));
    object.metadata.namespace = r.namespace;
    await r.apply(object);
    await eventually('reconciled', async () => (await r.get('rerankerconfig', 'rerankers-lite'))?.status?.observedGeneration === 1);

    // Kill the API server (only it); while it is down, /readyz says the watches fail. Start it again
    // and edit at once, before the operator's watches are back: no watch of the edit is open.
    const restart = await killApiServer();
    await eventually('/readyz to say the watches fail', async () => (await operator!.readyz()).status === 503, 30_000);
    assert.match((await operator.readyz()).body, /list\/watch failing \(\d+x, retrying with backoff\)/);
    await restart();
    await r.mergePatch('rerankerconfig', 'rerankers-lite', { spec: { serving: { topK: 4 } } });
    await eventually('the edit reconciled', async () => /topK: 4/.test((await r.get('configmap', 'rerankers-lite-config'))?.data['config.yaml'] ?? ''), 60_000);
    await eventually('status of the edit', async () => (await r.get('rerankerconfig', 'rerankers-lite')).status.observedGeneration === 2);
    await eventually('ready again', async () => (await operator!.readyz()).status === 200, 60_000);
    const metrics = await operator.metrics();
    assert.match(metrics, /rerank_operator_watch_restarts_total\{kind="RerankerConfig",reason="[^"]+"\} [1-9]/);
    assert.ok(operator.logged(/list\/watch RerankerConfig failed/).length >= 1);
    assert.ok(operator.logged(/list\/watch RerankerConfig works again/).length >= 1);
  });
});
