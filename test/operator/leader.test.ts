import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LeaderElector, microTime } from '../../operator/leader.ts';
import { FakeClock, settle } from './support/fake-clock.ts';
import { FakeKube } from './support/fake-kube.ts';

function candidate(kube: FakeKube, clock: FakeClock, identity: string, log: string[]) {
  return new LeaderElector({
    kube, clock, identity,
    namespace: 'rerank-system',
    name: 'rerank-operator-leader',
    leaseDurationMs: 15_000,
    retryMs: 2_000,
    onStartedLeading: () => log.push(`${identity} leads`),
    onStoppedLeading: () => log.push(`${identity} stops`),
  });
}

describe('LeaderElector on a Lease', () => {
  test('one of two candidates leads and keeps leading; a leader that cannot reach its Lease steps down', async () => {
    const kube = new FakeKube();
    const clock = new FakeClock();
    const log: string[] = [];
    const a = candidate(kube, clock, 'a', log);
    const b = candidate(kube, clock, 'b', log);
    a.start();
    await settle();
    b.start();
    await settle();
    await clock.advance(30_000);
    assert.deepEqual(log, ['a leads']);
    assert.equal(kube.find('Lease', 'rerank-system', 'rerank-operator-leader')!.spec.holderIdentity, 'a');

    kube.fail('get', 'Lease', 500, { times: 1000 });
    await clock.advance(8_000);
    assert.deepEqual(log, ['a leads'], 'a leader steps down at the first failed renewal');
    await clock.advance(2_000);
    assert.deepEqual(log.slice(0, 2), ['a leads', 'a stops'], 'a leader that cannot renew by its deadline (10 s of 15) steps down');
    await a.stop();
    await b.stop();
  });

  test('a candidate takes an expired lease and counts the transition', async () => {
    const kube = new FakeKube();
    const clock = new FakeClock();
    const log: string[] = [];
    await kube.create({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'rerank-operator-leader', namespace: 'rerank-system' },
      spec: { holderIdentity: 'gone', leaseDurationSeconds: 15, renewTime: microTime(clock.now()), leaseTransitions: 3 },
    });
    const b = candidate(kube, clock, 'b', log);
    b.start();
    await settle();
    assert.deepEqual(log, [], 'took a lease that was still fresh');
    await clock.advance(16_000);
    assert.deepEqual(log, ['b leads']);
    const lease = kube.find('Lease', 'rerank-system', 'rerank-operator-leader')!;
    assert.equal(lease.spec.holderIdentity, 'b');
    assert.equal(lease.spec.leaseTransitions, 4);
    await b.stop();
  });

  test('two candidates racing for the same expired lease: the write guarded by resourceVersion lets one win (409 for the other)', async () => {
    const kube = new FakeKube();
    const clock = new FakeClock();
    const log: string[] = [];
    const a = candidate(kube, clock, 'a', log);
    const b = candidate(kube, clock, 'b', log);
    const [wonA, wonB] = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew()]);
    assert.equal(Number(wonA) + Number(wonB), 1);
  });

  test('stop releases the lease so a successor need not wait', async () => {
    const kube = new FakeKube();
    const clock = new FakeClock();
    const log: string[] = [];
    const a = candidate(kube, clock, 'a', log);
    a.start();
    await settle();
    await a.stop();
    const b = candidate(kube, clock, 'b', log);
    b.start();
    await settle();
    assert.deepEqual(log, ['a leads', 'a stops', 'b leads']);
    await b.stop();
  });

  test('the Lease times it writes are MicroTime, which the API server requires', async () => {
    const kube = new FakeKube();
    const clock = new FakeClock();
    assert.equal(microTime(new Date('2026-12-03T05:12:29.118Z')), '2026-12-03T05:12:29.118000Z');
    assert.equal(await candidate(kube, clock, 'a', []).tryAcquireOrRenew(), true);
    const spec = kube.find('Lease', 'rerank-system', 'rerank-operator-leader')!.spec;
    assert.match(spec.acquireTime, /\.\d{6}Z$/);
    assert.match(spec.renewTime, /\.\d{6}Z$/);
    await assert.rejects(
      kube.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'x', namespace: 'n' }, spec: { renewTime: new Date().toISOString() } }),
      /cannot be handled as a Lease/,
      'the fake must refuse what the API server refuses',
    );
  });

  test('a failing round is reported each time and shown in its state; a missing namespace is said plainly', async () => {
    const kube = new FakeKube();
    const clock = new FakeClock();
    const reported: string[] = [];
    const elector = new LeaderElector({
      kube, clock, identity: 'a', namespace: 'nowhere', name: 'rerank-operator-leader', retryMs: 2_000,
      onStartedLeading: () => reported.push('leads'),
      onStoppedLeading: () => reported.push('stops'),
      failures: { failed: (e) => reported.push(`failed: ${(e as Error).message}`), succeeded: () => reported.push('ok') },
    });
    kube.fail('create', 'Lease', 404, { times: 2, message: 'namespaces "nowhere" not found' });
    elector.start();
    await settle();
    await clock.advance(2_000);
    assert.equal(reported.length, 2);
    assert.match(reported[0]!, /the Lease's namespace "nowhere" does not exist: create it, or set POD_NAMESPACE/);
    assert.equal(elector.state.leading, false);
    assert.match(elector.state.error ?? '', /does not exist/);
    await clock.advance(2_000);
    assert.deepEqual(reported.slice(2), ['ok', 'leads']);
    assert.deepEqual(elector.state, { leading: true, holder: 'a', error: undefined });
    await elector.stop();
  });
});
