/* eslint-disable @typescript-eslint/no-explicit-any -- tests read deep into stored objects */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino, type Logger } from 'pino';
import { DEFAULT_PROMETHEUS_QUERIES, PROMETHEUS_FIGURES, type PrometheusFigure } from '../../operator/crd/prometheus-spec.ts';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import type { Sample } from '../../operator/rollout/exposition.ts';
import type { PodMetricsReader } from '../../operator/rollout/pod-metrics.ts';
import { DEADLINE_INTERVALS } from '../../operator/rollout/planner.ts';
import { fillTemplate } from '../../operator/rollout/prometheus-figures.ts';
import { FakeClock } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { FakePrometheus, vector, type FakeAnswer } from './support/fake-prometheus.ts';
import { IMAGES, readExample } from './support/examples.ts';

const key = { namespace: 'rag', name: 'rerankers' };

/** With analysis.prometheus the server pods' /metrics are not what the step is judged on: count any read. */
class CountingPodMetrics implements PodMetricsReader {
  reads = 0;
  async read(): Promise<Sample[]> {
    this.reads += 1;
    return [];
  }
}

/** The default figures a fake Prometheus answers, by version, for windows of `window`. */
function answerDefaults(figures: Record<string, Partial<Record<PrometheusFigure, number>>>, window: string): (query: string) => FakeAnswer {
  return (query) => {
    for (const [version, values] of Object.entries(figures)) {
      for (const figure of PROMETHEUS_FIGURES) {
        if (fillTemplate(DEFAULT_PROMETHEUS_QUERIES[figure], { version, namespace: 'rag', name: 'rerankers', window }) !== query) continue;
        return values[figure] === undefined ? vector() : vector(values[figure]);
      }
    }
    return { status: 400, body: { status: 'error', errorType: 'bad_data', error: `not a query this test expects: ${query}` } };
  };
}

describe('a rollout judged on figures from Prometheus, reconciled against the fake apiserver', () => {
  let prometheus: FakePrometheus;
  before(async () => (prometheus = await FakePrometheus.start()));
  after(() => prometheus.close());

  async function setup(analysis: Record<string, unknown>, options: { prometheus?: Record<string, unknown>; logger?: Logger } = {}) {
    prometheus.received.length = 0;
    const kube = new FakeKube();
    const clock = new FakeClock();
    const podMetrics = new CountingPodMetrics();
    const metrics = new OperatorMetrics({ defaultMetrics: false });
    const logger = options.logger;
    const reconciler = new Reconciler({ kube, podConfig: new FakePodConfigReader(kube), podMetrics, clock, images: IMAGES, metrics, ...(logger ? { logger } : {}) });
    const seed = readExample('seed') as any;
    seed.spec.rollout = { canary: 'v2-gemma', steps: [10, 50], stepInterval: '1m', minRequests: 20, analysis: { ...analysis, prometheus: { url: prometheus.url, ...options.prometheus } } };
    await kube.create(seed as KubeObject);
    const rrc = () => kube.find<KubeObject & RerankerConfigObject>('RerankerConfig', 'rag', 'rerankers')!;
    let current = reconciler;
    const reconcile = () => current.reconcile(key);
    /** A new operator (or leader): no baselines in memory, only the status. */
    const restart = () => (current = new Reconciler({ kube, podConfig: new FakePodConfigReader(kube), podMetrics, clock, images: IMAGES, metrics }));
    const routeWeights = () => kube.find('HTTPRoute', 'rag', 'rerankers')!.spec.rules.at(-1).backendRefs.map((b: any) => `${b.name}=${b.weight}`).sort();
    const condition = (type: string) => rrc().status?.conditions?.find((c) => c.type === type);
    await reconcile();
    kube.settleDeployments();
    await reconcile();
    return { kube, clock, podMetrics, metrics, reconcile, restart, rrc, routeWeights, condition };
  }

  test('a step whose Prometheus figures pass its gates moves on; a failing gate then rolls back, naming the gate and its figure', async () => {
    const ctx = await setup({ maxErrorRatio: 0.05, maxP99Ms: 500 });
    prometheus.answer = answerDefaults({ 'v2-gemma': { requests: 30, p99Ms: 24.93 }, 'v2-m3': { requests: 270, p99Ms: 20 } }, '60s');
    await ctx.clock.advance(30_000);
    await ctx.reconcile();
    assert.equal(prometheus.received.length, 0, 'nothing is asked before the step has run its interval');

    await ctx.clock.advance(30_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 1);
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-gemma=50', 'rerankers-v2-m3=50']);
    assert.deepEqual(ctx.rrc().status?.rollout?.lastAnalysis, { errorRatio: { value: 0, threshold: 0.05, ok: true }, p99Ms: { value: 24.9, threshold: 500, ok: true } });
    // Every query it sent was a default filled in for this resource, one of the two versions and the step's 60 s, evaluated now.
    assert.equal(prometheus.received.length, 2 * PROMETHEUS_FIGURES.length);
    const judgedAt = String(ctx.clock.now().getTime() / 1000) + '.000';
    for (const { query, time } of prometheus.received) {
      assert.doesNotMatch(query, /\{\{/);
      assert.match(query, /namespace="rag",version="v2-(gemma|m3)".*\[60s\]/);
      assert.equal(time, judgedAt);
    }
    assert.equal(ctx.podMetrics.reads, 0, "the server pods' /metrics are not read");

    // Mirrored copies count in the error ratio: (2 + 6) ÷ (40 + 40).
    prometheus.answer = answerDefaults({ 'v2-gemma': { requests: 40, errors: 2, mirrored: 40, mirroredErrors: 6, p99Ms: 30 }, 'v2-m3': { requests: 40, p99Ms: 20 } }, '75s');
    await ctx.clock.advance(75_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.phase, 'RolledBack');
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-m3=100']);
    assert.equal(ctx.condition('Degraded')?.reason, 'RolloutRolledBack');
    assert.match(ctx.condition('Degraded')?.message ?? '', /errorRatio 0\.1 > 0\.05/);
    assert.ok(ctx.kube.events.some((e) => e.type === 'Warning' && e.reason === 'RolloutRolledBack'));
  });

  test('a Prometheus that refuses or cannot answer leaves the step unjudged, saying why, never passed; long enough, the rollout fails', async () => {
    const ctx = await setup({ maxErrorRatio: 0.05 });
    prometheus.answer = () => ({ status: 503, raw: 'Service Unavailable' });
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    const rollout = ctx.rrc().status?.rollout;
    assert.deepEqual([rollout?.phase, rollout?.step, rollout?.weight], ['Progressing', 0, 10]);
    assert.match(rollout?.message ?? '', /cannot be judged: query \w+ of v2-(gemma|m3) \(.*\): Prometheus http:\/\/127\.0\.0\.1:\d+: HTTP 503, not a JSON answer/);
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-gemma=10', 'rerankers-v2-m3=90']);

    prometheus.answer = () => vector(1, 2);
    await ctx.clock.advance(10_000);
    await ctx.reconcile();
    assert.match(ctx.rrc().status?.rollout?.message ?? '', /cannot be judged: .*the query gives 2 series/);

    await ctx.clock.advance(DEADLINE_INTERVALS * 60_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.phase, 'Failed');
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-m3=100']);
    assert.ok(ctx.kube.events.some((e) => e.type === 'Warning' && e.reason === 'RolloutFailed'));
  });

  test('an operator that restarts mid-step judges the step when it ends, over its whole window: Prometheus kept the history', async () => {
    const ctx = await setup({ maxErrorRatio: 0.05 });
    prometheus.answer = answerDefaults({ 'v2-gemma': { requests: 30 }, 'v2-m3': { requests: 270 } }, '60s');
    await ctx.clock.advance(40_000);
    ctx.restart();
    // The new operator's queries still cover the step from its start: the fake answers only windows of 60 s.
    await ctx.reconcile();
    assert.match(ctx.rrc().status?.rollout?.message ?? '', /: running$/);
    await ctx.clock.advance(20_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 1);
    assert.ok(!ctx.kube.events.some((e) => e.reason === 'RolloutRestarted'));
  });

  test('too few requests in Prometheus: the step waits and says so', async () => {
    const ctx = await setup({ maxErrorRatio: 0.05 });
    prometheus.answer = answerDefaults({ 'v2-gemma': { requests: 5 }, 'v2-m3': {} }, '60s');
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    assert.match(ctx.rrc().status?.rollout?.message ?? '', /waits for requests: the canary answered 5 of the 20 needed/);
    assert.equal(ctx.rrc().status?.rollout?.step, 0);
  });

  test('a Secret of auth that is missing or lacks its key: the step is unjudged, status and a Warning Event name the Secret and key, counted and logged once; fixed, the token is sent', async () => {
    const logged: Array<{ level: number; msg: string; kind?: string }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    const ctx = await setup({ maxErrorRatio: 0.05 }, { prometheus: { auth: { bearerTokenSecret: { name: 'prom-token' } } }, logger });
    // Every figure 30, but no errors.
    prometheus.answer = (query) => (query.includes('status=~"5.."') ? vector() : vector('30'));
    const message = () => ctx.rrc().status?.rollout?.message ?? '';
    const warnings = () => ctx.kube.events.filter((e) => e.reason === 'RolloutSecretUnreadable');
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    assert.match(message(), /^step 1\/2 \(10%\) cannot be judged: Secret rag\/prom-token not found \(rollout\.analysis\.prometheus\.auth\.bearerTokenSecret\)$/);
    assert.equal(prometheus.received.length, 0, 'nothing is asked without the credentials');
    await ctx.clock.advance(10_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 0, 'never passed');
    assert.deepEqual(warnings().map((e) => [e.type, e.message]), [['Warning', 'analysis.prometheus cannot be used: Secret rag/prom-token not found (rollout.analysis.prometheus.auth.bearerTokenSecret)']]);
    assert.match(await ctx.metrics.registry.metrics(), /rerank_operator_rollout_read_failures_total\{kind="prometheus secret"\} 2/);
    assert.equal(logged.filter((l) => l.kind === 'prometheus secret').length, 1, 'logged once for the kind');

    await ctx.kube.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'prom-token', namespace: 'rag' }, data: { bearer: Buffer.from('t0k3n').toString('base64') } });
    await ctx.clock.advance(10_000);
    await ctx.reconcile();
    assert.match(message(), /cannot be judged: Secret rag\/prom-token has no key "token"/);
    assert.equal(warnings().length, 2, 'a new problem with the Secret is a new Warning');
    assert.match(warnings()[1]!.message, /Secret rag\/prom-token has no key "token"/);

    ctx.kube.edit('Secret', 'rag', 'prom-token', (s) => ((s as { data?: Record<string, string> }).data = { token: Buffer.from('t0k3n\n').toString('base64') }));
    await ctx.clock.advance(10_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 1, 'judged once the Secret is right');
    assert.ok(prometheus.headers.length > 0 && prometheus.headers.slice(-10).every((h) => h.authorization === 'Bearer t0k3n'));
    assert.equal(warnings().length, 2);
    assert.ok(logged.some((l) => l.msg === "read a rollout's figures works again"));
  });

  test('a Prometheus that refuses the credentials (401): the step is unjudged and status says so', async () => {
    const guarded = await FakePrometheus.start({ authorization: 'Bearer right' });
    try {
      const ctx = await setup({ maxErrorRatio: 0.05 }, { prometheus: { url: guarded.url, auth: { bearerTokenSecret: { name: 'prom-token' } } } });
      await ctx.kube.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'prom-token', namespace: 'rag' }, data: { token: Buffer.from('wrong').toString('base64') } });
      await ctx.clock.advance(60_000);
      await ctx.reconcile();
      const rollout = ctx.rrc().status?.rollout;
      assert.deepEqual([rollout?.phase, rollout?.step], ['Progressing', 0]);
      assert.match(
        rollout?.message ?? '',
        /cannot be judged: query \w+ of v2-(gemma|m3) \(.*\): Prometheus https?:\/\/127\.0\.0\.1:\d+: HTTP 401 Unauthorized: the credentials were refused \(sent the bearer token of Secret rag\/prom-token, key token\)/,
      );
      assert.match(await ctx.metrics.registry.metrics(), /rerank_operator_rollout_read_failures_total\{kind="prometheus auth"\} 1/);
      assert.ok(!ctx.kube.events.some((e) => e.reason === 'RolloutSecretUnreadable'));
    } finally {
      await guarded.close();
    }
  });
});
