import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createOperatorServer } from '../../operator/http.ts';
import { OperatorMetrics } from '../../operator/metrics.ts';

test('the operator serves /healthz and /metrics', async () => {
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  metrics.reconciles.inc({ outcome: 'done' });
  let healthy = true;
  const server = createOperatorServer({ registry: metrics.registry, healthy: () => healthy });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    healthy = false;
    assert.equal((await fetch(`${base}/healthz`)).status, 503);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.match(text, /rerank_operator_reconciles_total\{outcome="done"\} 1/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    server.close();
  }
});
