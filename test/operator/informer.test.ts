import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffMs, Informer, type InformerEvent } from '../../operator/informer.ts';
import { KINDS, type KubeObject } from '../../operator/kube.ts';
import { FakeClock, settle } from './support/fake-clock.ts';
import { FakeKube } from './support/fake-kube.ts';

const cm = (name: string, labels: Record<string, string> = { app: 'x' }): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'ns', labels },
  data: {},
});

function setup() {
  const kube = new FakeKube();
  const clock = new FakeClock();
  const events: string[] = [];
  const informer = new Informer({
    kube,
    clock,
    kind: KINDS.configMap,
    labelSelector: 'app=x',
    retryMs: 1000,
    random: () => 0,
    onError: (error: unknown) => events.push(`error ${(error as Error).message}`),
    onRecovered: () => events.push('recovered'),
    onEvent: (event: InformerEvent, object) => events.push(`${event} ${object.metadata.name}`),
  });
  return { kube, clock, events, informer };
}

describe('Informer', () => {
  test('lists, then reports watch events for matching objects only', async () => {
    const { kube, events, informer } = setup();
    await kube.create(cm('a'));
    await informer.start();
    assert.equal(informer.synced, true);
    await kube.create(cm('b'));
    await kube.create(cm('other', { app: 'y' }));
    await kube.mergePatch({ ...KINDS.configMap, namespace: 'ns', name: 'a' }, { data: { k: 'v' } });
    kube.remove({ ...KINDS.configMap, namespace: 'ns', name: 'b' });
    await settle();
    assert.deepEqual(events, ['add a', 'add b', 'update a', 'delete b']);
    assert.deepEqual([...informer.cache.keys()], ['ns/a']);
    informer.stop();
  });

  test('watch expiry (410): it lists again and reports what changed while away, then watches anew', async () => {
    const { kube, events, informer } = setup();
    await kube.create(cm('a'));
    await kube.create(cm('b'));
    await informer.start();
    events.length = 0;
    kube.expireWatches();
    // Changes the expired watch never delivered:
    kube.remove({ ...KINDS.configMap, namespace: 'ns', name: 'a' });
    await kube.create(cm('c'));
    await settle();
    assert.deepEqual(events.sort(), ['add c', 'delete a']);
    assert.equal(kube.openWatches, 1);
    await kube.create(cm('d'));
    await settle();
    assert.ok(events.includes('add d'));
    informer.stop();
  });

  test('a failed list is retried after a pause', async () => {
    const { kube, clock, events, informer } = setup();
    await kube.create(cm('a'));
    kube.fail('list', 'ConfigMap', 500);
    await informer.start();
    assert.equal(informer.synced, false);
    await clock.advance(1000);
    assert.deepEqual(events, ['error injected 500', 'add a', 'recovered']);
    informer.stop();
  });

  test('failing lists back off exponentially (with jitter) and say why in their health, until one works', async () => {
    const { kube, clock, events, informer } = setup();
    kube.fail('list', 'ConfigMap', 503, { times: 3, message: 'etcd leader changed' });
    await informer.start();
    await clock.advance(1000); // second try fails: next wait 2 s
    assert.deepEqual({ ...informer.health, cause: undefined }, { failures: 2, error: 'etcd leader changed', cause: undefined });
    await clock.advance(1999);
    assert.equal(informer.health.failures, 2, 'retried before its backoff');
    await clock.advance(1); // third try fails: next wait 4 s
    await clock.advance(4000);
    assert.equal(informer.synced, true);
    assert.deepEqual(informer.health, { failures: 0, error: undefined, cause: undefined });
    assert.deepEqual(events.filter((e) => e.startsWith('error')).length, 3);
    assert.equal(events.at(-1), 'recovered');
    informer.stop();
    const at = (failures: number, random: number) => backoffMs(failures, { baseMs: 1000, maxMs: 60_000, jitter: 0.5, random: () => random });
    assert.deepEqual([at(1, 0), at(2, 0), at(3, 0), at(10, 0), at(1, 0.999)], [1000, 2000, 4000, 60_000, 1500]);
  });
});
