/* eslint-disable @typescript-eslint/no-explicit-any -- tests read deep into stored objects */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { load } from 'js-yaml';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import { parseExposition, type Sample } from '../../operator/rollout/exposition.ts';
import { AGREEMENT_METRICS, agreementFigures, ROUTER_POD, type PodScrape } from '../../operator/rollout/figures.ts';
import type { PodMetricsReader } from '../../operator/rollout/pod-metrics.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { RouterMetrics } from '../../server/router/metrics.ts';
import { FakeClock } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { IMAGES, readExample } from './support/examples.ts';

const pair = { from: 'v1', to: 'v2' };

const routerScrape = async (pod: string, metrics: RouterMetrics): Promise<PodScrape> => ({ pod, version: ROUTER_POD, samples: parseExposition(await metrics.registry.metrics()) });

/** One mirrored request compared on this router. */
function compared(metrics: RouterMetrics, overlap: number, tau?: number, labels = pair): void {
  metrics.agreementComparisons.inc(labels);
  metrics.agreementTopKOverlap.observe(labels, overlap);
  if (tau !== undefined) metrics.agreementKendallTau.observe(labels, tau);
}

describe("ranking agreement from the routers' /metrics", () => {
  test('every series the figures read is one the router exports', async () => {
    const exported = (await new RouterMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    for (const name of Object.values(AGREEMENT_METRICS)) assert.ok(exported.includes(name), name);
  });

  test("a window's comparisons and mean overlap and tau: growth between two scrapes, summed over the routers, other pairs apart; a restarted router counts whole", async () => {
    const a = new RouterMetrics({ defaultMetrics: false });
    const b = new RouterMetrics({ defaultMetrics: false });
    for (let i = 0; i < 3; i += 1) compared(a, 0.1, -0.9); // before the window
    const baseline = [await routerScrape('router-a', a), await routerScrape('router-b', b)];
    assert.deepEqual(agreementFigures(baseline, baseline, 'v1', 'v2'), { comparisons: 0 }, 'no comparisons: the gates have no data');

    compared(a, 1, 1);
    compared(a, 0.5, -0.5);
    compared(b, 0.6); // tau undefined for this one (one document in common)
    compared(b, 0, 0, { from: 'v1', to: 'v3' }); // another pair
    const figures = agreementFigures(baseline, [await routerScrape('router-a', a), await routerScrape('router-b', b)], 'v1', 'v2');
    assert.equal(figures.comparisons, 3);
    assert.ok(Math.abs(figures.topKOverlap! - 2.1 / 3) < 1e-9);
    // The tau sum fell below its baseline (a negative tau) without a restart: still the window's growth.
    assert.ok(Math.abs(figures.kendallTau! - 0.25) < 1e-9);

    // Router a restarted after its baseline (its counts fell below it): all of them are new.
    const restarted = new RouterMetrics({ defaultMetrics: false });
    compared(restarted, 0.2, -0.2);
    const afterRestart = agreementFigures(baseline, [await routerScrape('router-a', restarted)], 'v1', 'v2');
    assert.deepEqual([afterRestart.comparisons, afterRestart.topKOverlap, afterRestart.kendallTau], [1, 0.2, -0.2]);
  });
});

/** Server pods' /metrics are ServerMetrics, router pods' RouterMetrics, one registry per pod. */
class FakeMetrics implements PodMetricsReader {
  readonly servers = new Map<string, ServerMetrics>();
  readonly routers = new Map<string, RouterMetrics>();
  server(pod: string): ServerMetrics {
    if (!this.servers.has(pod)) this.servers.set(pod, new ServerMetrics({ defaultMetrics: false }));
    return this.servers.get(pod)!;
  }
  router(pod: string): RouterMetrics {
    if (!this.routers.has(pod)) this.routers.set(pod, new RouterMetrics({ defaultMetrics: false }));
    return this.routers.get(pod)!;
  }
  async read(pod: KubeObject): Promise<Sample[]> {
    const name = pod.metadata.name;
    const registry = pod.metadata.labels?.['app.kubernetes.io/component'] === 'router' ? this.router(name).registry : this.server(name).registry;
    return parseExposition(await registry.metrics());
  }
  serve(version: string, n: number): void {
    const metrics = this.server(`rerankers-${version}-0`);
    metrics.requests.inc({ version, status: '200' }, n);
    for (let i = 0; i < n; i += 1) metrics.requestDuration.observe({ version }, 0.02);
  }
}

async function setup(mode: 'router' | 'gateway', analysis: Record<string, unknown>) {
  const kube = new FakeKube();
  const clock = new FakeClock();
  const podMetrics = new FakeMetrics();
  const reconciler = new Reconciler({ kube, podConfig: new FakePodConfigReader(kube), podMetrics, clock, images: IMAGES });
  const seed = readExample('seed') as any;
  seed.spec.routing = mode === 'router' ? { mode: 'router' } : seed.spec.routing;
  seed.spec.rollout = { canary: 'v2-gemma', steps: [10, 50], stepInterval: '1m', minRequests: 20, analysis };
  await kube.create(seed as KubeObject);
  const rrc = () => kube.find<KubeObject & RerankerConfigObject>('RerankerConfig', 'rag', 'rerankers')!;
  const reconcile = () => reconciler.reconcile({ namespace: 'rag', name: 'rerankers' });
  const mirror = () => (load((kube.find('ConfigMap', 'rag', 'rerankers-config') as any).data['router.yaml']) as any).router.mirror;
  await reconcile();
  kube.settleDeployments();
  await reconcile();
  return { kube, clock, podMetrics, reconcile, rrc, mirror };
}

describe('a rollout with ranking gates, reconciled against the fake apiserver', () => {
  test('router mode: router.yaml mirrors stable to the canary while a step runs; the routers\' comparisons judge it, and a disagreeing canary is rolled back', async () => {
    const ctx = await setup('router', { minTopKOverlap: 0.8, minKendallTau: 0.5, mirrorFraction: 0.25 });
    assert.equal(ctx.rrc().status?.rollout?.phase, 'Progressing');
    assert.deepEqual(ctx.mirror(), { from: 'v2-m3', to: 'v2-gemma', fraction: 0.25, topK: 10, maxInFlight: 16 });

    ctx.podMetrics.serve('v2-gemma', 30);
    ctx.podMetrics.serve('v2-m3', 270);
    const routers = ['rerankers-router-0', 'rerankers-router-1'].map((pod) => ctx.podMetrics.router(pod));
    for (let i = 0; i < 10; i += 1) compared(routers[i % 2]!, 0.9, 0.8, { from: 'v2-m3', to: 'v2-gemma' });
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 1, 'agreement above both gates: the next step');
    assert.deepEqual(ctx.rrc().status?.rollout?.lastAnalysis, {
      topKOverlap: { value: 0.9, threshold: 0.8, ok: true },
      kendallTau: { value: 0.8, threshold: 0.5, ok: true },
    });
    assert.equal(ctx.mirror()?.to, 'v2-gemma', 'still mirrored in the next step');

    ctx.podMetrics.serve('v2-gemma', 150);
    ctx.podMetrics.serve('v2-m3', 150);
    for (let i = 0; i < 10; i += 1) compared(routers[i % 2]!, 0.3, -0.4, { from: 'v2-m3', to: 'v2-gemma' });
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    const rollout = ctx.rrc().status?.rollout;
    assert.equal(rollout?.phase, 'RolledBack');
    assert.deepEqual(rollout?.lastAnalysis?.topKOverlap, { value: 0.3, threshold: 0.8, ok: false });
    assert.deepEqual(rollout?.lastAnalysis?.kendallTau, { value: -0.4, threshold: 0.5, ok: false });
    assert.equal(ctx.mirror(), undefined, 'nothing is mirrored once the rollout is over');
  });

  test('gateway mode: nothing mirrors, the ranking gates have no data and pass, the others judge', async () => {
    const ctx = await setup('gateway', { minTopKOverlap: 0.8, maxErrorRatio: 0.05 });
    assert.equal(ctx.mirror(), undefined);
    ctx.podMetrics.serve('v2-gemma', 30);
    ctx.podMetrics.serve('v2-m3', 270);
    await ctx.clock.advance(60_000);
    await ctx.reconcile();
    assert.equal(ctx.rrc().status?.rollout?.step, 1);
    assert.deepEqual(ctx.rrc().status?.rollout?.lastAnalysis, { errorRatio: { value: 0, threshold: 0.05, ok: true }, topKOverlap: { threshold: 0.8, ok: true } });
  });

  test('router mode without a ranking gate: no mirror (copies would cost the canary for nothing)', async () => {
    const ctx = await setup('router', { maxErrorRatio: 0.05 });
    assert.equal(ctx.rrc().status?.rollout?.phase, 'Progressing');
    assert.equal(ctx.mirror(), undefined);
  });
});
