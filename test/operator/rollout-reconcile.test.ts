/* eslint-disable @typescript-eslint/no-explicit-any -- tests read deep into stored objects */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import { ROLLOUT_ANNOTATION } from '../../operator/rollout/driver.ts';
import { parseExposition, type Sample } from '../../operator/rollout/exposition.ts';
import type { PodMetricsReader } from '../../operator/rollout/pod-metrics.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { FakeClock } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { IMAGES, readExample } from './support/examples.ts';

const key = { namespace: 'rag', name: 'rerankers' };

/** Each pod's /metrics is a real ServerMetrics registry, one per pod, that the test drives. */
class FakePodMetrics implements PodMetricsReader {
  readonly pods = new Map<string, ServerMetrics>();
  readonly unreachable = new Set<string>();
  /** Runs before each read answers (a slow pod, a slow reconcile). */
  delay: (() => Promise<void>) | undefined;
  of(pod: string): ServerMetrics {
    let metrics = this.pods.get(pod);
    if (!metrics) this.pods.set(pod, (metrics = new ServerMetrics({ defaultMetrics: false })));
    return metrics;
  }
  async read(pod: KubeObject): Promise<Sample[]> {
    await this.delay?.();
    if (this.unreachable.has(pod.metadata.name)) throw new Error('connect ECONNREFUSED');
    return parseExposition(await this.of(pod.metadata.name).registry.metrics());
  }
  /** `n` answered requests of `version` on its first pod, `errors` of them 503, each taking `seconds`. */
  serve(version: string, n: number, { errors = 0, seconds = 0.02 } = {}): void {
    const metrics = this.of(`rerankers-${version}-0`);
    metrics.requests.inc({ version, status: '200' }, n - errors);
    if (errors) metrics.requests.inc({ version, status: '503' }, errors);
    for (let i = 0; i < n; i += 1) metrics.requestDuration.observe({ version }, seconds);
  }
}

async function setup(rollout: Record<string, unknown>) {
  const kube = new FakeKube();
  const clock = new FakeClock();
  const podMetrics = new FakePodMetrics();
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const reconciler = new Reconciler({ kube, podConfig: new FakePodConfigReader(kube), podMetrics, clock, images: IMAGES, metrics });
  const seed = readExample('seed') as any;
  seed.spec.rollout = rollout;
  await kube.create(seed as KubeObject);
  const rrc = () => kube.find<KubeObject & RerankerConfigObject>('RerankerConfig', 'rag', 'rerankers')!;
  const reconcile = () => reconciler.reconcile(key);
  const routeWeights = () => kube.find('HTTPRoute', 'rag', 'rerankers')!.spec.rules.at(-1).backendRefs.map((b: any) => `${b.name}=${b.weight}`).sort();
  const condition = (type: string) => rrc().status?.conditions?.find((c) => c.type === type);
  // Apply, let every Deployment's pods come up, reconcile with them ready.
  await reconcile();
  kube.settleDeployments();
  await reconcile();
  return { kube, clock, podMetrics, metrics, reconcile, rrc, routeWeights, condition };
}

describe('a rollout, reconciled against the fake apiserver', () => {
  test('steps move the route\'s weights as their gates pass, then the canary is promoted; Events and the metric say so', async () => {
    const ctx = await setup({ canary: 'v2-gemma', steps: [10, 50], stepInterval: '1m', minRequests: 20, analysis: { maxErrorRatio: 0.05, maxP99Ms: 500 } });
    assert.deepEqual(ctx.rrc().status?.rollout && [ctx.rrc().status!.rollout!.phase, ctx.rrc().status!.rollout!.weight], ['Progressing', 10]);
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-gemma=10', 'rerankers-v2-m3=90']);
    assert.equal(ctx.condition('Progressing')?.reason, 'RolloutProgressing');
    assert.ok(ctx.kube.events.some((e) => e.reason === 'RolloutStarted'));

    ctx.podMetrics.serve('v2-gemma', 30);
    ctx.podMetrics.serve('v2-m3', 270);
    await ctx.clock.advance(60_000);
    const result = await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 1);
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-gemma=50', 'rerankers-v2-m3=50']);
    assert.deepEqual(ctx.rrc().status?.rollout?.lastAnalysis, { errorRatio: { value: 0, threshold: 0.05, ok: true }, p99Ms: { value: 24.9, threshold: 500, ok: true } });
    assert.deepEqual(result, { outcome: 'requeue', afterMs: 5000 });

    ctx.podMetrics.serve('v2-gemma', 30);
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.phase, 'Succeeded');
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-gemma=100']);
    assert.ok(ctx.kube.events.some((e) => e.reason === 'RolloutPromoted'));
    assert.match(await ctx.metrics.registry.metrics(), /rerank_operator_rollouts_total\{namespace="rag",name="rerankers",result="promoted"\} 1/);
    assert.match(await ctx.metrics.registry.metrics(), /rerank_operator_rollout_phase\{namespace="rag",name="rerankers",canary="v2-gemma",phase="Succeeded"\} 1/);

    // After keepStableFor (10m) the stable version's pods go; the canary is the default in the rendered config.
    await ctx.clock.advance(10 * 60_000);
    await ctx.reconcile();
    assert.equal(ctx.kube.find('Deployment', 'rag', 'rerankers-v2-m3'), undefined);
    const config = ctx.kube.find('ConfigMap', 'rag', 'rerankers-config')!.data!['config.yaml']!;
    assert.match(config, /defaultVersion: v2-gemma/);
  });

  test('a failing gate rolls back: no weight for the canary, Degraded names the gate and its figures, a Warning Event', async () => {
    const ctx = await setup({ canary: 'v2-gemma', steps: [10, 50], stepInterval: '1m', minRequests: 20, analysis: { maxErrorRatio: 0.05 } });
    ctx.podMetrics.serve('v2-gemma', 40, { errors: 8 });
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.phase, 'RolledBack');
    assert.deepEqual(ctx.routeWeights(), ['rerankers-v2-m3=100']);
    assert.equal(ctx.condition('Degraded')?.reason, 'RolloutRolledBack');
    assert.match(ctx.condition('Degraded')?.message ?? '', /errorRatio 0\.2 > 0\.05/);
    assert.ok(ctx.kube.events.some((e) => e.type === 'Warning' && e.reason === 'RolloutRolledBack'));
    assert.match(await ctx.metrics.registry.metrics(), /rerank_operator_rollouts_total\{namespace="rag",name="rerankers",result="rolledBack"\} 1/);
  });

  test('the next look comes when the step ends, however long the reconcile that started the step took', async () => {
    const ctx = await setup({ canary: 'v2-gemma', steps: [10, 50], stepInterval: '3s', minRequests: 1 });
    ctx.podMetrics.serve('v2-gemma', 5);
    await ctx.clock.advance(3000);
    // This reconcile decides at once, then takes 1.5 s (its scrapes) before it is done: step 2 started 1.5 s ago.
    let slow = true;
    ctx.podMetrics.delay = async () => {
      if (!slow) return;
      slow = false;
      await ctx.clock.advance(1500);
    };
    const result = await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 1);
    assert.deepEqual(result, { outcome: 'requeue', afterMs: 1500 });
  });

  test('too few requests: the step waits and says so; unreadable canary pods are named', async () => {
    const ctx = await setup({ canary: 'v2-gemma', steps: [10, 50], stepInterval: '1m', minRequests: 20 });
    ctx.podMetrics.serve('v2-gemma', 5);
    await ctx.clock.advance(60_000);
    assert.deepEqual(await ctx.reconcile(), { outcome: 'requeue', afterMs: 5000 });
    assert.match(ctx.rrc().status?.rollout?.message ?? '', /waits for requests: the canary answered 5 of the 20 needed/);
    ctx.podMetrics.unreachable.add('rerankers-v2-gemma-0');
    await ctx.reconcile();
    assert.match(ctx.rrc().status?.rollout?.message ?? '', /no canary pod answered \/metrics \(rerankers-v2-gemma-0: connect ECONNREFUSED\)/);
    // Every failed read is counted, not only the ones that leave a step unjudged.
    assert.match(await ctx.metrics.registry.metrics(), /rerank_operator_rollout_read_failures_total\{kind="pod metrics"\} 1/);
  });

  test('kubectl annotate rerank.dev/rollout=pause pauses and the annotation is removed; an unknown command is refused with a Warning', async () => {
    const ctx = await setup({ canary: 'v2-gemma', steps: [10, 50], stepInterval: '1m', minRequests: 1 });
    ctx.kube.edit('RerankerConfig', 'rag', 'rerankers', (o) => (o.metadata.annotations = { [ROLLOUT_ANNOTATION]: 'pause' }));
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.phase, 'Paused');
    assert.equal(ctx.rrc().metadata.annotations?.[ROLLOUT_ANNOTATION], undefined);
    ctx.podMetrics.serve('v2-gemma', 30);
    await ctx.clock.advance(120_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.phase, 'Paused', 'a paused rollout is not judged');
    ctx.kube.edit('RerankerConfig', 'rag', 'rerankers', (o) => (o.metadata.annotations = { [ROLLOUT_ANNOTATION]: 'go' }));
    await ctx.reconcile();
    assert.equal(ctx.rrc().metadata.annotations?.[ROLLOUT_ANNOTATION], undefined);
    assert.ok(ctx.kube.events.some((e) => e.type === 'Warning' && e.reason === 'RolloutCommandUnknown'));
  });
});
