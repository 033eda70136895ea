import { describe } from 'node:test';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import { createApp } from '../../server/http/app.ts';
import { listen } from '../../server/http/listen.ts';
import { ShutdownState } from '../../server/http/shutdown.ts';
import { createLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { connectionSuite, SUITE_SERVING, type ConnectionTarget } from '../support/connection-suite.ts';
import { FakeReranker } from '../support/fake-reranker.ts';

/** The server's app behind the real listener (listen(): timeouts, drain), a FakeReranker as its core. */
async function startServer(): Promise<ConnectionTarget> {
  const reranker = new FakeReranker();
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const serving = ServingConfigSchema.parse(SUITE_SERVING);
  const shutdown = new ShutdownState();
  const app = createApp({ reranker, metrics, logger, serving: () => serving, shutdown });
  const listening = await listen(app, { port: 0, host: '127.0.0.1', logger, shutdown, timeouts: () => serving, connectionErrors: metrics.connectionErrors });
  return {
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
});
