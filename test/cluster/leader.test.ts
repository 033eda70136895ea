import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterSkip, installCrd, startCluster, type Cluster } from './harness.ts';
import { eventually, startOperator, type OperatorProcess } from './operator-process.ts';
import { examples, Resources } from './resources.ts';

const LEASE_SECONDS = 4;
const RETRY_SECONDS = 1;

/** Leader election between real operator processes on a real Lease (MicroTime, resourceVersion guards). */
describe('leader election on a real API server', { skip: clusterSkip, timeout: 120_000 }, () => {
  let cluster: Cluster;
  const processes: OperatorProcess[] = [];

  before(async () => {
    cluster = await startCluster();
    await installCrd(cluster);
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    await cluster?.cleanup();
  });

  test('two operators: one leads, the other stands by; SIGKILL the leader and the other takes over and reconciles the next edit', async (t) => {
    const leaseNamespace = await cluster.namespace('rerank-system');
    const env = { POD_NAMESPACE: leaseNamespace, LEASE_DURATION_SECONDS: String(LEASE_SECONDS), LEASE_RETRY_SECONDS: String(RETRY_SECONDS) };
    const [a, b] = await Promise.all([startOperator({ kubeconfig: cluster.kubeconfig, env }), startOperator({ kubeconfig: cluster.kubeconfig, env })]);
    processes.push(a!, b!);
    const states = async () => Promise.all([a!.readyz(), b!.readyz()]);
    const [leader, standby] = await eventually('one leader and one standby', async () => {
      const [ra, rb] = await states();
      if (ra.body === 'ok: leading\n' && /^ok: standby: the lease is held by /.test(rb.body)) return [a!, b!];
      if (rb.body === 'ok: leading\n' && /^ok: standby: the lease is held by /.test(ra.body)) return [b!, a!];
      return undefined;
    });
    const lease = JSON.parse(await cluster.kubectl(['get', 'lease', 'rerank-operator-leader', '-n', leaseNamespace, '-o', 'json']));
    assert.match(lease.spec.renewTime, /\.\d{6}Z$/, 'renewTime is MicroTime');
    assert.equal(lease.spec.leaseDurationSeconds, LEASE_SECONDS);

    const { object } = examples('placeholder').find((e) => e.file === 'router.yaml')!;
    const r = new Resources(cluster, await cluster.namespace('rrc-failover'));
    object.metadata.namespace = r.namespace;
    await r.apply(object);
    await eventually('the leader reconciles', async () => (await r.get('rerankerconfig', 'rerankers-lite'))?.status?.observedGeneration === 1);
    assert.equal(standby.logged(/became leader/).length, 0, 'the standby acted');

    leader.child.kill('SIGKILL');
    await leader.exited;
    const killedAt = Date.now();
    await r.mergePatch('rerankerconfig', 'rerankers-lite', { spec: { serving: { topK: 7 } } });
    await eventually('the standby leads and reconciles the edit', async () => {
      const live = await r.get('rerankerconfig', 'rerankers-lite');
      return live.status?.observedGeneration === 2 && /topK: 7/.test((await r.get('configmap', 'rerankers-lite-config')).data['config.yaml']);
    }, 30_000, 100);
    const tookMs = Date.now() - killedAt;
    t.diagnostic(`SIGKILL of the leader → the edit reconciled by the other: ${tookMs} ms (lease ${LEASE_SECONDS} s, retry ${RETRY_SECONDS} s)`);
    // Lease duration plus one retry, and a few seconds for a loaded 2-core machine to list and reconcile.
    assert.ok(tookMs < (LEASE_SECONDS + RETRY_SECONDS + 4) * 1000, `took over and reconciled after ${tookMs} ms`);
    assert.equal(standby.logged(/became leader/).length, 1);
    assert.deepEqual(await standby.readyz(), { status: 200, body: 'ok: leading\n' });
    const transitions = JSON.parse(await cluster.kubectl(['get', 'lease', 'rerank-operator-leader', '-n', leaseNamespace, '-o', 'json'])).spec.leaseTransitions;
    assert.equal(transitions, 1);
  });

  test('a Lease namespace that does not exist: /readyz says so, the log says it once, the failures are counted', async () => {
    const operator = await startOperator({ kubeconfig: cluster.kubeconfig, env: { POD_NAMESPACE: 'no-such-namespace', LEASE_RETRY_SECONDS: '0.2' } });
    processes.push(operator);
    const ready = await eventually('/readyz to say why', async () => {
      const r = await operator.readyz();
      return r.status === 503 ? r : undefined;
    });
    assert.match(ready.body, /leader election failing \(Lease no-such-namespace\/rerank-operator-leader\): .*the Lease's namespace "no-such-namespace" does not exist: create it, or set POD_NAMESPACE/);
    await eventually('a few rounds', async () => /rerank_operator_leader_election_failures_total\{reason="404 NotFound"\} ([5-9]|\d\d)/.test(await operator.metrics()));
    assert.equal(operator.logged(/leader election failed/).length, 1, 'a retried failure of the same kind is logged once');
    assert.equal((await operator.readyz()).status, 503);
    // Once the namespace exists, it leads.
    await cluster.kubectl(['create', 'namespace', 'no-such-namespace']);
    try {
      await eventually('leading', async () => (await operator.readyz()).body === 'ok: leading\n');
      assert.equal(operator.logged(/leader election works again/).length, 1);
    } finally {
      await operator.stop();
      await cluster.kubectl(['delete', 'namespace', 'no-such-namespace', '--wait=false']);
    }
  });

  test('no kubeconfig at all: the log says so and /readyz says why the operator is not leading', async () => {
    const home = mkdtempSync(join(tmpdir(), 'no-kube-'));
    const operator = await startOperator({ kubeconfig: '', env: { HOME: home, LEASE_RETRY_SECONDS: '0.5' } });
    processes.push(operator);
    await eventually('the warning', async () => operator.logged(/no kubeconfig found/).length === 1);
    const ready = await eventually('/readyz to say why', async () => {
      const r = await operator.readyz();
      return r.status === 503 ? r : undefined;
    });
    assert.match(ready.body, /^not ready:\n- no kubeconfig found \(\$KUBECONFIG unset, no ~\/\.kube\/config, not in a cluster\)/);
    assert.match(ready.body, /\n- leader election failing \(Lease default\/rerank-operator-leader\): get Lease rerank-operator-leader: /);
    await operator.stop();
  });
});
