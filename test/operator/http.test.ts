import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createOperatorServer } from '../../operator/http.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';

test('the operator serves /healthz, /readyz (saying why not) and /metrics', async () => {
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  metrics.reconciles.inc({ outcome: 'done' });
  let healthy = true;
  let reasons: string[] = [];
  const server = createOperatorServer({ registry: metrics.registry, healthy: () => healthy, notReady: () => reasons, readyDetail: () => 'leading' });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const ready = await fetch(`${base}/readyz`);
    assert.deepEqual([ready.status, await ready.text()], [200, 'ok: leading\n']);
    reasons = ['leader election failing: get Lease rerank-system/rerank-operator-leader: connect ECONNREFUSED'];
    const notReady = await fetch(`${base}/readyz`);
    assert.deepEqual([notReady.status, await notReady.text()], [503, `not ready:\n- ${reasons[0]}\n`], '/readyz says why');
    assert.equal((await fetch(`${base}/healthz`)).status, 200, 'not ready is not unhealthy');
    healthy = false;
    assert.equal((await fetch(`${base}/healthz`)).status, 503);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.match(text, /rerank_operator_reconciles_total\{outcome="done"\} 1/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    server.close();
  }
});
