import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import type { KubeObject } from '../../operator/kube.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { LEASE_NAME, runOperator, type OperatorDeps } from '../../operator/run.ts';
import { FakeClock, settle } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { readExample } from './support/examples.ts';

const where = { context: 'test', server: 'https://127.0.0.1:6443', user: 'admin', namespace: 'ops', found: true };

async function setup(env: Record<string, string>) {
  const kube = new FakeKube();
  const clock = new FakeClock();
  const exits: number[] = [];
  await kube.create(readExample('router') as unknown as KubeObject);
  const deps: OperatorDeps = {
    kube, where, clock,
    logger: pino({ level: 'silent' }),
    metrics: new OperatorMetrics({ defaultMetrics: false }),
    podConfig: new FakePodConfigReader(kube),
    exit: (code) => exits.push(code),
    identity: 'replica-a',
  };
  const operator = runOperator({ OPERATOR_PORT: '0', RERANK_SERVER_IMAGE: 'registry.invalid/s:1', ...env }, deps);
  await new Promise<void>((resolve) => (operator.server.listening ? resolve() : operator.server.once('listening', () => resolve())));
  const readyz = async () => {
    const response = await fetch(`http://127.0.0.1:${(operator.server.address() as AddressInfo).port}/readyz`);
    return `${response.status} ${await response.text()}`;
  };
  return { kube, clock, exits, operator, readyz };
}

describe('runOperator: the wiring of leader election, controller and endpoints', () => {
  test('it leads on the Lease in the kubeconfig namespace, runs the controller, reconciles, and says so on /readyz', async () => {
    const { kube, operator, readyz } = await setup({});
    await settle();
    assert.equal(kube.find('Lease', 'ops', LEASE_NAME)?.spec.holderIdentity, 'replica-a');
    assert.equal(operator.controlling, true);
    await settle(60);
    assert.ok(kube.find('ConfigMap', 'rag', 'rerankers-lite-config'), 'the controller reconciled the resource');
    assert.equal(await readyz(), '200 ok: leading\n');
    await operator.shutdown('SIGTERM');
    assert.equal(kube.find('Lease', 'ops', LEASE_NAME)?.spec.holderIdentity, '', 'shutdown releases the lease');
  });

  test('a lease it cannot renew by its deadline: the controller stops and the process exits 1', async () => {
    const { kube, clock, exits, operator, readyz } = await setup({ LEASE_DURATION_SECONDS: '3', LEASE_RETRY_SECONDS: '1' });
    await settle(60);
    assert.equal(operator.controlling, true);
    kube.fail('get', 'Lease', 503, { times: 100, message: 'etcd unavailable' });
    await clock.advance(1000);
    assert.equal(operator.controlling, true, 'one failed renewal stopped the controller');
    assert.match(await readyz(), /^503 not ready:\n- leader election failing \(Lease ops\/rerank-operator-leader\): etcd unavailable/);
    await clock.advance(2000);
    await settle(60);
    assert.equal(operator.controlling, false);
    assert.deepEqual(exits, [1]);
    await operator.shutdown('SIGTERM');
  });

  test('LEADER_ELECT=false: no Lease, the controller runs at once', async () => {
    const { kube, operator, readyz } = await setup({ LEADER_ELECT: 'false' });
    await settle(60);
    assert.equal(kube.all('Lease').length, 0);
    assert.equal(operator.controlling, true);
    assert.equal(await readyz(), '200 ok: running without leader election\n');
    await operator.shutdown('SIGTERM');
  });

  test('a bad LEASE_DURATION_SECONDS exits 2', async () => {
    const { exits, operator } = await setup({ LEASE_DURATION_SECONDS: 'soon', LEADER_ELECT: 'true' });
    assert.equal(exits[0], 2);
    await operator.shutdown('SIGTERM');
  });
});
