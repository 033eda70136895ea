import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ServerMetrics } from '../../server/metrics.ts';
import { parseExposition } from '../../operator/rollout/exposition.ts';
import { judge } from '../../operator/rollout/analysis.ts';
import type { AnalysisSpec } from '../../operator/crd/rollout-spec.ts';
import { quantile, ROLLOUT_METRICS, stepFigures, versionFigures, type PodScrape } from '../../operator/rollout/figures.ts';

const scrape = async (pod: string, version: string, metrics: ServerMetrics): Promise<PodScrape> => ({
  pod,
  version,
  samples: parseExposition(await metrics.registry.metrics()),
});

describe('rollout figures from the pods\' /metrics', () => {
  test('the exposition parser reads labels with escapes, +Inf, NaN and timestamps, and names a bad line', () => {
    const samples = parseExposition(
      [
        '# HELP x_total help',
        '# TYPE x_total counter',
        'x_total{path="/a\\"b\\\\c",msg="line\\nnext"} 3 1700000000000',
        'h_bucket{le="+Inf"} +Inf',
        'g NaN',
        'prom_client_gauge_without_data Nan',
        'neg -inf',
        'plain 1e3',
        '',
      ].join('\n'),
    );
    assert.deepEqual(samples[0], { name: 'x_total', labels: { path: '/a"b\\c', msg: 'line\nnext' }, value: 3 });
    assert.equal(samples[1]!.value, Infinity);
    assert.ok(Number.isNaN(samples[2]!.value));
    assert.ok(Number.isNaN(samples[3]!.value), "prom-client's Nan");
    assert.equal(samples[4]!.value, -Infinity);
    assert.equal(samples[5]!.value, 1000);
    assert.throws(() => parseExposition('ok 1\nbad{le="1" 2'), /metrics line 2: labels not closed/);
    assert.throws(() => parseExposition('x one'), /"one" is not a sample value/);
  });

  test('every metric the figures read is one the server exports', async () => {
    const exported = (await new ServerMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    for (const name of Object.values(ROLLOUT_METRICS)) assert.ok(exported.includes(name), name);
  });

  test('requests, 5xx, p99, fallbacks and load failures of a window: growth between two scrapes, summed over a version\'s pods', async () => {
    const canaryPod = new ServerMetrics({ defaultMetrics: false });
    const stablePod = new ServerMetrics({ defaultMetrics: false });
    // Before the window: traffic that must not count.
    canaryPod.requests.inc({ version: 'v2', status: '500' }, 50);
    canaryPod.requestDuration.observe({ version: 'v2' }, 9);
    const baseline = [await scrape('canary-0', 'v2', canaryPod), await scrape('stable-0', 'v1', stablePod)];

    for (let i = 0; i < 98; i += 1) canaryPod.requestDuration.observe({ version: 'v2' }, 0.02);
    canaryPod.requestDuration.observe({ version: 'v2' }, 0.4);
    canaryPod.requestDuration.observe({ version: 'v2' }, 0.4);
    canaryPod.requests.inc({ version: 'v2', status: '200' }, 97);
    canaryPod.requests.inc({ version: 'v2', status: '503' }, 3);
    canaryPod.fallbacks.inc({ version: 'v2' });
    for (let i = 0; i < 10; i += 1) stablePod.requestDuration.observe({ version: 'v1' }, 0.03);
    stablePod.requests.inc({ version: 'v1', status: '200' }, 10);
    // A pod that came up during the window: all its counts are the window's.
    const newPod = new ServerMetrics({ defaultMetrics: false });
    newPod.requests.inc({ version: 'v2', status: '200' }, 5);
    newPod.versionLoadFailures.inc({ version: 'v2' }, 2);

    const now = [await scrape('canary-0', 'v2', canaryPod), await scrape('stable-0', 'v1', stablePod), await scrape('canary-1', 'v2', newPod)];
    const figures = stepFigures(baseline, now, 'v2', 'v1');
    assert.deepEqual({ ...figures.canary, p99Ms: undefined }, { requests: 105, errors: 3, mirrored: 0, mirroredErrors: 0, p99Ms: undefined, fallbacks: 1, loadFailures: 2 });
    // 100 observations: the 99th falls in the (0.25, 0.5] bucket, half-way through its two: 0.25 + 0.25 × 1/2.
    assert.equal(figures.canary.p99Ms, 375);
    assert.equal(figures.stable.requests, 10);
    assert.ok(figures.stable.p99Ms! > 25 && figures.stable.p99Ms! <= 50, String(figures.stable.p99Ms));
  });

  test('a version\'s 5xx are its own series; what a pod counted under version "none" (refused before any version was chosen) is no version\'s', async () => {
    const canaryPod = new ServerMetrics({ defaultMetrics: false });
    const baseline = [await scrape('canary-0', 'v2', canaryPod)];
    // What server/http/apis/pipeline.ts counts: a model that throws is a 500 of its version (versionOfFailure).
    canaryPod.requests.inc({ version: 'v2', status: '500' }, 8);
    canaryPod.requests.inc({ version: 'v2', status: '200' }, 2);
    canaryPod.requests.inc({ version: 'none', status: '400' }, 3);
    const figures = stepFigures(baseline, [await scrape('canary-0', 'v2', canaryPod)], 'v2', 'v1');
    assert.deepEqual([figures.canary.requests, figures.canary.errors], [10, 8]);
  });

  test('mirrored copies the canary answered are its executions (error ratio, p99) but not its traffic (requests, minRequests)', async () => {
    const canaryPod = new ServerMetrics({ defaultMetrics: false });
    const baseline = [await scrape('canary-0', 'v2', canaryPod)];
    // What server/http/apis/pipeline.ts counts: 4 client requests (fast, fine), 36 mirrored copies, 9 of them 500s, slow.
    canaryPod.requests.inc({ version: 'v2', status: '200' }, 4);
    for (let i = 0; i < 4; i += 1) canaryPod.requestDuration.observe({ version: 'v2' }, 0.01);
    canaryPod.mirroredRequests.inc({ version: 'v2', status: '200' }, 27);
    canaryPod.mirroredRequests.inc({ version: 'v2', status: '500' }, 9);
    for (let i = 0; i < 27; i += 1) canaryPod.mirroredRequestDuration.observe({ version: 'v2' }, 0.4);
    const figures = stepFigures(baseline, [await scrape('canary-0', 'v2', canaryPod)], 'v2', 'v1');
    assert.deepEqual([figures.canary.requests, figures.canary.errors, figures.canary.mirrored, figures.canary.mirroredErrors], [4, 0, 36, 9]);
    assert.ok(figures.canary.p99Ms! > 250 && figures.canary.p99Ms! <= 500, `p99 of both histograms: ${figures.canary.p99Ms}`);
    const { gates } = judge({ maxErrorRatio: 0.1, maxP99Ms: 100 } as AnalysisSpec, figures);
    assert.deepEqual(gates.errorRatio, { value: 0.225, threshold: 0.1, ok: false });
    assert.equal(gates.p99Ms?.ok, false);
  });

  test('a pod whose counters went down restarted: everything it counts now is new', async () => {
    const before = new ServerMetrics({ defaultMetrics: false });
    before.requests.inc({ version: 'v2', status: '200' }, 500);
    const restarted = new ServerMetrics({ defaultMetrics: false });
    restarted.requests.inc({ version: 'v2', status: '200' }, 7);
    assert.equal(versionFigures([await scrape('p', 'v2', before)], [await scrape('p', 'v2', restarted)], 'v2').requests, 7);
  });

  test('quantile follows histogram_quantile: linear within a bucket, the highest finite bound in +Inf, undefined when empty', () => {
    const buckets = new Map([[0.1, 50], [0.2, 100], [Infinity, 100]]);
    assert.equal(quantile(0.5, buckets), 0.1);
    assert.ok(Math.abs(quantile(0.75, buckets)! - 0.15) < 1e-12);
    assert.equal(quantile(0.99, new Map([[0.1, 0], [Infinity, 10]])), 0.1);
    assert.equal(quantile(0.99, new Map([[0.1, 0], [Infinity, 0]])), undefined);
  });
});
