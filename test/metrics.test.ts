import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Gauge, type Metric } from 'prom-client';
import { ServerMetrics } from '../server/metrics.ts';

/** Records one sample under `labels`, whatever kind of metric it is. */
function record(metric: Metric, labels: Record<string, string>): void {
  if (metric instanceof Counter) metric.inc(labels);
  else if (metric instanceof Gauge) metric.set(labels, 1);
  else metric.observe(labels, 1);
}

/** Every metric of the registry that has a `version` label, with its label names. */
function perVersionMetrics(metrics: ServerMetrics): { metric: Metric; labelNames: string[] }[] {
  return metrics.registry
    .getMetricsAsArray()
    .map(({ name }) => metrics.registry.getSingleMetric(name) as Metric)
    .map((metric) => ({ metric, labelNames: (metric as unknown as { labelNames: string[] }).labelNames }))
    .filter(({ labelNames }) => labelNames.includes('version'));
}

/** Gives every per-version metric a series for `version` (two, where it has other labels). */
function useEveryPerVersionMetric(metrics: ServerMetrics, version: string): void {
  for (const { metric, labelNames } of perVersionMetrics(metrics)) {
    for (const other of ['x', 'y']) {
      const labels = Object.fromEntries(labelNames.map((name) => [name, name === 'version' ? version : other]));
      record(metric, labels);
    }
  }
}

const seriesOf = (text: string, version: string) => text.split('\n').filter((line) => line.includes(`version="${version}"`));

describe('ServerMetrics.forgetVersion', () => {
  test('removes every series of the version from every per-version metric, and no other version', async () => {
    const metrics = new ServerMetrics({ defaultMetrics: false });
    // A per-version metric nobody listed anywhere: forgetVersion must find it too.
    const extra = new Gauge({ name: 'test_extra_per_version', help: 'x', labelNames: ['version', 'kind'], registers: [metrics.registry] });
    useEveryPerVersionMetric(metrics, 'gone');
    useEveryPerVersionMetric(metrics, 'kept');

    const before = await metrics.registry.metrics();
    const named = new Set(seriesOf(before, 'gone').map((line) => line.split(/[{ ]/)[0]));
    for (const name of ['reranker_requests_total', 'reranker_request_duration_seconds_bucket', 'reranker_version_info', 'reranker_queue_depth', 'test_extra_per_version']) {
      assert.ok(named.has(name), `${name} has a series for the version before`);
    }
    assert.ok(perVersionMetrics(metrics).length >= 15, 'every per-version metric of the server was used');

    await metrics.forgetVersion('gone');

    const after = await metrics.registry.metrics();
    assert.deepEqual(seriesOf(after, 'gone'), []);
    assert.deepEqual(seriesOf(after, 'kept'), seriesOf(before, 'kept'), "another version's series stay as they were");
    assert.equal((await extra.get()).values.length, 2);
  });

  test("a version's shadow comparisons go with it, as `from` or as `to`; other pairs stay", async () => {
    const metrics = new ServerMetrics({ defaultMetrics: false });
    for (const [from, to] of [['gone', 'kept'], ['kept', 'gone'], ['kept', 'other']] as const) {
      metrics.shadowComparisons.inc({ from, to });
      metrics.shadowTopKOverlap.observe({ from, to }, 1);
      metrics.shadowKendallTau.observe({ from, to }, 1);
      metrics.shadowFailures.inc({ from, to, reason: 'saturated' });
    }
    await metrics.forgetVersion('gone');
    const after = await metrics.registry.metrics();
    const shadowLines = after.split('\n').filter((line) => line.startsWith('reranker_shadow_'));
    assert.deepEqual(shadowLines.filter((line) => line.includes('"gone"')), []);
    assert.ok(shadowLines.some((line) => line.startsWith('reranker_shadow_agreement_comparisons_total{from="kept",to="other"} 1')));
    assert.ok(shadowLines.some((line) => line.startsWith('reranker_shadow_failures_total{from="kept",to="other",reason="saturated"} 1')));
  });

  test('a version with no series is a no-op; metrics without a version label are untouched', async () => {
    const metrics = new ServerMetrics({ defaultMetrics: false });
    metrics.configReloads.inc({ result: 'ok' });
    metrics.httpRequestDuration.observe({ method: 'POST', route: '/rerank', status: '200' }, 0.1);
    const before = await metrics.registry.metrics();
    await metrics.forgetVersion('never-seen');
    assert.equal(await metrics.registry.metrics(), before);
  });
});
