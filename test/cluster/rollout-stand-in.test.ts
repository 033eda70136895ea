import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { KINDS } from '../../operator/kube.ts';
import { ClientNodeKube } from '../../operator/kube-client.ts';
import { LABEL } from '../../operator/names.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { clusterSkip, installCrd, installGatewayApi, startCluster, type Cluster } from './harness.ts';
import { kubeletSkip } from './kubelet.ts';
import { eventually, freePort, startOperator, type OperatorProcess } from './operator-process.ts';
import { Resources } from './resources.ts';
import { configWeights, promo, rb, Recorder, rolloutChecks, rolloutOf, routeWeights } from './rollout-support.ts';

/**
 * spec.rollout on the real API server where the test kubelet cannot run pods (no root for its mount
 * namespaces): the pods the operator's Deployments create are marked Ready through the status
 * subresource with IPs 127.0.1.N, and each is stood in for by a loopback HTTP server on its IP that
 * serves a real ServerMetrics registry's /metrics on the port the operator is told (RERANK_POD_PORT).
 * The test counts requests into those registries as the server does (server/http/apis/pipeline.ts): a
 * good version's 200s under its name, a failing version's 500s under `none`. test/cluster/rollout.test.ts
 * is the same with real rerank-server pods; where it runs, this one skips (RERANK_TEST_STAND_IN_PODS=1
 * runs it anyway).
 */
const standInSkip: string | false =
  kubeletSkip || process.env.RERANK_TEST_STAND_IN_PODS === '1'
    ? false
    : 'the test kubelet runs real pods here, and test/cluster/rollout.test.ts proves rollouts with them; RERANK_TEST_STAND_IN_PODS=1 runs this stand-in anyway';

/** A pod's stand-in: its /metrics on its IP, and its counters, which `serve` moves as requests would. */
class StandInPod {
  readonly metrics = new ServerMetrics({ defaultMetrics: false });
  readonly #server: Server;
  readonly version: string;
  readonly fails: boolean;
  constructor(version: string, fails: boolean) {
    this.version = version;
    this.fails = fails;
    this.#server = createServer((request, response) => {
      if (request.url !== '/metrics') {
        response.writeHead(404).end();
        return;
      }
      void this.metrics.registry.metrics().then((text) => response.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text));
    });
  }
  listen(ip: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, ip, () => resolve());
    });
  }
  serve(): void {
    if (this.fails) {
      this.metrics.requests.inc({ version: 'none', status: '500' });
      return;
    }
    this.metrics.requests.inc({ version: this.version, status: '200' });
    this.metrics.requestDuration.observe({ version: this.version }, 0.02);
  }
  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

describe('spec.rollout with stand-in pods (no test kubelet)', { skip: clusterSkip || standInSkip, timeout: 90_000, concurrency: true }, () => {
  let cluster: Cluster;
  let operator: OperatorProcess;
  let r: Resources;
  let recorder: Recorder;
  const pods: StandInPod[] = [];
  let traffic: NodeJS.Timeout | undefined;
  const { rolloutIs, rolloutWas, wasRendered, events, operatorSample } = rolloutChecks(() => ({ r, recorder, operator }));

  before(async () => {
    cluster = await startCluster();
    await installCrd(cluster);
    await installGatewayApi(cluster);
    r = new Resources(cluster, await cluster.namespace('rrc-rollout-stand-in'));
    const port = await freePort();
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, env: { LEADER_ELECT: 'false', WATCH_NAMESPACE: r.namespace, RERANK_POD_PORT: String(port) } });
    recorder = new Recorder(new ClientNodeKube(cluster.kubeConfig()));
    await Promise.all([KINDS.rerankerConfig, KINDS.configMap, KINDS.httpRoute].map((kind) => recorder.watch(kind, r.namespace)));
    await r.apply(promo);
    await r.apply(rb);
    const selector = 'app.kubernetes.io/component=server';
    await eventually('4 server pods created', async () => (await r.list('pods', selector)).length === 4, 30_000);
    // 127.0.1.10-13: loopback addresses of their own, so each stand-in answers for one pod.
    await r.markPodsReady(selector, 10);
    for (const pod of await r.list('pods', selector)) {
      const version = pod.metadata.labels[LABEL.version];
      const standIn = new StandInPod(version, version === 'bad');
      await standIn.listen(pod.status.podIP, port);
      pods.push(standIn);
    }
    traffic = setInterval(() => pods.forEach((p) => p.serve()), 100);
  });

  after(async () => {
    clearInterval(traffic);
    recorder?.stop();
    await operator?.stop();
    await Promise.all(pods.map((p) => p.close()));
    await cluster?.cleanup();
  });

  test('router mode: 25 % → 100 % as each step passes its gate, then promoted; the ConfigMap follows each step', async () => {
    await eventually('ConfigMap at 0 %', async () => configWeights(await r.get('configmap', 'promo-config')) === 'v1=100,v2=0 default=v1');
    await r.mergePatch('rerankerconfig', 'promo', { spec: { rollout: rolloutOf('v2') } });
    assert.equal((await rolloutWas('promo', (s) => s.step === 0 && s.phase === 'Progressing')).weight, 25);
    await wasRendered('ConfigMap', 'promo-config', configWeights, 'v1=75,v2=25 default=v1');
    const step1 = await rolloutIs('promo', (s) => s.step === 1);
    assert.deepEqual(step1.lastAnalysis, { errorRatio: { value: 0, threshold: 0.05, ok: true } });
    await wasRendered('ConfigMap', 'promo-config', configWeights, 'v1=0,v2=100 default=v1');
    const done = await rolloutIs('promo', (s) => s.phase === 'Succeeded');
    assert.match(done.message, /^every step passed: v2 is promoted/);
    await eventually('ConfigMap promoted', async () => configWeights(await r.get('configmap', 'promo-config')) === 'v1=0,v2=100 default=v2');
    assert.equal(await operatorSample(`rerank_operator_rollouts_total{namespace="${r.namespace}",name="promo",result="promoted"}`), 1);
  });

  test('gateway mode: a canary answering 500s is rolled back at the end of its first step: weight 0 in the HTTPRoute, Degraded, a Warning Event', async () => {
    const route = 'httproutes.gateway.networking.k8s.io';
    await eventually('HTTPRoute at 0 %', async () => routeWeights(await r.get(route, 'rb')) === 'rb-v1=100');
    await r.mergePatch('rerankerconfig', 'rb', { spec: { rollout: rolloutOf('bad') } });
    await wasRendered('HTTPRoute', 'rb', routeWeights, 'rb-bad=25,rb-v1=75');
    const rolledBack = await rolloutIs('rb', (s) => s.phase === 'RolledBack');
    assert.deepEqual([rolledBack.weight, rolledBack.lastAnalysis], [0, { errorRatio: { value: 1, threshold: 0.05, ok: false } }]);
    await eventually('HTTPRoute back at 0 %', async () => routeWeights(await r.get(route, 'rb')) === 'rb-v1=100');
    assert.equal((await r.condition('rb', 'Degraded'))?.reason, 'RolloutRolledBack');
    const warning = await eventually('the RolloutRolledBack Event', async () => (await events('rb')).find((e) => e.reason === 'RolloutRolledBack'));
    assert.equal(warning.type, 'Warning');
    assert.equal(await operatorSample(`rerank_operator_rollouts_total{namespace="${r.namespace}",name="rb",result="rolledBack"}`), 1);
  });
});
