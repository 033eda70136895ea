/* eslint-disable @typescript-eslint/no-explicit-any -- the test reads deep into the planned Deployment */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { ConfigError, parseConfig } from '../../server/config/load.ts';
import { createLogger } from '../../server/logger.ts';
import { addRouterCommand } from '../../server/router/cli.ts';
import { RouterMetrics } from '../../server/router/metrics.ts';
import { parseRouterConfig } from '../../server/router/routing-files.ts';
import { buildRoutingTable, routeRequest, upstreamUrl } from '../../server/router/routing-table.ts';
import { startRouter } from '../../server/router/start.ts';
import { planDesiredObjects } from '../../operator/planner.ts';
import { CONFIG_DIR } from '../../operator/names.ts';
import { IMAGES, example } from '../operator/support/examples.ts';
import { configYaml, routerYaml } from './harness.ts';

function plannedRouter() {
  const objects = planDesiredObjects(example('router'), IMAGES, { stable: { primary: 2, fallback: 0 }, candidate: { primary: 1, fallback: 0 } });
  const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'rerankers-lite-router') as any;
  const configMap = objects.find((o) => o.kind === 'ConfigMap') as any;
  assert.ok(deployment && configMap);
  return { container: deployment.spec.template.spec.containers[0], data: configMap.data as Record<string, string> };
}

describe('rerank-server router: the operator\'s contract', () => {
  test('the rendered Deployment\'s command line parses: files under the mounted ConfigMap directory, the http port', async () => {
    const { container } = plannedRouter();
    assert.deepEqual(container.command, ['rerank-server']);
    const program = new Command('rerank-server').exitOverride();
    let parsed: Record<string, unknown> | undefined;
    addRouterCommand(program).action((opts: Record<string, unknown>) => {
      parsed = opts;
    });
    await program.parseAsync(container.args as string[], { from: 'user' });
    assert.equal(parsed?.config, `${CONFIG_DIR}/config.yaml`);
    assert.equal(parsed?.routerConfig, `${CONFIG_DIR}/router.yaml`);
    assert.equal(parsed?.port, container.ports[0].containerPort);
    assert.equal(container.ports[0].name, 'http');
  });

  test('the rendered ConfigMap\'s config.yaml and router.yaml load; the probes\' paths answer', async () => {
    const { container, data } = plannedRouter();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-router-contract-'));
    for (const [key, text] of Object.entries(data)) await writeFile(path.join(dir, key), text);
    const running = await startRouter({
      configFile: path.join(dir, 'config.yaml'),
      routerFile: path.join(dir, 'router.yaml'),
      port: 0,
      host: '127.0.0.1',
      logger: createLogger('info', { write: () => {} }),
      upstreamTimeoutMs: 1000,
      watchMode: 'poll',
      metrics: new RouterMetrics({ defaultMetrics: false }),
    });
    try {
      const status = (await (await fetch(`${running.url}/config`)).json()) as any;
      assert.equal(status.ready, true);
      assert.deepEqual(
        status.routing.versions.map((v: any) => [v.name, v.weight, v.upstream]),
        [
          ['candidate', 20, 'http://rerankers-lite-candidate.rag.svc:8080'],
          ['stable', 80, 'http://rerankers-lite-stable.rag.svc:8080'],
        ],
      );
      for (const probe of [container.startupProbe, container.livenessProbe]) {
        assert.equal(probe.httpGet.port, 'http');
        assert.equal((await fetch(`${running.url}${probe.httpGet.path}`)).status, 200, probe.httpGet.path);
      }
      // No pods behind these Services here: readiness fails, naming each upstream and why.
      assert.equal(container.readinessProbe.httpGet.port, 'http');
      let readiness: any;
      for (const deadline = Date.now() + 8000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
        const answer = await fetch(`${running.url}${container.readinessProbe.httpGet.path}`);
        readiness = { status: answer.status, body: await answer.json() };
        if (readiness.body.upstreams.every((u: any) => u.active === 'unhealthy')) break;
      }
      assert.equal(readiness.status, 503);
      assert.deepEqual(
        readiness.body.upstreams.map((u: any) => [u.upstream, u.versions, u.active]),
        [
          ['http://rerankers-lite-candidate.rag.svc:8080', ['candidate'], 'unhealthy'],
          ['http://rerankers-lite-stable.rag.svc:8080', ['stable'], 'unhealthy'],
        ],
      );
      assert.match(readiness.body.reason, /^no upstream is healthy: http:\/\/rerankers-lite-candidate\.rag\.svc:8080 \(candidate\): failing its health checks \(GET \/readyz: /);
    } finally {
      await running.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('routing table (pure)', () => {
  const config = parseConfig(configYaml({ stable: { weight: 3 }, canary: { weight: 1 }, off: { enabled: false, weight: 5 } }, 'stable'), { source: 'mem', baseDir: '/' }).config;

  test('versions keep config.yaml\'s order, the draw walks them by name; those without an upstream cannot serve', () => {
    const table = buildRoutingTable(config, parseRouterConfig(routerYaml({ canary: 'http://c:8080', stable: 'http://s:8080' }), 'mem').value);
    assert.deepEqual(table.versions.map((v) => v.name), ['stable', 'canary', 'off']);
    const draws = [0, 0.24, 0.26, 0.99].map((point) => routeRequest(table, { random: () => point }).choice.version);
    assert.deepEqual(draws, ['canary', 'canary', 'stable', 'stable']);
    const onlyCanary = buildRoutingTable(config, parseRouterConfig(routerYaml({ canary: 'http://c:8080' }), 'mem').value);
    assert.deepEqual(routeRequest(onlyCanary, { random: () => 0 }), { choice: { version: 'canary', reason: 'weighted' }, upstream: 'http://c:8080' });
    assert.deepEqual(
      routeRequest(onlyCanary, { random: () => 0, pathVersion: 'stable' }),
      { choice: { version: 'stable', reason: 'default', fallbackFrom: 'stable' } },
      'the default without an upstream: no upstream, the handler answers 503',
    );
  });

  test('upstream URLs keep a base path and the request\'s query', () => {
    assert.equal(upstreamUrl('http://svc:8080', '/v1/rerank?a=1').href, 'http://svc:8080/v1/rerank?a=1');
    assert.equal(upstreamUrl('http://svc:8080/prefix/', '/rerank/x').href, 'http://svc:8080/prefix/rerank/x');
  });

  test('router.yaml: validated by the operator\'s schema, hashed by content not formatting', () => {
    const one = parseRouterConfig('router:\n  headerName: X-Rerank-Version\n  upstreams: {a: "http://a:1", b: "http://b:1"}\n', 'mem');
    const two = parseRouterConfig('router:\n  upstreams:\n    b: http://b:1\n    a: http://a:1\n  headerName: X-Rerank-Version\n', 'mem');
    assert.equal(one.hash, two.hash);
    assert.throws(() => parseRouterConfig('router: {headerName: X, upstreams: {}, extra: 1}\n', 'mem'), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.issues.join(), /router/);
      return true;
    });
    assert.throws(() => parseRouterConfig('router: [\n', 'mem'), ConfigError);
  });
});
