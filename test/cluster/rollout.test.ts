/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from kubectl and watches as JSON */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { KINDS } from '../../operator/kube.ts';
import { ClientNodeKube } from '../../operator/kube-client.ts';
import { LABEL } from '../../operator/names.ts';
import { ROLLOUT_ANNOTATION } from '../../operator/rollout/driver.ts';
import { scratchDir, tinyModel } from '../support/models.ts';
import { clusterSkip, installCrd, installGatewayApi, startCluster, type Cluster } from './harness.ts';
import { kubeletSkip, startTestKubelet, type TestKubelet } from './kubelet.ts';
import { eventually, startOperator, type OperatorProcess } from './operator-process.ts';
import { Resources } from './resources.ts';
import { configWeights, promo, rb, Recorder, rolloutChecks, rolloutOf, routeWeights, STEP_INTERVAL_MS } from './rollout-support.ts';

/**
 * spec.rollout on the real API server with pods that really answer: the operator process, the test
 * kubelet running each server pod as a `rerank-server` on its own 127.0.0.N, and real rerank requests
 * sent to the pods' IPs. The operator reads each ready pod's /metrics, judges each 3 s step and moves the
 * weights it renders (the ConfigMap in router mode, the HTTPRoute in gateway mode).
 *
 * The failing canary is a real model failure: its tokenizer maps the word "boom" to an id outside the
 * embedding table, so the model loads and warms up (the pod gets ready), then every request whose text
 * holds the word fails in onnxruntime's Gather and is answered 500. Stable's tokenizer splits the word
 * into pieces it has and answers 200.
 */

/** A copy of the tiny model whose tokenizer gives "boom" an id past the model's vocabulary. */
async function modelThatFailsOnBoom(): Promise<string> {
  const dir = await scratchDir('fails-on-boom');
  await cp((await tinyModel()).dir, dir, { recursive: true });
  const tokenizer = JSON.parse(await readFile(`${dir}/tokenizer.json`, 'utf8')) as { model: { vocab: Record<string, number> } };
  tokenizer.model.vocab.boom = 999_999;
  await writeFile(`${dir}/tokenizer.json`, JSON.stringify(tokenizer));
  return dir;
}

/** Rerank requests to each target pod's IP, a few per second each (a pod given twice gets two loops), until stopped; counts by pod and status. */
class Traffic {
  readonly answered = new Map<string, Map<number, number>>();
  #running = true;
  readonly #loops: Array<Promise<void>>;
  constructor(targets: Array<{ pod: string; ip: string }>, everyMs: number) {
    this.#loops = targets.map(async ({ pod, ip }) => {
      const counts = this.answered.get(pod) ?? new Map<number, number>();
      this.answered.set(pod, counts);
      while (this.#running) {
        try {
          const response = await fetch(`http://${ip}:8080/rerank`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ query: 'what goes boom', texts: ['a boom in the night', 'a quiet evening'] }),
            signal: AbortSignal.timeout(5000),
          });
          await response.arrayBuffer();
          counts.set(response.status, (counts.get(response.status) ?? 0) + 1);
        } catch {
          counts.set(0, (counts.get(0) ?? 0) + 1);
        }
        await sleep(everyMs);
      }
    });
  }
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }
  summary(): string {
    return [...this.answered].map(([pod, counts]) => `${pod}: ${[...counts].map(([s, n]) => `${s}×${n}`).join(' ')}`).join('; ');
  }
}

/**
 * Router mode (its router pod is not run), three versions: stable v1, and two canaries made bad by
 * `faults` in the spec, rendered by the operator into their pods' config: flaky fails 30 % of its
 * requests with 500, slow answers each 300 ms late.
 */
const faulty = {
  apiVersion: 'rerank.dev/v1alpha1',
  kind: 'RerankerConfig',
  metadata: { name: 'fi' },
  spec: {
    defaultVersion: 'v1',
    versions: [
      { name: 'v1', model: { source: 'hf://example/v1' }, replicas: 1, weight: 100 },
      { name: 'flaky', model: { source: 'hf://example/flaky' }, replicas: 1, weight: 0, faults: { errorRatio: 0.3 } },
      { name: 'slow', model: { source: 'hf://example/slow' }, replicas: 1, weight: 0, faults: { delayMs: 300 } },
    ],
    routing: { mode: 'router', router: { replicas: 1 } },
  },
};

// The scenarios run side by side (their own resources, one operator): the file's wall time is the setup and the longer one.
describe('spec.rollout with pods that really answer (test kubelet)', { skip: clusterSkip || kubeletSkip, timeout: 120_000, concurrency: true }, () => {
  let cluster: Cluster;
  let operator: OperatorProcess;
  let kubelet: TestKubelet;
  let r: Resources;
  let recorder: Recorder;
  let traffic: Traffic;
  let targets: Array<{ pod: string; ip: string }> = [];
  let setupMs = 0;
  const { rolloutIs, rolloutWas, seenAfter, wasRendered, events, operatorSample } = rolloutChecks(() => ({ r, recorder, operator }));

  before(async () => {
    const started = Date.now();
    cluster = await startCluster();
    await installCrd(cluster);
    await installGatewayApi(cluster);
    r = new Resources(cluster, await cluster.namespace('rrc-rollout'));
    const failing = await modelThatFailsOnBoom();
    kubelet = await startTestKubelet({
      kubeConfig: cluster.kubeConfig(),
      namespaces: [r.namespace],
      model: async (pod) => (pod.metadata.labels?.[LABEL.version] === 'bad' ? failing : (await tinyModel()).dir),
    });
    // Only this namespace: other suites' resources on the shared API server do not queue before ours.
    operator = await startOperator({ kubeconfig: cluster.kubeconfig, env: { LEADER_ELECT: 'false', WATCH_NAMESPACE: r.namespace } });
    recorder = new Recorder(new ClientNodeKube(cluster.kubeConfig()));
    await Promise.all([KINDS.rerankerConfig, KINDS.configMap, KINDS.httpRoute].map((kind) => recorder.watch(kind, r.namespace)));
    await r.apply(promo);
    await r.apply(rb);
    await r.apply(faulty);
    // Each version's one pod, ready as the API server has it (what the operator lists).
    const pods = await eventually('7 ready server pods', async () => {
      const ready = (await r.list('pods', 'app.kubernetes.io/component=server')).filter((p) =>
        p.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'),
      );
      return ready.length === 7 ? ready : undefined;
    }, 60_000, 250);
    targets = pods.map((p) => ({ pod: p.metadata.name as string, ip: p.status.podIP as string }));
    traffic = new Traffic(targets, 150);
    setupMs = Date.now() - started;
  });

  after(async () => {
    await traffic?.stop();
    recorder?.stop();
    await operator?.stop();
    await kubelet?.stop();
    await cluster?.cleanup();
  });

  const reconcileCost = async () => {
    const count = await operatorSample('rerank_operator_reconcile_duration_seconds_count');
    const mean = Math.round(((await operatorSample('rerank_operator_reconcile_duration_seconds_sum')) / count) * 1000);
    return `operator so far: ${count} reconciles, mean ${mean} ms; setup (API server, CRDs, kubelet, operator, 7 pods ready) took ${setupMs} ms`;
  };

  test('router mode: 25 % → 100 % as each step passes its gate, then promoted; the ConfigMap follows each step', async (t) => {
    // Rendered once the operator has seen the Deployments ready.
    await eventually('ConfigMap at 0 %', async () => configWeights(await r.get('configmap', 'promo-config')) === 'v1=100,v2=0 default=v1');
    await r.mergePatch('rerankerconfig', 'promo', { spec: { rollout: rolloutOf('v2') } });

    const step0 = await rolloutWas('promo', (s) => s.step === 0 && s.phase === 'Progressing');
    assert.equal(step0.weight, 25);
    await wasRendered('ConfigMap', 'promo-config', configWeights, 'v1=75,v2=25 default=v1');

    const step1 = await rolloutIs('promo', (s) => s.step === 1);
    assert.equal(step1.weight, 100);
    assert.deepEqual(step1.lastAnalysis, { errorRatio: { value: 0, threshold: 0.05, ok: true } });
    await wasRendered('ConfigMap', 'promo-config', configWeights, 'v1=0,v2=100 default=v1');

    const done = await rolloutIs('promo', (s) => s.phase === 'Succeeded');
    assert.equal(done.weight, 100);
    assert.match(done.message, /^every step passed: v2 is promoted and takes all unpinned traffic; v1 keeps its pods for 10m$/);
    assert.equal(done.lastAnalysis.errorRatio.value, 0);
    assert.ok(Date.parse(done.finishedAt) - Date.parse(done.stepStartedAt) >= STEP_INTERVAL_MS, 'the last step ran its interval');
    await eventually('ConfigMap promoted', async () => configWeights(await r.get('configmap', 'promo-config')) === 'v1=0,v2=100 default=v2');

    const reasons = (await events('promo')).filter((e) => e.reason.startsWith('Rollout')).map((e) => `${e.type}:${e.reason}`);
    for (const reason of ['RolloutStarted', 'RolloutStepPassed', 'RolloutPromoted']) assert.ok(reasons.includes(`Normal:${reason}`), `${reason} in ${reasons.join(', ')}`);
    assert.match((await r.kubectl(['get', 'rrc', 'promo', '-o', 'wide'])).split('\n')[1]!, /\bSucceeded\s+100\b/);
    assert.equal(await operatorSample(`rerank_operator_rollouts_total{namespace="${r.namespace}",name="promo",result="promoted"}`), 1);
    // Config history: the edit that started the rollout is one revision; its steps and promotion moved only the weights in effect.
    const revisions = (await r.list('controllerrevisions', 'rerank.dev/owner=promo')).sort((a, b) => a.revision - b.revision);
    assert.deepEqual(revisions.filter((c) => c.data.spec.rollout).map((c) => c.revision), [revisions.at(-1).revision]);
    assert.equal((await r.get('rerankerconfig', 'promo')).status.currentRevision, revisions.at(-1).metadata.name);

    // The figures: each step's start (stepStartedAt, the operator's clock) to this process seeing the ConfigMap with its weights.
    const starts = recorder.of('RerankerConfig', 'promo').map((s) => s.object.status?.rollout).filter((s) => s?.phase === 'Progressing');
    const startOf = (step: number) => Date.parse(starts.find((s: any) => s.step === step)!.stepStartedAt);
    t.diagnostic(`step 1 (25%) start → ConfigMap seen: ${seenAfter(startOf(0), 'ConfigMap', 'promo-config', configWeights, 'v1=75,v2=25 default=v1')}`);
    t.diagnostic(`step 1 start → step 2 start: ${startOf(1) - startOf(0)} ms (interval ${STEP_INTERVAL_MS} ms)`);
    t.diagnostic(`step 2 (100%) start → ConfigMap seen: ${seenAfter(startOf(1), 'ConfigMap', 'promo-config', configWeights, 'v1=0,v2=100 default=v1')}`);
    t.diagnostic(`step 2 start → promoted (finishedAt): ${Date.parse(done.finishedAt) - startOf(1)} ms`);
    t.diagnostic(`promoted → ConfigMap with default v2 seen: ${seenAfter(Date.parse(done.finishedAt), 'ConfigMap', 'promo-config', configWeights, 'v1=0,v2=100 default=v2')}`);
    t.diagnostic(`traffic so far: ${traffic.summary()}`);
    t.diagnostic(await reconcileCost());
    if (recorder.ended.length) t.diagnostic(`watches that ended (changes in the gap are seen late): ${recorder.ended.join('; ')}`);
  });

  test('gateway mode: a canary answering 500s is rolled back at the end of its first step (weight 0 in the HTTPRoute, Degraded, a Warning Event); restarted, it pauses and aborts by annotation', async (t) => {
    const route = 'httproutes.gateway.networking.k8s.io';
    // A backend of weight 0 is left out of the route.
    await eventually('HTTPRoute at 0 %', async () => routeWeights(await r.get(route, 'rb')) === 'rb-v1=100');
    await r.mergePatch('rerankerconfig', 'rb', { spec: { rollout: rolloutOf('bad') } });
    const step0 = await rolloutWas('rb', (s) => s.phase === 'Progressing');
    assert.equal(step0.weight, 25);
    await wasRendered('HTTPRoute', 'rb', routeWeights, 'rb-bad=25,rb-v1=75');

    const rolledBack = await rolloutIs('rb', (s) => s.phase === 'RolledBack');
    assert.equal(rolledBack.weight, 0);
    assert.deepEqual(rolledBack.lastAnalysis, { errorRatio: { value: 1, threshold: 0.05, ok: false } });
    assert.match(rolledBack.message, /^step 1\/2 \(25%\) failed errorRatio 1 > 0\.05: rolled back, canary bad gets no traffic$/);
    await eventually('HTTPRoute back at 0 %', async () => routeWeights(await r.get(route, 'rb')) === 'rb-v1=100');
    const degraded = await r.condition('rb', 'Degraded');
    assert.deepEqual([degraded?.status, degraded?.reason], ['True', 'RolloutRolledBack']);
    const warning = await eventually('the RolloutRolledBack Event', async () => (await events('rb')).find((e) => e.reason === 'RolloutRolledBack'));
    assert.equal(warning.type, 'Warning');
    assert.match(warning.message, /failed errorRatio 1 > 0\.05/);
    assert.match(await r.kubectl(['get', 'events', '--field-selector', 'reason=RolloutRolledBack']), /Warning\s+RolloutRolledBack\s+rerankerconfig\/rb/);
    assert.equal(await operatorSample(`rerank_operator_rollouts_total{namespace="${r.namespace}",name="rb",result="rolledBack"}`), 1);
    // What the pods answered: the canary's pod only 500s, stable's only 200s.
    const answered = (version: string) => [...traffic.answered].filter(([pod]) => pod.startsWith(`rb-${version}-`)).flatMap(([, counts]) => [...counts.keys()]);
    assert.deepEqual(answered('bad'), [500]);
    assert.deepEqual(answered('v1'), [200]);

    const startedAt = Date.parse(step0.stepStartedAt);
    const finishedAt = Date.parse(rolledBack.finishedAt);
    t.diagnostic(`step 1 (25%) start → HTTPRoute seen: ${seenAfter(startedAt, 'HTTPRoute', 'rb', routeWeights, 'rb-bad=25,rb-v1=75')}`);
    t.diagnostic(`step 1 start → rolled back (finishedAt): ${finishedAt - startedAt} ms (interval ${STEP_INTERVAL_MS} ms)`);
    t.diagnostic(`rolled back → HTTPRoute without the canary seen: ${seenAfter(finishedAt, 'HTTPRoute', 'rb', routeWeights, 'rb-v1=100')}`);

    // A changed rollout starts over; with a minute's steps there is time to pause it by annotation, then abort it. The
    // annotation may reach the operator with the edit (the rollout starts paused) or after it (it pauses at once).
    await r.mergePatch('rerankerconfig', 'rb', { spec: { rollout: { stepInterval: '1m' } } });
    await r.kubectl(['annotate', 'rrc', 'rb', `${ROLLOUT_ANNOTATION}=pause`]);
    const paused = await rolloutIs('rb', (s) => s.phase === 'Paused');
    assert.deepEqual([paused.step, paused.weight], [0, 25]);
    assert.match(paused.message, /^paused by annotation (at step 1\/2 \(25%\):|as it started: step 1\/2: canary bad takes 25% of unpinned traffic from v1;) canary keeps 25%$/);
    await eventually('the pause annotation removed', async () => (await r.get('rerankerconfig', 'rb')).metadata.annotations?.[ROLLOUT_ANNOTATION] === undefined, 10_000, 100);
    assert.match((await r.kubectl(['get', 'rrc', 'rb', '-o', 'wide'])).split('\n')[1]!, /\bPaused\s+25\b/);
    await eventually('HTTPRoute at 25 % while paused', async () => routeWeights(await r.get(route, 'rb')) === 'rb-bad=25,rb-v1=75');

    await r.kubectl(['annotate', 'rrc', 'rb', `${ROLLOUT_ANNOTATION}=abort`]);
    const aborted = await rolloutIs('rb', (s) => s.phase === 'RolledBack');
    assert.equal(aborted.weight, 0);
    assert.match(aborted.message, /^aborted by annotation at step 1\/2 \(25%\): rolled back, canary bad gets no traffic$/);
    await eventually('HTTPRoute at 0 % after the abort', async () => routeWeights(await r.get(route, 'rb')) === 'rb-v1=100');
    await eventually('the abort annotation removed', async () => (await r.get('rerankerconfig', 'rb')).metadata.annotations?.[ROLLOUT_ANNOTATION] === undefined, 10_000, 100);
    const reasons = (await events('rb')).filter((e) => e.reason.startsWith('Rollout')).map((e) => `${e.type}:${e.reason}`);
    for (const reason of ['Normal:RolloutStarted', 'Normal:RolloutRestarted', 'Normal:RolloutPaused']) assert.ok(reasons.includes(reason), `${reason} in ${reasons.join(', ')}`);
    assert.equal(await operatorSample(`rerank_operator_rollouts_total{namespace="${r.namespace}",name="rb",result="aborted"}`), 1);
    t.diagnostic(await reconcileCost());
  });
  test('faults by config: a canary failing 30 % of its requests is rolled back on maxErrorRatio; one answering 300 ms late, on maxP99Ms and maxP99Ratio', async (t) => {
    // The faults reach the canaries' pods through the rendered ConfigMap.
    const rendered = await eventually('the faults in the ConfigMap', async () => (await r.get('configmap', 'fi-config'))?.data?.['version-flaky.yaml']);
    assert.match(rendered, /faults:\n\s+delayMs: 0\n\s+delayRatio: 1\n\s+errorRatio: 0\.3\n\s+errorStatus: 500/);
    // While this test runs, the canaries with faults get more traffic: enough requests in a 3 s step that 30 % failing
    // cannot pass for 0 %, and that 300 ms delays still give minRequests.
    const burst = new Traffic(targets.filter((target) => /^fi-(flaky|slow)-/.test(target.pod)).flatMap((target) => [target, target]), 30);
    t.after(() => burst.stop());

    await r.mergePatch('rerankerconfig', 'fi', { spec: { rollout: rolloutOf('flaky') } });
    const flakyStep = await rolloutWas('fi', (s) => s.canary === 'flaky' && s.phase === 'Progressing');
    const flaky = await rolloutIs('fi', (s) => s.canary === 'flaky' && s.phase === 'RolledBack');
    assert.equal(flaky.lastAnalysis.errorRatio.ok, false);
    assert.ok(flaky.lastAnalysis.errorRatio.value > 0.1 && flaky.lastAnalysis.errorRatio.value < 0.6, `error ratio ${flaky.lastAnalysis.errorRatio.value} for 30 % injected`);
    assert.match(flaky.message, /^step 1\/2 \(25%\) failed errorRatio 0\.\d+ > 0\.05: rolled back, canary flaky gets no traffic$/);

    // The same resource, the other canary: a changed rollout starts over.
    await r.mergePatch('rerankerconfig', 'fi', { spec: { rollout: { canary: 'slow', analysis: { maxP99Ms: 250, maxP99Ratio: 2 } } } });
    const slowStep = await rolloutWas('fi', (s) => s.canary === 'slow' && s.phase === 'Progressing');
    const slow = await rolloutIs('fi', (s) => s.canary === 'slow' && s.phase === 'RolledBack');
    assert.equal(slow.lastAnalysis.p99Ms.ok, false);
    // Every request took 300 ms and more: the p99 falls in the (250, 500] ms bucket.
    assert.ok(slow.lastAnalysis.p99Ms.value > 250 && slow.lastAnalysis.p99Ms.value <= 500, `p99 ${slow.lastAnalysis.p99Ms.value} ms`);
    assert.deepEqual(slow.lastAnalysis.errorRatio, { value: 0, threshold: 0.05, ok: true });
    assert.match(slow.message, /^step 1\/2 \(25%\) failed p99Ms [\d.]+ms > 250ms(, p99Ratio [\d.]+ > 2)?: rolled back, canary slow gets no traffic$/);

    // What the pods answered: flaky's pod both 500s and 200s, slow's only 200s.
    await burst.stop();
    const answered = (version: string) =>
      new Set([...traffic.answered, ...burst.answered].filter(([pod]) => pod.startsWith(`fi-${version}-`)).flatMap(([, counts]) => [...counts.keys()]));
    assert.deepEqual([...answered('flaky').keys()].sort(), [200, 500]);
    assert.deepEqual([...answered('slow').keys()], [200]);
    t.diagnostic(`flaky: step 1 start → rolled back: ${Date.parse(flaky.finishedAt) - Date.parse(flakyStep.stepStartedAt)} ms (interval ${STEP_INTERVAL_MS} ms); gates ${JSON.stringify(flaky.lastAnalysis)}`);
    t.diagnostic(`slow: step 1 start → rolled back: ${Date.parse(slow.finishedAt) - Date.parse(slowStep.stepStartedAt)} ms; gates ${JSON.stringify(slow.lastAnalysis)}`);
    t.diagnostic(`fi pods answered, extra traffic during this test: ${burst.summary()}`);
  });
});
