import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { load } from 'js-yaml';
import { POD_METRICS } from '../../operator/plan/scaling.ts';
import { parsePromQL, registeredNames } from './promql.ts';

const file = fileURLToPath(new URL('../../charts/rerank-operator/prometheus-adapter-values.yaml', import.meta.url));

interface AdapterRule {
  seriesQuery: string;
  resources?: { overrides?: Record<string, { resource: string }> };
  name?: { matches?: string; as?: string };
  metricsQuery: string;
}

const rules = (load(readFileSync(file, 'utf8')) as { rules: { custom: AdapterRule[] } }).rules.custom;

/** What prometheus-adapter puts into a metricsQuery for an HPA's Pods metric: its Go template filled in. */
function filled(metricsQuery: string, series: string): string {
  return metricsQuery
    .replaceAll('<<.Series>>', series)
    .replaceAll('<<.LabelMatchers>>', 'namespace="rag",pod=~"rerankers-v2-m3-5d8f7c9b6-abcde|rerankers-v2-m3-5d8f7c9b6-fghij"')
    .replaceAll('<<.GroupBy>>', 'pod');
}

test('prometheus-adapter rules: one per Pods metric the operator\'s HPAs ask for, served under that name, per pod and namespace', () => {
  for (const [metric, name] of Object.entries(POD_METRICS)) {
    const matching = rules.filter((rule) => parsePromQL(rule.seriesQuery).metrics.includes(name));
    assert.equal(matching.length, 1, `metric ${metric}: one rule for ${name}`);
    const rule = matching[0]!;
    // Without a name rule the adapter serves the series under its own name: the name the HPA asks for.
    assert.equal(rule.name, undefined, `${name}: renamed by the adapter, so the HPA's ${name} would not be found`);
    assert.deepEqual(rule.resources?.overrides, { namespace: { resource: 'namespace' }, pod: { resource: 'pod' } });
    assert.match(rule.metricsQuery, /<<\.Series>>\{<<\.LabelMatchers>>\}/);
    assert.match(rule.metricsQuery, /by \(<<\.GroupBy>>\)/);
  }
});

test('prometheus-adapter rules parse as PromQL and read only gauges the server exports', async () => {
  const registered = await registeredNames();
  assert.ok(rules.length > 0);
  for (const rule of rules) {
    const series = parsePromQL(rule.seriesQuery);
    assert.deepEqual(series.errors, [], `seriesQuery does not parse: ${rule.seriesQuery}`);
    assert.equal(series.metrics.length, 1, rule.seriesQuery);
    const name = series.metrics[0]!;
    assert.ok(registered.has(name), `${name} is exported by no component`);
    const query = filled(rule.metricsQuery, name);
    const parsed = parsePromQL(query);
    assert.deepEqual(parsed.errors, [], `metricsQuery does not parse once filled in: ${query}`);
    assert.deepEqual(parsed.metrics, [name]);
  }
});
