import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Controller } from '../../operator/controller.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import { FakeClock, settle } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { IMAGES, readExample } from './support/examples.ts';

function setup() {
  const kube = new FakeKube();
  const clock = new FakeClock();
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const reconciler = new Reconciler({ kube, clock, podConfig: new FakePodConfigReader(kube), images: IMAGES });
  const controller = new Controller({ kube, reconciler, clock, metrics, logger: pino({ level: 'silent' }), resyncMs: 60_000 });
  return { kube, clock, metrics, controller };
}

describe('Controller: informers → queue → reconciler', () => {
  test('a new RerankerConfig is reconciled; a deleted child brings a reconcile that recreates it', async () => {
    const { kube, controller } = setup();
    await controller.start();
    await kube.create(readExample('seed') as unknown as KubeObject);
    await settle();
    assert.equal(kube.all('Deployment').length, 4);
    kube.remove({ apiVersion: 'v1', kind: 'Service', namespace: 'rag', name: 'rerankers-v1' });
    await settle();
    assert.ok(kube.find('Service', 'rag', 'rerankers-v1'), 'the deleted Service was not recreated');
    await controller.stop();
  });

  test('a failing reconcile is retried with growing delays, then succeeds', async () => {
    const { kube, clock, metrics, controller } = setup();
    // Fails before anything is applied, so no child event brings an early retry.
    kube.fail('get', 'RerankerConfig', 500, { times: 2 });
    await kube.create(readExample('seed') as unknown as KubeObject);
    await controller.start();
    await settle();
    assert.equal(controller.queue.failures('rag/rerankers'), 1);
    await clock.advance(500);
    assert.equal(controller.queue.failures('rag/rerankers'), 2);
    await clock.advance(999);
    assert.equal(kube.find('ConfigMap', 'rag', 'rerankers-config'), undefined, 'retried before its backoff');
    await clock.advance(1);
    assert.ok(kube.find('ConfigMap', 'rag', 'rerankers-config'));
    assert.equal(controller.queue.failures('rag/rerankers'), 0);
    const errors = (await metrics.reconciles.get()).values.find((v) => v.labels.outcome === 'error')?.value;
    assert.equal(errors, 2);
    await controller.stop();
  });

  test('while pods roll out it polls; once settled it resyncs on the long period, repairing drift no watch saw', async () => {
    const { kube, clock, controller } = setup();
    await kube.create(readExample('seed') as unknown as KubeObject);
    await controller.start();
    await settle();
    kube.settleDeployments();
    await settle();
    await clock.advance(5000);
    const ready = () => kube.find('RerankerConfig', 'rag', 'rerankers')!.status.conditions.find((c: { type: string }) => c.type === 'Ready').status;
    assert.equal(ready(), 'True');
    await controller.stop();
  });

  test('stop: no new work is taken, in-flight work finishes', async () => {
    const { kube, controller } = setup();
    await controller.start();
    await kube.create(readExample('seed') as unknown as KubeObject);
    await controller.stop();
    const calls = kube.calls.length;
    await kube.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'rag' } });
    await settle();
    assert.equal(kube.calls.length, calls + 1);
  });
});
