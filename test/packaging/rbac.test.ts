import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { pino } from 'pino';
import { Controller } from '../../operator/controller.ts';
import { KINDS, OWNED_KINDS, type KubeClient, type KubeObject, type KindRef } from '../../operator/kube.ts';
import { LeaderElector } from '../../operator/leader.ts';
import { LEASE_NAME } from '../../operator/run.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import { FakeClock } from '../operator/support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from '../operator/support/fake-kube.ts';
import { IMAGES, readExample } from '../operator/support/examples.ts';

const chart = new URL('../../charts/rerank-operator/', import.meta.url);
interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }
const rules = (file: string) => load(readFileSync(new URL(file, chart), 'utf8')) as Rule[];
const triples = (list: Rule[]) => new Set(list.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`)))));

const PLURAL: Record<string, string> = {
  ConfigMap: 'configmaps', Service: 'services', Pod: 'pods', Deployment: 'deployments', HTTPRoute: 'httproutes', Lease: 'leases', RerankerConfig: 'rerankerconfigs',
  HorizontalPodAutoscaler: 'horizontalpodautoscalers', PodDisruptionBudget: 'poddisruptionbudgets', ScaledObject: 'scaledobjects', ControllerRevision: 'controllerrevisions',
  Secret: 'secrets',
};
const resourceOf = (kind: KindRef) => `${kind.apiVersion.includes('/') ? kind.apiVersion.split('/')[0] : ''}/${PLURAL[kind.kind] ?? kind.kind}`;

/** A KubeClient that records the (group/resource, verb) every call needs, as the apiserver authorizes it. */
function recording(inner: KubeClient, seen: Set<string>): KubeClient {
  const add = (kind: KindRef, ...verbs: string[]) => verbs.forEach((v) => seen.add(`${resourceOf(kind)}:${v}`));
  return {
    get: (ref) => (add(ref, 'get'), inner.get(ref)),
    list: (kind, options) => (add(kind, 'list'), inner.list(kind, options)),
    watch: (kind, options, callbacks) => (add(kind, 'watch'), inner.watch(kind, options, callbacks)),
    // Server-side apply is a PATCH; the apiserver also authorizes create when the object is absent.
    apply: (object, manager, options) => (add(object, 'patch', 'create'), inner.apply(object, manager, options)),
    create: (object) => (add(object, 'create'), inner.create(object)),
    replace: (object) => (add(object, 'update'), inner.replace(object)),
    mergePatch: (ref, patch) => (add(ref, 'patch'), inner.mergePatch(ref, patch)),
    patchStatus: (ref, status) => (seen.add(`${resourceOf(ref)}/status:patch`), inner.patchStatus(ref, status)),
    delete: (ref) => (add(ref, 'delete'), inner.delete(ref)),
    createEvent: (event) => (seen.add('/events:create'), inner.createEvent(event)),
  };
}

/**
 * The calls operator/ makes, by where they happen:
 *  rerankerconfigs get          reconciler.ts reconcile (kube.get)
 *  rerankerconfigs list/watch   controller.ts informer on RerankerConfig (informer.ts list + watch)
 *  rerankerconfigs patch        reconciler.ts #acknowledge: removes the rerank.dev/rollout annotation it acted on;
 *                               revisions.ts rollback: restores a revision's spec, removes rerank.dev/rollback-to
 *  controllerrevisions list/create/patch/delete  revisions.ts record (list, create, renumber a restored one, prune)
 *  rerankerconfigs/status patch reconciler.ts #writeStatus (kube-client.ts patchNamespacedCustomObjectStatus)
 *  configmaps/services/deployments/httproutes list/watch  controller.ts WATCHED_CHILDREN informers; reconciler.ts #listOwned
 *  horizontalpodautoscalers/poddisruptionbudgets list/watch  the same: watched children, listed to prune
 *  scaledobjects list           reconciler.ts #listOwned to prune (not watched: KEDA is an add-on; the resync repairs)
 *  ... create/patch             reconciler.ts kube.apply (server-side apply)
 *  ... get                      apply.ts applyChild: who holds a field when an apply conflicts
 *  ... delete                   reconciler.ts #prune
 *  pods list/watch/patch        controller.ts informer; reconciler.ts #observePods list + config-hash annotation mergePatch
 *  events create                reconciler.ts #emitEvents (kube-client.ts createNamespacedEvent)
 *  leases get/create/update     leader.ts tryAcquireOrRenew / stop (release namespace)
 *  secrets get                  rollout/prometheus-target.ts: analysis.prometheus's token, basic auth or CA (rbac/secret-rules.yaml,
 *                               granted apart: chart values rbac.secrets)
 */
/** Needed for blockOwnerDeletion where OwnerReferencesPermissionEnforcement is on; no call of its own. */
const OWNER_FINALIZERS = 'rerank.dev/rerankerconfigs/finalizers:update';
const OPERATOR = [
  'rerank.dev/rerankerconfigs:get', 'rerank.dev/rerankerconfigs:list', 'rerank.dev/rerankerconfigs:watch', 'rerank.dev/rerankerconfigs:patch',
  'rerank.dev/rerankerconfigs/status:patch',
  OWNER_FINALIZERS,
  ...['/configmaps', '/services', 'apps/deployments', 'gateway.networking.k8s.io/httproutes', 'autoscaling/horizontalpodautoscalers', 'policy/poddisruptionbudgets']
    .flatMap((r) => ['get', 'list', 'watch', 'create', 'patch', 'delete'].map((v) => `${r}:${v}`)),
  ...['get', 'list', 'create', 'patch', 'delete'].map((v) => `keda.sh/scaledobjects:${v}`),
  ...['list', 'create', 'patch', 'delete'].map((v) => `apps/controllerrevisions:${v}`),
  '/pods:list', '/pods:watch', '/pods:patch',
  '/events:create',
];
const LEADER = ['coordination.k8s.io/leases:get', 'coordination.k8s.io/leases:create', 'coordination.k8s.io/leases:update'];
const SECRETS = ['/secrets:get'];

test('the chart grants exactly the (group, resource, verb) triples the operator uses', () => {
  assert.deepEqual([...triples(rules('rbac/operator-rules.yaml'))].sort(), [...OPERATOR].sort());
  assert.deepEqual([...triples(rules('rbac/leader-election-rules.yaml'))].sort(), [...LEADER].sort());
  assert.deepEqual([...triples(rules('rbac/secret-rules.yaml'))].sort(), SECRETS);
  const named = rules('rbac/leader-election-rules.yaml').find((r) => r.verbs.includes('update'));
  assert.deepEqual(named?.resourceNames, [LEASE_NAME], 'get/update limited to the Lease operator/run.ts names');
});

test('running the controller, reconciler and leader election makes only calls the chart grants, and every granted one', async () => {
  const seen = new Set<string>();
  const fake = new FakeKube();
  const kube = recording(fake, seen);
  const clock = new FakeClock();
  for (const name of ['seed', 'router']) await fake.create(readExample(name) as unknown as KubeObject);
  // Autoscaled: an HPA for one version, a KEDA ScaledObject for the other.
  const autoscaled = readExample('router');
  autoscaled.metadata.name = 'rerankers-autoscaled';
  autoscaled.spec.versions[0]!.autoscaling = { maxReplicas: 4, target: 70 };
  autoscaled.spec.versions[1]!.autoscaling = { maxReplicas: 2, metric: 'queue', target: 32, engine: 'keda', prometheusAddress: 'http://prometheus:9090' };
  await fake.create(autoscaled as unknown as KubeObject);
  const reconciler = new Reconciler({ kube, podConfig: new FakePodConfigReader(fake), clock, images: IMAGES });
  const controller = new Controller({ kube, reconciler, clock, logger: pino({ level: 'silent' }), namespace: 'rag' });
  await controller.start();
  // A rollout command: carried out (here: none runs, so it is refused) and the annotation removed (patch).
  fake.edit('RerankerConfig', 'rag', 'rerankers-lite', (o: KubeObject) => (o.metadata.annotations = { 'rerank.dev/rollout': 'pause' }));
  // A hand edit took a field: the apply conflicts, the operator reads who holds it (get), then forces.
  fake.fail('apply', 'ConfigMap', 409, { causes: [{ message: 'conflict with "kubectl-edit" using v1: .data', field: '.data' }] });
  for (const name of ['rerankers', 'rerankers-lite', 'rerankers-autoscaled']) {
    await reconciler.reconcile({ namespace: 'rag', name });
    fake.settleDeployments();
    await reconciler.reconcile({ namespace: 'rag', name });
  }
  // Disable a version: its Deployment and Service are pruned.
  fake.edit('RerankerConfig', 'rag', 'rerankers', (o: KubeObject) => {
    const spec = o.spec as { versions: Array<{ name: string; enabled?: boolean; weight?: number }> };
    const canary = spec.versions.find((v) => v.name === 'v2-gemma')!;
    canary.enabled = false;
    canary.weight = 0;
  });
  await reconciler.reconcile({ namespace: 'rag', name: 'rerankers' });
  // Config history: roll back to the first spec (its revision renumbered: patch), then a third spec with
  // room for two revisions (the oldest pruned: delete).
  fake.edit('RerankerConfig', 'rag', 'rerankers', (o: KubeObject) => (o.metadata.annotations = { 'rerank.dev/rollback-to': '1' }));
  await reconciler.reconcile({ namespace: 'rag', name: 'rerankers' });
  fake.edit('RerankerConfig', 'rag', 'rerankers', (o: KubeObject) => Object.assign(o.spec as object, { revisionHistoryLimit: 2 }));
  await reconciler.reconcile({ namespace: 'rag', name: 'rerankers' });
  assert.deepEqual(fake.all('ControllerRevision').filter((r) => r.metadata.labels?.['rerank.dev/owner'] === 'rerankers').map((r) => r.revision).sort(), [3, 4]);
  // A rollout judged by a Prometheus that wants a token: the operator gets the Secret when the step is judged.
  fake.edit('RerankerConfig', 'rag', 'rerankers', (o: KubeObject) =>
    Object.assign(o.spec as object, {
      rollout: { canary: 'v2-gemma', stepInterval: '1m', analysis: { maxErrorRatio: 0.1, prometheus: { url: 'http://127.0.0.1:9', auth: { bearerTokenSecret: { name: 'prom-token' } } } } },
    }),
  );
  await reconciler.reconcile({ namespace: 'rag', name: 'rerankers' });
  await clock.advance(60_000);
  await reconciler.reconcile({ namespace: 'rag', name: 'rerankers' });
  assert.match(fake.find<KubeObject & { status?: { rollout?: { message?: string } } }>('RerankerConfig', 'rag', 'rerankers')?.status?.rollout?.message ?? '', /Secret rag\/prom-token not found/);
  fake.edit('RerankerConfig', 'rag', 'rerankers', (o: KubeObject) => delete (o.spec as { rollout?: unknown }).rollout);
  await reconciler.reconcile({ namespace: 'rag', name: 'rerankers' });
  await controller.stop();

  const elector = new LeaderElector({ kube, clock, namespace: 'rerank-system', name: 'rerank-operator-leader', identity: 'a', onStartedLeading: () => {}, onStoppedLeading: () => {} });
  assert.equal(await elector.tryAcquireOrRenew(), true);
  assert.equal(await elector.tryAcquireOrRenew(), true);

  const granted = new Set([...OPERATOR, ...LEADER, ...SECRETS]);
  assert.deepEqual([...seen].filter((t) => !granted.has(t)).sort(), [], 'calls the chart does not grant');
  // #prune deletes whatever of OWNED_KINDS is no longer desired, and applyChild reads whichever
  // conflicts; this run prunes and conflicts on only some kinds.
  const prunable = new Set([...OWNED_KINDS.flatMap((kind) => [`${resourceOf(kind)}:delete`, `${resourceOf(kind)}:get`]), OWNER_FINALIZERS]);
  for (const t of prunable) assert.ok(granted.has(t), t);
  assert.ok(seen.has('apps/deployments:delete'));
  assert.ok(seen.has('/configmaps:get'));
  assert.deepEqual([...granted].filter((t) => !seen.has(t) && !prunable.has(t)).sort(), [], 'grants no exercised call needs');
  // Every kind the operator owns or watches is in the rules.
  for (const kind of OWNED_KINDS) {
    const verbs = ['get', 'list', 'create', 'patch', 'delete', ...(kind === KINDS.scaledObject ? [] : ['watch'])];
    for (const verb of verbs) assert.ok(granted.has(`${resourceOf(kind)}:${verb}`), `${kind.kind} ${verb}`);
  }
});
