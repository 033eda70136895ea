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
import { configWeights, promo, rb, Recorder, rolloutChecks, rolloutOf, routeWeights, STEP_INTERVAL_MS } from './rollout-support.ts';

/**
 * spec.rollout on the real API server where the test kubelet cannot run pods (no root for its mount
 * namespaces): the pods the operator's Deployments create are marked Ready through the status
 * subresource with IPs 127.0.1.N, and each is stood in for by a loopback HTTP server on its IP that
 * serves a real ServerMetrics registry's /metrics on the port the operator is told (RERANK_POD_PORT).
 * The test counts requests into those registries as the server does (server/http/apis/pipeline.ts): a
 * good version's 200s under its name, a failing version's 500s under `none`. test/cluster/rollout.test.ts
 * is the same with real rerank-server pods; where it runs, that part skips here (RERANK_TEST_STAND_IN_PODS=1
 * runs it anyway). An operator restart in the middle of a step needs no real pods and runs everywhere.
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

/**
 * For a describe block: the API server, an operator told to ask pods on a port of the test's, the
 * resources applied, their server pods marked Ready on 127.0.1.<ipBase + n> and stood in for, each
 * answering 10 requests a second. Read the fields inside the tests.
 */
function standIns(prefix: string, objects: unknown[], ipBase: number) {
  const context = {} as { cluster: Cluster; r: Resources; operator: OperatorProcess; recorder: Recorder; port: number; pods: StandInPod[] };
  let traffic: NodeJS.Timeout | undefined;
  const operatorEnv = () => ({ LEADER_ELECT: 'false', WATCH_NAMESPACE: context.r.namespace, RERANK_POD_PORT: String(context.port) });
  before(async () => {
    context.cluster = await startCluster();
    await installCrd(context.cluster);
    await installGatewayApi(context.cluster);
    context.r = new Resources(context.cluster, await context.cluster.namespace(prefix));
    context.port = await freePort();
    context.operator = await startOperator({ kubeconfig: context.cluster.kubeconfig, env: operatorEnv() });
    context.recorder = new Recorder(new ClientNodeKube(context.cluster.kubeConfig()));
    await Promise.all([KINDS.rerankerConfig, KINDS.configMap, KINDS.httpRoute].map((kind) => context.recorder.watch(kind, context.r.namespace)));
    for (const object of objects) await context.r.apply(object);
    const selector = 'app.kubernetes.io/component=server';
    await eventually(`${objects.length * 2} server pods created`, async () => (await context.r.list('pods', selector)).length === objects.length * 2, 30_000);
    await context.r.markPodsReady(selector, ipBase);
    context.pods = [];
    for (const pod of await context.r.list('pods', selector)) {
      const version = pod.metadata.labels[LABEL.version];
      const standIn = new StandInPod(version, version === 'bad');
      await standIn.listen(pod.status.podIP, context.port);
      context.pods.push(standIn);
    }
    traffic = setInterval(() => context.pods.forEach((p) => p.serve()), 100);
  });
  after(async () => {
    clearInterval(traffic);
    context.recorder?.stop();
    await context.operator?.stop();
    await Promise.all((context.pods ?? []).map((p) => p.close()));
    await context.cluster?.cleanup();
  });
  return {
    context,
    /** Stop the operator (SIGTERM: it finishes its reconciles) and start another, as a new leader would. */
    async restartOperator(): Promise<void> {
      await context.operator.stop();
      context.operator = await startOperator({ kubeconfig: context.cluster.kubeconfig, env: operatorEnv() });
    },
  };
}

describe('spec.rollout with stand-in pods (no test kubelet)', { skip: clusterSkip || standInSkip, timeout: 90_000, concurrency: true }, () => {
  // 127.0.1.10-13: loopback addresses of their own, so each stand-in answers for one pod.
  const { context } = standIns('rrc-rollout-stand-in', [promo, rb], 10);
  const { rolloutIs, rolloutWas, wasRendered, events, operatorSample } = rolloutChecks(() => context);

  test('router mode: 25 % → 100 % as each step passes its gate, then promoted; the ConfigMap follows each step', async () => {
    await eventually('ConfigMap at 0 %', async () => configWeights(await context.r.get('configmap', 'promo-config')) === 'v1=100,v2=0 default=v1');
    await context.r.mergePatch('rerankerconfig', 'promo', { spec: { rollout: rolloutOf('v2') } });
    assert.equal((await rolloutWas('promo', (s) => s.step === 0 && s.phase === 'Progressing')).weight, 25);
    await wasRendered('ConfigMap', 'promo-config', configWeights, 'v1=75,v2=25 default=v1');
    const step1 = await rolloutIs('promo', (s) => s.step === 1);
    assert.deepEqual(step1.lastAnalysis, { errorRatio: { value: 0, threshold: 0.05, ok: true } });
    await wasRendered('ConfigMap', 'promo-config', configWeights, 'v1=0,v2=100 default=v1');
    const done = await rolloutIs('promo', (s) => s.phase === 'Succeeded');
    assert.match(done.message, /^every step passed: v2 is promoted/);
    await eventually('ConfigMap promoted', async () => configWeights(await context.r.get('configmap', 'promo-config')) === 'v1=0,v2=100 default=v2');
    assert.equal(await operatorSample(`rerank_operator_rollouts_total{namespace="${context.r.namespace}",name="promo",result="promoted"}`), 1);
  });

  test('gateway mode: a canary answering 500s is rolled back at the end of its first step: weight 0 in the HTTPRoute, Degraded, a Warning Event', async () => {
    const route = 'httproutes.gateway.networking.k8s.io';
    await eventually('HTTPRoute at 0 %', async () => routeWeights(await context.r.get(route, 'rb')) === 'rb-v1=100');
    await context.r.mergePatch('rerankerconfig', 'rb', { spec: { rollout: rolloutOf('bad') } });
    await wasRendered('HTTPRoute', 'rb', routeWeights, 'rb-bad=25,rb-v1=75');
    const rolledBack = await rolloutIs('rb', (s) => s.phase === 'RolledBack');
    assert.deepEqual([rolledBack.weight, rolledBack.lastAnalysis], [0, { errorRatio: { value: 1, threshold: 0.05, ok: false } }]);
    await eventually('HTTPRoute back at 0 %', async () => routeWeights(await context.r.get(route, 'rb')) === 'rb-v1=100');
    assert.equal((await context.r.condition('rb', 'Degraded'))?.reason, 'RolloutRolledBack');
    const warning = await eventually('the RolloutRolledBack Event', async () => (await events('rb')).find((e) => e.reason === 'RolloutRolledBack'));
    assert.equal(warning.type, 'Warning');
    assert.equal(await operatorSample(`rerank_operator_rollouts_total{namespace="${context.r.namespace}",name="rb",result="rolledBack"}`), 1);
  });
});

// The rollout's step baselines live in the operator's memory; its status is all a new operator (or a new leader) has.
describe('spec.rollout across an operator restart (stand-in pods)', { skip: clusterSkip, timeout: 90_000 }, () => {
  const resume = { ...promo, metadata: { name: 'resume' } };
  // 127.0.1.20-21.
  const standIn = standIns('rrc-rollout-restart', [resume], 20);
  const { context } = standIn;
  const { rolloutIs, rolloutWas, events } = rolloutChecks(() => context);

  test('an operator that restarts mid-step resumes from status: the step is not started over, its window restarts at the first scrape, and its gate is judged a full interval later', async (t) => {
    await context.r.mergePatch('rerankerconfig', 'resume', { spec: { rollout: rolloutOf('v2') } });
    await rolloutWas('resume', (s) => s.phase === 'Progressing');
    const restartedAt = Date.now();
    await standIn.restartOperator();
    // The new operator has no baseline for the step it finds: it says so, and measures from its own first scrape.
    const resumed = await rolloutWas('resume', (s) => /: its window restarted \(the operator had no baseline for it\)$/.test(s.message));
    const history = context.recorder.of('RerankerConfig', 'resume').map((s) => s.object.status?.rollout).filter((s) => s !== undefined);
    assert.equal(resumed.stepStartedAt, history.find((s) => s.step === resumed.step)!.stepStartedAt, 'the step keeps its start');
    const judged = await rolloutIs('resume', (s) => s.step > resumed.step || s.phase === 'Succeeded');
    const judgedAt = Date.parse(judged.step > resumed.step ? judged.stepStartedAt : judged.finishedAt);
    assert.ok(judgedAt - restartedAt >= STEP_INTERVAL_MS, `step ${resumed.step + 1} judged ${judgedAt - restartedAt} ms after the restart began`);
    assert.equal(judged.lastAnalysis.errorRatio.value, 0);
    // Never from the first step again: one RolloutStarted, no RolloutRestarted, and the step never went back.
    const reasons = (await events('resume')).map((e) => e.reason);
    assert.deepEqual([reasons.filter((reason) => reason === 'RolloutStarted').length, reasons.includes('RolloutRestarted')], [1, false]);
    const steps = context.recorder.of('RerankerConfig', 'resume').flatMap((s) => (s.object.status?.rollout ? [s.object.status.rollout.step as number] : []));
    assert.deepEqual(steps, [...steps].sort((a, b) => a - b));
    t.diagnostic(`restart landed in step ${resumed.step + 1}; that step was judged ${judgedAt - restartedAt} ms after the restart began (interval ${STEP_INTERVAL_MS} ms)`);
  });
});
