import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { CHART_DIR, canI, chartOperatorCredentials, describeAccess, helm, helmSkip, installChart, uninstallChart, type Access, type ChartRelease, type ManifestObject } from './chart.ts';
import { ROOT, clusterSkip, installCrd, startCluster, type Cluster } from './harness.ts';

/**
 * charts/rerank-operator installed with Helm into a real kube-apiserver: what it creates, what its
 * ServiceAccount may and may not do as the RBAC authorizer decides, what `helm uninstall` leaves, and
 * the namespaced install (watchNamespace). test/packaging/rbac.test.ts ties the rules to operator/'s calls.
 */

const LEASE = 'rerank-operator-leader';
const CRD_NAME = 'rerankerconfigs.rerank.dev';

interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }
const rulesFile = (file: string) => load(readFileSync(join(CHART_DIR, 'rbac', file), 'utf8')) as Rule[];

/** Every (group, resource, verb[, name]) a rules file grants, as questions in `namespace`. */
function granted(rules: Rule[], namespace: string): Access[] {
  return rules.flatMap((r) =>
    r.apiGroups.flatMap((group) =>
      r.resources.flatMap((res) => {
        const [resource, subresource] = res.split('/') as [string, string | undefined];
        return r.verbs.flatMap((verb) =>
          (r.resourceNames ?? [undefined]).map((name) => ({ verb, group, resource, namespace, ...(subresource ? { subresource } : {}), ...(name ? { name } : {}) })),
        );
      }),
    ),
  );
}

const CHILDREN: Array<[group: string, resource: string]> = [['', 'configmaps'], ['', 'services'], ['apps', 'deployments'], ['gateway.networking.k8s.io', 'httproutes']];

/**
 * What operator/ asks of the API server in a namespace it watches (kube-client.ts, reconciler.ts,
 * apply.ts, controller.ts, informer.ts): read RerankerConfigs and write their status; list, watch,
 * read (apply.ts, on a conflict), create and patch (server-side apply) and delete (prune) its
 * children; list, watch and patch (config-hash annotation) pods; write core/v1 Events; get a Secret by
 * name (a rollout's Prometheus credentials or CA, rollout/prometheus-target.ts; chart values rbac.secrets).
 */
function operatorNeeds(namespace: string | undefined): Access[] {
  const at = namespace ? { namespace } : {};
  return [
    ...['get', 'list', 'watch', 'patch'].map((verb) => ({ verb, group: 'rerank.dev', resource: 'rerankerconfigs', ...at })),
    { verb: 'patch', group: 'rerank.dev', resource: 'rerankerconfigs', subresource: 'status', ...at },
    ...CHILDREN.flatMap(([group, resource]) => ['get', 'list', 'watch', 'create', 'patch', 'delete'].map((verb) => ({ verb, group, resource, ...at }))),
    ...['list', 'watch', 'patch'].map((verb) => ({ verb, group: '', resource: 'pods', ...at })),
    { verb: 'create', group: '', resource: 'events', ...at },
    { verb: 'get', group: '', resource: 'secrets', name: 'prom-token', ...at },
  ];
}

/** The informers of an operator watching all namespaces list and watch cluster-wide. */
const clusterWideWatches = (): Access[] =>
  [['rerank.dev', 'rerankerconfigs'], ['', 'pods'], ...CHILDREN].flatMap(([group, resource]) => ['list', 'watch'].map((verb) => ({ verb, group: group!, resource: resource! })));

/** Leader election (leader.ts) in the release namespace: create the Lease, then get and update it by name. */
const leaderNeeds = (namespace: string): Access[] => [
  { verb: 'create', group: 'coordination.k8s.io', resource: 'leases', namespace },
  { verb: 'get', group: 'coordination.k8s.io', resource: 'leases', name: LEASE, namespace },
  { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', name: LEASE, namespace },
];

/** What the operator never does, so its ServiceAccount must not be able to. */
function mustNot(work: string, release: string): Access[] {
  return [
    ...['create', 'update', 'delete', 'deletecollection'].map((verb) => ({ verb, group: 'rerank.dev', resource: 'rerankerconfigs', namespace: work })),
    { verb: 'update', group: 'rerank.dev', resource: 'rerankerconfigs', subresource: 'status', namespace: work },
    // Secrets only by name (get): never listed or watched.
    ...['list', 'watch'].flatMap((verb) => [work, release].map((namespace) => ({ verb, group: '', resource: 'secrets', namespace }))),
    ...['create', 'delete', 'update'].map((verb) => ({ verb, group: '', resource: 'pods', namespace: work })),
    { verb: 'create', group: '', resource: 'pods', subresource: 'exec', namespace: work },
    { verb: 'update', group: 'apps', resource: 'deployments', namespace: work },
    { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', name: 'another-lease', namespace: release },
    { verb: 'get', group: 'coordination.k8s.io', resource: 'leases', name: 'another-lease', namespace: release },
    { verb: 'delete', group: 'coordination.k8s.io', resource: 'leases', name: LEASE, namespace: release },
    { verb: 'create', group: 'coordination.k8s.io', resource: 'leases', namespace: work },
    { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', name: LEASE, namespace: work },
    { verb: 'create', group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings' },
    { verb: 'create', group: 'rbac.authorization.k8s.io', resource: 'rolebindings', namespace: release },
    { verb: 'update', group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', name: CRD_NAME },
    { verb: 'create', group: 'events.k8s.io', resource: 'events', namespace: work },
  ];
}

async function expectAccess(kubeconfig: string, questions: Access[], allowed: boolean): Promise<void> {
  const answers = await canI(kubeconfig, questions);
  const wrong = questions.filter((_, i) => answers[i] !== allowed).map(describeAccess);
  assert.deepEqual(wrong, [], allowed ? 'the chart ServiceAccount may not do what the operator does' : 'the chart ServiceAccount may do what it should not');
}

/** The env names operator/ reads from process.env. */
function operatorEnv(): Set<string> {
  const names = new Set<string>();
  for (const file of readdirSync(join(ROOT, 'operator'), { recursive: true }) as string[]) {
    if (!file.endsWith('.ts')) continue;
    const source = readFileSync(join(ROOT, 'operator', file), 'utf8');
    for (const m of source.matchAll(/\benv(?:\.|\[')([A-Z][A-Z0-9_]+)|seconds\('([A-Z][A-Z0-9_]+)'/g)) names.add((m[1] ?? m[2])!);
  }
  return names;
}

interface Container { env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>; ports?: Array<{ name: string; containerPort: number }> }
interface DeploymentSpec { template: { spec: { serviceAccountName: string; containers: Container[] } } }
const find = (objects: ManifestObject[], kind: string, namespace?: string) => objects.filter((o) => o.kind === kind && (namespace === undefined || o.metadata.namespace === namespace));

describe('the Helm chart installed into a real kube-apiserver', { skip: clusterSkip || helmSkip }, () => {
  let cluster: Cluster;
  let release: string;
  let work: string;
  let installed: ChartRelease;
  let credentials: { kubeconfig: string; serviceAccount: string };
  const releases: Array<[namespace: string, release: string]> = [];
  const asOperator = (args: string[], input?: string) => cluster.kubectl(args, { kubeconfig: credentials.kubeconfig, ...(input === undefined ? {} : { input }) });
  const exists = async (o: ManifestObject) =>
    (await cluster.kubectl(['get', `${o.kind}.${o.apiVersion.split('/').length > 1 ? o.apiVersion.split('/')[0] : ''}`.replace(/\.$/, ''), o.metadata.name, ...(o.metadata.namespace ? ['-n', o.metadata.namespace] : []), '--ignore-not-found', '-o', 'name'])).trim() !== '';
  /** `Kind name` of each of `objects` that is (`onServer`) or is not on the server. */
  const which = async (objects: ManifestObject[], onServer: boolean) =>
    (await Promise.all(objects.map(async (o) => ((await exists(o)) === onServer ? [`${o.kind} ${o.metadata.name}`] : [])))).flat();

  before(async () => {
    cluster = await startCluster();
    // The CRD is there before the chart comes: Helm must skip it, not fail.
    await installCrd(cluster);
    [release, work] = await Promise.all([cluster.namespace('chart'), cluster.namespace('chart-work')]);
  });
  after(async () => {
    for (const [namespace, name] of releases) await uninstallChart(cluster, namespace, { release: name, ignoreMissing: true }).catch(() => {});
    await cluster?.cleanup();
  });

  test('helm install (CRD already there): ServiceAccount, ClusterRole and binding, leader-election Role, metrics Service, and a Deployment with the env the operator reads', async () => {
    installed = await installChart(cluster, release);
    releases.push([release, installed.release]);
    const { objects } = installed;
    assert.deepEqual(objects.map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']);
    assert.deepEqual(await which(objects, false), [], 'in the manifest but not on the server');
    assert.match(await cluster.kubectl(['get', 'crd', CRD_NAME, '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}']), /True/);

    const serviceAccount = find(objects, 'ServiceAccount')[0]!.metadata.name;
    const deployment = find(objects, 'Deployment')[0]!;
    const pod = (deployment.spec as DeploymentSpec).template.spec;
    assert.equal(pod.serviceAccountName, serviceAccount);
    const env = new Map((pod.containers[0]!.env ?? []).map((e) => [e.name, e]));
    const reads = operatorEnv();
    assert.deepEqual([...env.keys()].filter((name) => !reads.has(name)), [], 'the chart sets env the operator does not read');
    assert.equal(env.get('POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace', 'the leader Lease goes to the release namespace');
    assert.equal(env.get('LEADER_ELECT')?.value, 'true');
    assert.match(env.get('RERANK_SERVER_IMAGE')?.value ?? '', /^ghcr\.io\/rerank-dev\/rerank-server:\S+$/);
    assert.equal(env.get('OPERATOR_PORT')?.value, String(pod.containers[0]!.ports?.find((p) => p.name === 'metrics')?.containerPort));
    assert.ok(env.has('LOG_LEVEL'));
    assert.equal(env.has('WATCH_NAMESPACE'), false, 'no WATCH_NAMESPACE: all namespaces');

    // RBAC binds that ServiceAccount: operator rules cluster-wide, leader election in the release namespace.
    const subject = { kind: 'ServiceAccount', name: serviceAccount, namespace: release };
    const binding = find(objects, 'ClusterRoleBinding')[0]! as ManifestObject & { roleRef: { kind: string; name: string }; subjects: unknown[] };
    assert.deepEqual(binding.subjects, [subject]);
    assert.deepEqual([binding.roleRef.kind, binding.roleRef.name], ['ClusterRole', find(objects, 'ClusterRole')[0]!.metadata.name]);
    const leaderBinding = find(objects, 'RoleBinding', release)[0]! as ManifestObject & { roleRef: { kind: string; name: string }; subjects: unknown[] };
    assert.deepEqual(leaderBinding.subjects, [subject]);
    assert.deepEqual([leaderBinding.roleRef.kind, leaderBinding.roleRef.name], ['Role', find(objects, 'Role', release)[0]!.metadata.name]);

    // The Deployment is one the controller-manager acts on: its ReplicaSet makes a (Pending) pod as that ServiceAccount.
    const selector = `app.kubernetes.io/instance=${installed.release}`;
    let pods = '';
    for (let i = 0; i < 100 && !pods; i++) {
      pods = (await cluster.kubectl(['get', 'pods', '-n', release, '-l', selector, '-o', 'jsonpath={.items[*].spec.serviceAccountName}'])).trim();
      if (!pods) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(pods, serviceAccount);
  });

  test('chartOperatorCredentials: a kubeconfig that is the chart ServiceAccount, in the release namespace', async () => {
    credentials = await chartOperatorCredentials(cluster, release);
    assert.equal(credentials.serviceAccount, find(installed.objects, 'ServiceAccount')[0]!.metadata.name);
    const config = load(readFileSync(credentials.kubeconfig, 'utf8')) as { contexts: Array<{ context: { namespace: string } }> };
    assert.equal(config.contexts[0]!.context.namespace, release);
    const who = await asOperator(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}']);
    assert.equal(who, `system:serviceaccount:${release}:${credentials.serviceAccount}`);
    // Impersonating that user (kubectl auth can-i --as) gets the answers the token gets.
    assert.equal((await cluster.kubectl(['auth', 'can-i', 'watch', 'rerankerconfigs.rerank.dev', '--all-namespaces', '--as', who])).trim(), 'yes');
    await assert.rejects(cluster.kubectl(['auth', 'can-i', 'list', 'secrets', '-n', work, '--as', who]), /exit 1/);
  });

  test('RBAC: the ServiceAccount may do every call the operator makes, in any namespace and cluster-wide, and leader election on its Lease', async () => {
    await expectAccess(credentials.kubeconfig, [...operatorNeeds(work), ...clusterWideWatches(), ...leaderNeeds(release)], true);
    // And everything the chart's rule files grant is in force (none dropped by a template).
    await expectAccess(
      credentials.kubeconfig,
      [...granted(rulesFile('operator-rules.yaml'), work), ...granted(rulesFile('secret-rules.yaml'), work), ...granted(rulesFile('leader-election-rules.yaml'), release)],
      true,
    );
  });

  test('RBAC: it may not delete, create or update RerankerConfigs, list or watch Secrets, create or delete pods, touch another Lease or the Lease elsewhere, or grant itself more', async () => {
    await expectAccess(credentials.kubeconfig, mustNot(work, release), false);
  });

  test('RBAC in practice, as the ServiceAccount: list RerankerConfigs everywhere, server-side apply a ConfigMap, write an Event, hold the leader Lease, get a Secret by name; listing Secrets is Forbidden', async () => {
    await asOperator(['get', 'rerankerconfigs.rerank.dev', '--all-namespaces']);
    const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'rbac-probe', namespace: work }, data: { a: '1' } };
    await asOperator(['apply', '--server-side', '--field-manager=rerank-operator', '-f', '-'], JSON.stringify(configMap));
    await asOperator(['delete', 'configmap', 'rbac-probe', '-n', work]);
    const event = { apiVersion: 'v1', kind: 'Event', metadata: { generateName: 'probe.', namespace: work }, involvedObject: { kind: 'ConfigMap', name: 'rbac-probe', namespace: work }, reason: 'Probe', message: 'rbac', type: 'Normal' };
    await asOperator(['create', '-f', '-'], JSON.stringify(event));
    const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: LEASE, namespace: release }, spec: { holderIdentity: 'probe', leaseDurationSeconds: 15 } };
    await asOperator(['create', '-f', '-'], JSON.stringify(lease));
    const held = JSON.parse(await asOperator(['get', 'lease', LEASE, '-n', release, '-o', 'json'])) as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
    await asOperator(['replace', '-f', '-'], JSON.stringify({ ...held, spec: { ...held.spec, holderIdentity: 'probe-2' } }));
    await cluster.kubectl(['delete', 'lease', LEASE, '-n', release]);
    await assert.rejects(asOperator(['get', 'secrets', '-n', work]), /Forbidden/);
    await cluster.kubectl(['create', 'secret', 'generic', 'prom-token', '-n', work, '--from-literal=token=t0k3n']);
    assert.equal(Buffer.from(await asOperator(['get', 'secret', 'prom-token', '-n', work, '-o', 'jsonpath={.data.token}']), 'base64').toString(), 't0k3n');
    await assert.rejects(asOperator(['get', 'secret', 'anything', '-n', release]), /NotFound/);
    await assert.rejects(asOperator(['delete', 'rerankerconfigs.rerank.dev', 'rerankers', '-n', work]), /Forbidden/);
  });

  test('helm uninstall removes every object it installed; the CRD stays', async () => {
    await uninstallChart(cluster, release);
    assert.deepEqual(await which(installed.objects, true), [], 'left behind');
    assert.equal((await helm(cluster, ['list', '--namespace', release, '--short'])).trim(), '');
    assert.match(await cluster.kubectl(['get', 'crd', CRD_NAME, '-o', 'name']), /rerankerconfigs\.rerank\.dev/);
  });

  test('watchNamespace: a Role and RoleBinding in that namespace instead of a ClusterRole; the ServiceAccount acts there and nowhere else', async () => {
    const [scopedRelease, watched] = await Promise.all([cluster.namespace('chart-scoped'), cluster.namespace('chart-watched')]);
    const scoped = await installChart(cluster, scopedRelease, { watchNamespace: watched });
    releases.push([scopedRelease, scoped.release]);
    const { objects } = scoped;
    assert.deepEqual(objects.filter((o) => o.kind.startsWith('Cluster')), []);
    assert.deepEqual(find(objects, 'Role').map((o) => o.metadata.namespace).sort(), [scopedRelease, watched].sort());
    assert.deepEqual(find(objects, 'RoleBinding').map((o) => o.metadata.namespace).sort(), [scopedRelease, watched].sort());
    const env = (find(objects, 'Deployment')[0]!.spec as DeploymentSpec).template.spec.containers[0]!.env ?? [];
    assert.equal(env.find((e) => e.name === 'WATCH_NAMESPACE')?.value, watched);

    const { kubeconfig } = await chartOperatorCredentials(cluster, scopedRelease);
    await expectAccess(kubeconfig, [...operatorNeeds(watched), ...leaderNeeds(scopedRelease)], true);
    await expectAccess(kubeconfig, [...operatorNeeds(work), ...operatorNeeds(scopedRelease).filter((a) => a.resource !== 'leases'), ...clusterWideWatches(), ...mustNot(watched, scopedRelease)], false);
    await assert.rejects(cluster.kubectl(['get', 'rerankerconfigs.rerank.dev', '--all-namespaces'], { kubeconfig }), /Forbidden/);
    await cluster.kubectl(['get', 'rerankerconfigs.rerank.dev', '-n', watched], { kubeconfig });

    await uninstallChart(cluster, scopedRelease);
    assert.deepEqual(await which(objects, true), [], 'left behind');
  });

  test('rbac.secrets.namespaces: Secrets may be read by name in the listed namespace only; rbac.secrets.enabled=false: nowhere', async () => {
    const [limitedRelease, credentialsAt] = await Promise.all([cluster.namespace('chart-secrets'), cluster.namespace('chart-creds')]);
    const limited = await installChart(cluster, limitedRelease, { 'rbac.secrets.namespaces[0]': credentialsAt });
    releases.push([limitedRelease, limited.release]);
    assert.equal(find(limited.objects, 'Role', credentialsAt).length, 1);
    assert.equal(find(limited.objects, 'RoleBinding', credentialsAt).length, 1);
    const { kubeconfig } = await chartOperatorCredentials(cluster, limitedRelease);
    const getSecret = (namespace: string): Access => ({ verb: 'get', group: '', resource: 'secrets', name: 'prom-token', namespace });
    await expectAccess(kubeconfig, [getSecret(credentialsAt)], true);
    await expectAccess(kubeconfig, [getSecret(work), getSecret(limitedRelease), { verb: 'list', group: '', resource: 'secrets', namespace: credentialsAt }], false);
    await uninstallChart(cluster, limitedRelease);

    const off = await installChart(cluster, limitedRelease, { 'rbac.secrets.enabled': false });
    const offCredentials = await chartOperatorCredentials(cluster, limitedRelease);
    await expectAccess(offCredentials.kubeconfig, [getSecret(work), getSecret(credentialsAt)], false);
    await uninstallChart(cluster, limitedRelease);
    assert.deepEqual(await which(off.objects, true), [], 'left behind');
  });
});
