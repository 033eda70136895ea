/* eslint-disable @typescript-eslint/no-explicit-any -- tests read deep into stored objects */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import { replacingPatch, specManager } from '../../operator/revisions.ts';
import { FakeClock } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { IMAGES, readExample } from './support/examples.ts';

const key = { namespace: 'rag', name: 'rerankers' };

async function setup() {
  const kube = new FakeKube();
  const clock = new FakeClock();
  const reconciler = new Reconciler({ kube, podConfig: new FakePodConfigReader(kube), clock, images: IMAGES });
  await kube.create(readExample('seed') as unknown as KubeObject);
  const rrc = () => kube.find<KubeObject & RerankerConfigObject>('RerankerConfig', 'rag', 'rerankers')!;
  const edit = (change: (o: any) => void) => kube.edit('RerankerConfig', 'rag', 'rerankers', change);
  const revisions = () =>
    kube
      .all('ControllerRevision')
      .map((r) => r as KubeObject & { revision: number; data: any })
      .sort((a, b) => a.revision - b.revision);
  const reconcile = async () => {
    const result = await reconciler.reconcile(key);
    assert.notEqual(result.outcome, 'error', result.outcome === 'error' ? result.error.message : '');
    kube.settleDeployments();
    return reconciler.reconcile(key);
  };
  return { kube, clock, reconciler, rrc, edit, revisions, reconcile };
}

const topK = (ctx: Awaited<ReturnType<typeof setup>>, value: number) => ctx.edit((o) => (o.spec.serving = { ...o.spec.serving, topK: value }));

describe('config history', () => {
  test('a revision per new spec, owned by the resource, with the spec, its config hash, who changed it and when; status names the current one', async () => {
    const ctx = await setup();
    ctx.edit((o) => {
      o.metadata.managedFields = [
        { manager: 'kubectl-client-side-apply', operation: 'Update', time: '2026-01-01T00:00:00Z', fieldsV1: { 'f:metadata': {}, 'f:spec': {} } },
        { manager: 'rerank-operator', operation: 'Update', time: '2026-01-03T00:00:00Z', subresource: 'status', fieldsV1: { 'f:status': {} } },
        { manager: 'argocd-controller', operation: 'Apply', time: '2026-01-02T00:00:00Z', fieldsV1: { 'f:spec': { 'f:serving': {} } } },
        { manager: 'kubectl-annotate', operation: 'Update', time: '2026-01-04T00:00:00Z', fieldsV1: { 'f:metadata': { 'f:annotations': {} } } },
      ];
    });
    // Availability moves the weights in effect (and so the rendered config's hash) but is no new revision.
    await ctx.reconcile();
    await ctx.reconcile();
    const [first, ...more] = ctx.revisions();
    assert.deepEqual(more, []);
    assert.equal(first!.apiVersion, 'apps/v1');
    assert.match(first!.metadata.name, /^rerankers-[0-9a-f]{10}$/);
    assert.equal(first!.revision, 1);
    assert.deepEqual(first!.metadata.ownerReferences, [
      { apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig', name: 'rerankers', uid: ctx.rrc().metadata.uid, controller: true, blockOwnerDeletion: true },
    ]);
    assert.equal(first!.metadata.labels?.['rerank.dev/owner'], 'rerankers');
    assert.deepEqual(first!.data.spec, readExample('seed').spec);
    assert.equal(first!.data.manager, 'argocd-controller');
    assert.equal(first!.data.appliedAt, ctx.clock.now().toISOString());
    assert.match(first!.data.configHash, /^[0-9a-f]+$/);
    assert.equal(ctx.rrc().status?.currentRevision, first!.metadata.name);

    topK(ctx, 20);
    await ctx.reconcile();
    const after = ctx.revisions();
    assert.deepEqual(after.map((r) => r.revision), [1, 2]);
    assert.equal(after[1]!.data.spec.serving.topK, 20);
    assert.equal(after[1]!.data.configHash, ctx.rrc().status?.configHash);
    assert.equal(ctx.rrc().status?.currentRevision, after[1]!.metadata.name);
  });

  test('a spec whose children fail to apply is no revision', async () => {
    const ctx = await setup();
    await ctx.reconcile();
    topK(ctx, 30);
    ctx.kube.fail('apply', 'ConfigMap', 500);
    assert.equal((await ctx.reconciler.reconcile(key)).outcome, 'error');
    assert.deepEqual(ctx.revisions().map((r) => r.revision), [1]);
    // Applied on the retry: now it is history.
    await ctx.reconcile();
    assert.deepEqual(ctx.revisions().map((r) => [r.revision, r.data.spec.serving.topK]), [[1, readExample('seed').spec.serving?.topK], [2, 30]]);
  });

  test('the oldest revisions are pruned beyond spec.revisionHistoryLimit', async () => {
    const ctx = await setup();
    ctx.edit((o) => (o.spec.revisionHistoryLimit = 3));
    for (const value of [11, 12, 13, 14, 15]) {
      topK(ctx, value);
      await ctx.reconcile();
    }
    assert.deepEqual(ctx.revisions().map((r) => [r.revision, r.data.spec.serving.topK]), [[3, 13], [4, 14], [5, 15]]);
  });

  test('rollback-to a revision number restores its spec in one patch with the annotation removed; the next reconcile applies it', async () => {
    const ctx = await setup();
    await ctx.reconcile();
    const configMapBefore = ctx.kube.find('ConfigMap', 'rag', 'rerankers-config')!.data;
    // A change that adds a key (images) and changes another: rolling back must remove the one and restore the other.
    ctx.edit((o) => {
      o.spec.serving = { ...o.spec.serving, topK: 40 };
      o.spec.images = { pullPolicy: 'Always' };
    });
    await ctx.reconcile();
    assert.deepEqual(ctx.revisions().map((r) => r.revision), [1, 2]);
    const generation = ctx.rrc().metadata.generation!;

    ctx.edit((o) => (o.metadata.annotations = { ...o.metadata.annotations, 'rerank.dev/rollback-to': '1' }));
    await ctx.reconcile();
    const rrc = ctx.rrc();
    assert.deepEqual(rrc.spec, readExample('seed').spec);
    assert.equal(rrc.metadata.annotations?.['rerank.dev/rollback-to'], undefined);
    assert.ok(rrc.metadata.generation! > generation);
    const event = ctx.kube.events.find((e) => e.reason === 'RolledBackTo')!;
    assert.equal(event.type, 'Normal');
    assert.match(event.message, /^spec restored from revision 1 \(rerankers-[0-9a-f]{10}, config [0-9a-f]+\)$/);
    assert.deepEqual(ctx.kube.find('ConfigMap', 'rag', 'rerankers-config')!.data, configMapBefore);
    // The restored spec is revision 1 again, now the newest: numbered 3, and no new revision.
    const after = ctx.revisions();
    assert.deepEqual(after.map((r) => [r.revision, r.data.spec.serving?.topK]), [[2, 40], [3, readExample('seed').spec.serving?.topK]]);
    assert.equal(rrc.status?.currentRevision, after[1]!.metadata.name);
    assert.equal(rrc.status?.observedGeneration, rrc.metadata.generation);

    // By name, too.
    ctx.edit((o) => (o.metadata.annotations = { ...o.metadata.annotations, 'rerank.dev/rollback-to': after[0]!.metadata.name }));
    await ctx.reconcile();
    assert.equal(ctx.rrc().spec.serving?.topK, 40);
    assert.deepEqual(ctx.rrc().spec.images, { pullPolicy: 'Always' });
    assert.equal(ctx.rrc().status?.currentRevision, after[0]!.metadata.name);
  });

  test('rollback-to a revision not kept: a Warning naming the kept ones, the annotation removed, the spec untouched', async () => {
    const ctx = await setup();
    await ctx.reconcile();
    topK(ctx, 50);
    await ctx.reconcile();
    const spec = ctx.rrc().spec;
    ctx.edit((o) => (o.metadata.annotations = { ...o.metadata.annotations, 'rerank.dev/rollback-to': '7' }));
    await ctx.reconcile();
    assert.deepEqual(ctx.rrc().spec, spec);
    assert.equal(ctx.rrc().metadata.annotations?.['rerank.dev/rollback-to'], undefined);
    const warning = ctx.kube.events.find((e) => e.reason === 'RollbackRevisionUnknown')!;
    assert.equal(warning.type, 'Warning');
    const [one, two] = ctx.revisions();
    assert.equal(warning.message, `rerank.dev/rollback-to=7 names no kept revision; kept: 1 (${one!.metadata.name}), 2 (${two!.metadata.name}); annotation removed`);
    assert.equal(ctx.kube.events.filter((e) => e.reason === 'RollbackRevisionUnknown').length, 1);
  });

  test('a rollback the apiserver refuses (422: the old spec no longer valid) is a Warning and lets go of the annotation', async () => {
    const ctx = await setup();
    await ctx.reconcile();
    topK(ctx, 60);
    await ctx.reconcile();
    ctx.edit((o) => (o.metadata.annotations = { ...o.metadata.annotations, 'rerank.dev/rollback-to': '1' }));
    ctx.kube.fail('mergePatch', 'RerankerConfig', 422);
    await ctx.reconcile();
    assert.equal(ctx.rrc().spec.serving?.topK, 60);
    assert.equal(ctx.rrc().metadata.annotations?.['rerank.dev/rollback-to'], undefined);
    assert.equal(ctx.kube.events.find((e) => e.reason === 'RollbackRefused')?.type, 'Warning');
  });
});

describe('config history helpers', () => {
  test('replacingPatch: keys the target lacks become null, objects patch key by key, arrays replace whole', () => {
    assert.deepEqual(replacingPatch({ a: 1, b: { c: 1, d: [1, 2] }, e: 'x' }, { a: 2, b: { d: [3] }, f: { g: 1 } }), {
      a: 2,
      b: { c: null, d: [3] },
      e: null,
      f: { g: 1 },
    });
  });

  test('specManager: the newest entry that owns a spec field, ignoring the status subresource; undefined when none', () => {
    assert.equal(specManager(undefined), undefined);
    assert.equal(specManager([{ manager: 'a', operation: 'Update', fieldsV1: { 'f:metadata': {} } }]), undefined);
    assert.equal(
      specManager([
        { manager: 'old', operation: 'Apply', time: '2026-01-01T00:00:00Z', fieldsV1: { 'f:spec': {} } },
        { manager: 'new', operation: 'Update', time: '2026-02-01T00:00:00Z', fieldsV1: { 'f:spec': {} } },
        { manager: 'status', operation: 'Update', time: '2026-03-01T00:00:00Z', subresource: 'status', fieldsV1: { 'f:spec': {} } },
      ]),
      'new',
    );
  });
});
