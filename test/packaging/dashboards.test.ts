import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { parsePromQL, registeredNames } from './promql.ts';

const dir = new URL('../../charts/rerank-operator/dashboards/', import.meta.url);

interface Target { expr?: string }
interface Panel { id: number; title: string; type: string; targets?: Target[]; panels?: Panel[] }
interface Dashboard { uid: string; title: string; panels: Panel[]; templating?: { list: Array<{ query?: string | { query?: string } }> } }

/** A panel query as Prometheus receives it: Grafana's interval variables filled in ($namespace and the like sit in label matcher strings). */
function asSent(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');
}

/** Metric names a panel query reads, from Prometheus' own grammar. */
const metricNames = (expr: string) => parsePromQL(asSent(expr)).metrics;

function dashboards(): Array<[string, Dashboard]> {
  return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => [f, JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as Dashboard]);
}

function expressions(dashboard: Dashboard): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const visit = (panels: Panel[]) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) if (target.expr) out.push([panel.title, target.expr]);
      visit(panel.panels ?? []);
    }
  };
  visit(dashboard.panels);
  for (const variable of dashboard.templating?.list ?? []) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    const inner = query && /^label_values\((\w+)/.exec(query);
    if (inner) out.push(['variable', inner[1]!]);
  }
  return out;
}

describe('Grafana dashboards', () => {
  test('metric names come from the parsed query: label values, grouping labels and functions are not metrics', () => {
    assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, version) (rate(http_request_duration_seconds_bucket{route=~"/rerank.*", status!~"2.."}[$__rate_interval])))'), ['http_request_duration_seconds']);
    assert.deepEqual(metricNames('sum(rate(a_total[5m])) / ignoring (version) group_left sum(b_sum) or vector(0)'), ['a_total', 'b']);
    assert.notDeepEqual(parsePromQL('sum(rate(a_total[5m])').errors, [], 'an unclosed parenthesis is an error');
  });

  test('there are Serving and Rollout dashboards, each with unique uid, panel ids and queries', () => {
    const all = dashboards();
    assert.deepEqual(all.map(([f]) => f).sort(), ['rollout.json', 'serving.json']);
    assert.equal(new Set(all.map(([, d]) => d.uid)).size, all.length);
    for (const [file, dashboard] of all) {
      const ids = dashboard.panels.map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length, `${file}: duplicate panel ids`);
      for (const panel of dashboard.panels) assert.ok((panel.targets ?? []).length > 0, `${file}: ${panel.title} has no query`);
    }
  });

  test('every panel query parses as PromQL, and every metric it reads is one the server, router or operator registers', async () => {
    const known = await registeredNames();
    const unknown: string[] = [];
    for (const [file, dashboard] of dashboards()) {
      for (const [title, expr] of expressions(dashboard)) {
        assert.deepEqual(parsePromQL(asSent(expr)).errors, [], `${file}: ${title}: ${expr} does not parse`);
        const names = metricNames(expr);
        assert.ok(names.length > 0, `${file}: ${title}: no metric in ${expr}`);
        for (const name of names) if (!known.has(name)) unknown.push(`${file}: ${title}: ${name}`);
      }
    }
    assert.deepEqual(unknown, []);
  });

  test('the Serving dashboard covers what the server exports; Rollout covers the operator', async () => {
    const used = (file: string) => new Set(expressions(dashboards().find(([f]) => f === file)![1]).flatMap(([, e]) => metricNames(e)));
    const serving = used('serving.json');
    for (const name of ['http_request_duration_seconds', 'reranker_inference_duration_seconds', 'reranker_requests_total', 'reranker_queue_depth', 'reranker_batch_size', 'reranker_batch_tokens', 'reranker_tokens_total', 'reranker_batch_padding_ratio', 'reranker_gpu_memory_used_bytes', 'reranker_fallback_count_total', 'reranker_config_reloads_total', 'reranker_config_info']) {
      assert.ok(serving.has(name), `serving.json does not show ${name}`);
    }
    const rollout = used('rollout.json');
    const operator = (await new OperatorMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    for (const name of [...operator, 'reranker_router_requests_total', 'reranker_version_info', 'reranker_config_info']) assert.ok(rollout.has(name), `rollout.json does not show ${name}`);
  });
});
