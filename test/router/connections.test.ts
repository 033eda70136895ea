import { describe } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectionSuite, SUITE_SERVING, type ConnectionTarget } from '../support/connection-suite.ts';
import { configYaml, fakeUpstream, routerYaml, startRouterHarness } from './harness.ts';

/** The router behind its real listener, proxying to one fake upstream whose delay is the handler's work. */
async function startRouter(): Promise<ConnectionTarget> {
  const upstream = await fakeUpstream('v1');
  const harness = await startRouterHarness({
    config: configYaml({ v1: { weight: 100 } }, 'v1', SUITE_SERVING),
    router: routerYaml({ v1: upstream.url }),
    // Longer than any handler delay of the suite: the upstream is slow, never timed out.
    upstreamTimeoutMs: 10_000,
  });
  const reranks = () => upstream.requests.filter((request) => request.path === '/rerank').length;
  return {
    url: harness.url,
    logs: harness.logs,
    metricsText: () => harness.router.metrics.registry.metrics(),
    slowHandler: (ms) => (upstream.delayMs = ms),
    nextHandled: async () => {
      const seen = reranks();
      while (reranks() === seen) await sleep(5);
    },
    drain: () => harness.router.close(),
    close: async () => {
      await harness.close();
      await upstream.close();
    },
  };
}

describe('router connections', () => {
  connectionSuite('router', startRouter);
});
