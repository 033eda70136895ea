import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { load } from 'js-yaml';

const root = new URL('../../', import.meta.url);
const chart = new URL('charts/rerank-operator/', root);
const read = (url: URL) => readFileSync(url, 'utf8');

type Schema = {
  type?: string;
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  required?: string[];
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  pattern?: string;
  items?: Schema;
  $ref?: string;
  definitions?: Record<string, Schema>;
};

/** The subset of JSON Schema draft-07 that values.schema.json uses; returns the paths that fail. */
function validate(schema: Schema, value: unknown, rootSchema: Schema, path = '$'): string[] {
  if (schema.$ref) return validate(rootSchema.definitions![schema.$ref.replace('#/definitions/', '')]!, value, rootSchema, path);
  const errors: string[] = [];
  const kind = value === null ? 'null' : Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value;
  if (schema.type && !(schema.type === kind || (schema.type === 'number' && kind === 'integer'))) return [`${path}: ${kind}, not ${schema.type}`];
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${path}: not one of ${schema.enum.join(', ')}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${path}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${path}: above ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${path}: shorter than ${schema.minLength}`);
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) errors.push(`${path}: does not match ${schema.pattern}`);
  }
  if (Array.isArray(value) && schema.items) value.forEach((item, i) => errors.push(...validate(schema.items!, item, rootSchema, `${path}[${i}]`)));
  if (kind === 'object') {
    const object = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in object)) errors.push(`${path}.${key}: required`);
    for (const [key, child] of Object.entries(object)) {
      const sub = schema.properties?.[key];
      if (sub) errors.push(...validate(sub, child, rootSchema, `${path}.${key}`));
      else if (schema.additionalProperties === false) errors.push(`${path}.${key}: unknown key`);
      else if (typeof schema.additionalProperties === 'object') errors.push(...validate(schema.additionalProperties, child, rootSchema, `${path}.${key}`));
    }
  }
  return errors;
}

const schema = JSON.parse(read(new URL('values.schema.json', chart))) as Schema;
const values = load(read(new URL('values.yaml', chart))) as Record<string, unknown>;
const withValue = (path: string, value: unknown) => {
  const copy = structuredClone(values);
  const keys = path.split('.');
  let node = copy as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) node = node[key] as Record<string, unknown>;
  node[keys.at(-1)!] = value;
  return copy;
};

describe('Helm chart', () => {
  test('Chart.yaml is apiVersion v2 with a name and SemVer versions', () => {
    const meta = load(read(new URL('Chart.yaml', chart))) as Record<string, string>;
    assert.equal(meta.apiVersion, 'v2');
    assert.equal(meta.name, 'rerank-operator');
    assert.match(meta.version!, /^\d+\.\d+\.\d+/);
    const pkg = JSON.parse(read(new URL('package.json', root))) as { version: string };
    assert.equal(meta.appVersion, pkg.version, 'appVersion follows package.json');
  });

  test("the chart's CRD is crds/rerankerconfigs.rerank.dev.yaml byte for byte (copy it after regenerating)", () => {
    assert.deepEqual(readdirSync(new URL('crds/', chart)), ['rerankerconfigs.rerank.dev.yaml']);
    assert.equal(
      read(new URL('crds/rerankerconfigs.rerank.dev.yaml', chart)),
      read(new URL('crds/rerankerconfigs.rerank.dev.yaml', root)),
      'run: cp crds/rerankerconfigs.rerank.dev.yaml charts/rerank-operator/crds/',
    );
  });

  test('values.yaml passes values.schema.json', () => {
    assert.deepEqual(validate(schema, values, schema), []);
  });

  test('values.schema.json rejects wrong types, unknown keys and bad enums', () => {
    const bad: Array<[string, unknown]> = [
      ['replicaCount', 'two'],
      ['replicaCount', 1.5],
      ['watchNamespace', 3],
      ['leaderElection.enabled', 'yes'],
      ['serviceMonitor.enabled', 'true'],
      ['serviceMonitor.interval', 'often'],
      ['dashboards.enabled', 1],
      ['dashboards.labelValue', 1],
      ['images.server.repository', ['a']],
      ['images.pullPolicy', 'Sometimes'],
      ['logLevel', 'verbose'],
      ['metricsPort', 70000],
      ['service.port', '8081'],
      ['podLabels', { team: 1 }],
      ['imagePullSecrets', ['regcred']],
      ['rbac.create', null],
      ['rbac.secrets.enabled', 'yes'],
      ['rbac.secrets.namespaces', 'rag'],
      ['rbac.secrets.namespaces', ['Rag Team']],
      ['podMonitor.enabled', 'true'],
      ['podMonitor.interval', 'often'],
    ];
    for (const [path, value] of bad) assert.notDeepEqual(validate(schema, withValue(path, value), schema), [], `${path}=${JSON.stringify(value)} accepted`);
    assert.notDeepEqual(validate(schema, { ...values, replicas: 2 }, schema), [], 'unknown top-level key accepted');
  });

  test('every values.yaml key is documented by a comment', () => {
    const lines = read(new URL('values.yaml', chart)).split('\n');
    // Keys of the chart's own sections; the contents of Kubernetes objects (resources, security contexts) are Kubernetes'.
    const freeForm = new Set(['resources', 'podSecurityContext', 'securityContext']);
    let section = '';
    lines.forEach((line, i) => {
      const key = /^(\s*)([A-Za-z]\w*):(.*)$/.exec(line);
      if (!key) return;
      if (key[1] === '') section = key[2]!;
      if (key[3]!.trim() === '') return; // a section: its keys carry the comments
      if (freeForm.has(section) || key[1]!.length > 2 || /^\s*(repository|tag):/.test(line)) return;
      assert.match(lines[i - 1] ?? '', /^\s*#/, `values.yaml line ${i + 1} (${line.trim()}) has no comment above it`);
    });
  });

  test('the operator Deployment template: hardened, probes on /healthz and /readyz, the env operator/main.ts reads', () => {
    const deployment = read(new URL('templates/deployment.yaml', chart));
    for (const env of ['RERANK_SERVER_IMAGE', 'RERANK_SERVER_IMAGE_PULL_POLICY', 'RERANK_MODEL_FETCHER_IMAGE', 'WATCH_NAMESPACE', 'POD_NAMESPACE', 'LEADER_ELECT', 'OPERATOR_PORT', 'LOG_LEVEL']) {
      assert.ok(deployment.includes(`name: ${env}`), env);
      assert.ok(read(new URL('operator/main.ts', root)).includes(env), `operator/main.ts no longer reads ${env}`);
    }
    assert.match(deployment, /livenessProbe:\s+httpGet:\s+path: \/healthz/);
    assert.match(deployment, /readinessProbe:\s+httpGet:\s+path: \/readyz/);
    const security = (values.securityContext ?? {}) as Record<string, unknown>;
    assert.equal(security.runAsNonRoot, true);
    assert.equal(security.readOnlyRootFilesystem, true);
    assert.equal(security.allowPrivilegeEscalation, false);
    assert.deepEqual((security.capabilities as { drop: string[] }).drop, ['ALL']);
    assert.ok((values.resources as { requests?: object }).requests, 'resources.requests');
    assert.equal(values.metricsPort, 8081, "the operator's default OPERATOR_PORT");
  });

  test('templates: RBAC, Service, ServiceMonitor behind serviceMonitor.enabled, PodMonitor behind podMonitor.enabled, alerts behind alerts.enabled, dashboards behind dashboards.enabled, NOTES', () => {
    const templates = readdirSync(new URL('templates/', chart)).sort();
    assert.deepEqual(templates, [
      'NOTES.txt', '_helpers.tpl', 'dashboards.yaml', 'deployment.yaml', 'podmonitor.yaml', 'prometheusrule.yaml', 'rbac.yaml', 'service.yaml', 'serviceaccount.yaml', 'servicemonitor.yaml',
    ]);
    assert.match(read(new URL('templates/servicemonitor.yaml', chart)), /^\{\{- if \.Values\.serviceMonitor\.enabled \}\}/);
    assert.match(read(new URL('templates/podmonitor.yaml', chart)), /^\{\{- if \.Values\.podMonitor\.enabled \}\}/);
    assert.match(read(new URL('templates/prometheusrule.yaml', chart)), /^\{\{- if \.Values\.alerts\.enabled \}\}/);
    assert.match(read(new URL('templates/dashboards.yaml', chart)), /^\{\{- if \.Values\.dashboards\.enabled \}\}/);
    assert.deepEqual([values.dashboards].map((d) => [(d as Record<string, string>).label, (d as Record<string, string>).labelValue]), [['grafana_dashboard', '1']]);
    const notes = read(new URL('templates/NOTES.txt', chart));
    // The NOTES and the README's quick start walk the same path.
    const readme = read(new URL('../../README.md', chart));
    for (const line of ['kubectl apply -f crds/examples/quickstart.yaml', 'kubectl -n rag wait rrc/rerankers --for=condition=Ready --timeout=15m']) {
      assert.ok(notes.includes(line), `NOTES: ${line}`);
      assert.ok(readme.includes(line), `README: ${line}`);
    }
    assert.match(notes, /port-forward service\/rerankers 8080:8080/);
    assert.match(notes, /curl -s localhost:8080\/rerank/);
  });
});
