import assert from 'node:assert/strict';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startServer, type Harness } from './harness.ts';

async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe('client disconnect', () => {
  let h: Harness;
  before(async () => {
    h = await startServer();
  });
  after(() => h.close());

  test('a client that goes away aborts the signal the core got, and the server keeps serving', async () => {
    h.reranker.delay(10_000);
    const reached = h.reranker.nextCall();
    const request = http.request(`${h.url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    request.on('error', () => {});
    request.end(JSON.stringify({ query: 'q', texts: ['a', 'b'] }));
    await reached;
    const signal = h.reranker.calls[0]?.signal;
    assert.ok(signal, 'the core got a signal');
    assert.equal(signal.aborted, false);

    request.destroy();
    await until(() => h.reranker.aborted.length === 1, 'the abort to reach the core');
    assert.equal(signal.aborted, true);

    h.reranker.delay(0);
    await until(() => h.logs.some((line) => line.msg === 'request' && line.status === 499), 'the access log line');
    assert.equal((await h.get('/healthz')).status, 200);
    assert.equal((await h.post('/rerank', { query: 'q', texts: ['a'] })).status, 200);
  });

  test('a request that completes does not abort its signal', async () => {
    h.reranker.calls.length = 0;
    const response = await h.post('/rerank', { query: 'q', texts: ['a'] });
    await response.text();
    await sleep(20);
    assert.equal(h.reranker.calls[0]?.signal?.aborted, false);
  });
});
