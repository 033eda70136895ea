import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ServingConfigSchema, type ServingConfig } from '../../server/config/schema.ts';
import { createApp } from '../../server/http/app.ts';
import { listen } from '../../server/http/listen.ts';
import { ShutdownState } from '../../server/http/shutdown.ts';
import { createLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { connectionSuite, SUITE_SERVING, type ConnectionTarget } from '../support/connection-suite.ts';
import { FakeReranker } from '../support/fake-reranker.ts';
import { rawRequest } from '../support/raw-http.ts';

/** The server's app behind the real listener (listen(): timeouts, drain), a FakeReranker as its core. */
async function startServer(): Promise<ConnectionTarget & { serving: ServingConfig }> {
  const reranker = new FakeReranker();
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const serving = ServingConfigSchema.parse(SUITE_SERVING);
  const shutdown = new ShutdownState();
  const app = createApp({ reranker, metrics, logger, serving: () => serving, shutdown });
  const listening = await listen(app, { port: 0, host: '127.0.0.1', logger, shutdown, timeouts: () => serving, connectionErrors: metrics.connectionErrors });
  return {
    serving,
    url: listening.url,
    logs,
    metricsText: () => metrics.registry.metrics(),
    slowHandler: (ms) => void reranker.delay(ms),
    nextHandled: () => reranker.nextCall(),
    drain: () => listening.close(),
    close: () => listening.close(),
  };
}

describe('server connections', () => {
  connectionSuite('server', startServer);

  test('a reloaded receive timeout applies to the next requests, without a restart', async () => {
    const target = await startServer();
    try {
      target.serving.receiveTimeoutMs = 3000;
      const before = await rawRequest(target.url, { head: 'POST /rerank HTTP/1.1\r\nHost: t\r\nContent-Length: 100', chunks: ['{'], thenWaitMs: 6000 });
      assert.ok(before.closedAfterMs >= 2900, `closed after ${before.closedAfterMs} ms`);
      target.serving.receiveTimeoutMs = 1000;
      const after = await rawRequest(target.url, { head: 'POST /rerank HTTP/1.1\r\nHost: t\r\nContent-Length: 100', chunks: ['{'], thenWaitMs: 6000 });
      assert.match(after.statusLine, /^HTTP\/1\.1 408 /);
      assert.ok(after.closedAfterMs < 2500, `closed after ${after.closedAfterMs} ms`);
    } finally {
      await target.close();
    }
  });
});
