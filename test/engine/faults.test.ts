import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FaultsSchema } from '../../server/config/faults.ts';
import { RerankConfigSchema, type RerankConfigInput } from '../../server/config/schema.ts';
import { FaultInjection, InjectedFault } from '../../server/engine/fault-injection.ts';
import { RerankEngine } from '../../server/engine/engine.ts';
import { createApp } from '../../server/http/app.ts';
import { createLogger, silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { loadedConfig, seededRandom } from './live-support.ts';
import { tinyModel } from '../support/models.ts';

/**
 * Fault injection by config (a version's `faults`): the pure draw on its own, then a real engine behind
 * the real HTTP app on a loopback socket, with generated models.
 */

const DOCUMENTS = ['the river runs through the city', 'water', 'the history of the city and its market', 'energy policy'];

async function sample(metrics: ServerMetrics, series: string): Promise<number> {
  const text = await metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('faults: the config', () => {
  it('fills its defaults and refuses what it cannot inject, naming the field', () => {
    assert.deepEqual(FaultsSchema.parse({ errorRatio: 0.3 }), { errorRatio: 0.3, errorStatus: 500, delayMs: 0, delayRatio: 1 });
    const refused = (faults: unknown) =>
      RerankConfigSchema.safeParse({ defaultVersion: 'a', versions: { a: { faults } } }).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    assert.match(refused({ errorStatus: 404 })!.join(), /versions\.a\.faults\.errorStatus: /);
    assert.match(refused({ errorRatio: 1.5 })!.join(), /versions\.a\.faults\.errorRatio: /);
    assert.match(refused({ delayMs: 600_000 })!.join(), /versions\.a\.faults\.delayMs: /);
    assert.match(refused({ abort: 0.1 })!.join(), /versions\.a\.faults: Unrecognized key: "abort"/);
  });

  it('draws each request: about errorRatio of them fail, delayRatio of them wait, each counted by kind', async () => {
    const metrics = new ServerMetrics({ defaultMetrics: false });
    const faults = new FaultInjection({ metrics, logger: silentLogger(), random: seededRandom(7) });
    const settings = FaultsSchema.parse({ errorRatio: 0.3, errorStatus: 503, delayMs: 1, delayRatio: 0.5 });
    let failed = 0;
    for (let i = 0; i < 1000; i += 1) {
      try {
        await faults.inject('v2', settings, undefined);
      } catch (error) {
        assert.ok(error instanceof InjectedFault);
        assert.equal(error.kind, 'unavailable');
        failed += 1;
      }
    }
    assert.ok(failed > 250 && failed < 350, `${failed} of 1000 failed at errorRatio 0.3`);
    assert.equal(await sample(metrics, 'reranker_injected_faults_total{version="v2",kind="error"}'), failed);
    const delayed = await sample(metrics, 'reranker_injected_faults_total{version="v2",kind="delay"}');
    assert.ok(delayed > 450 && delayed < 550, `${delayed} of 1000 delayed at delayRatio 0.5`);
  });

  it('a ratio of 1 (or 0) takes no draw, so the weighted version choice sees the same random numbers as without faults', async () => {
    let draws = 0;
    const faults = new FaultInjection({ metrics: new ServerMetrics({ defaultMetrics: false }), logger: silentLogger(), random: () => (draws++, 0.5) });
    await assert.rejects(faults.inject('v2', FaultsSchema.parse({ errorRatio: 1 }), undefined), InjectedFault);
    await faults.inject('v2', FaultsSchema.parse({ errorRatio: 0, delayMs: 0 }), undefined);
    await faults.inject('v2', undefined, undefined);
    assert.equal(draws, 0);
  });
});

describe('faults: a real engine behind the HTTP app', () => {
  let model: string;
  const logs: Array<Record<string, unknown>> = [];
  let engine: RerankEngine;
  let metrics: ServerMetrics;
  let server: http.Server;
  let url: string;

  const config = (faults: Record<string, RerankConfigInput['versions'][string]['faults']>): RerankConfigInput => ({
    defaultVersion: 'good',
    versions: {
      good: { model, weight: 100 },
      flaky: { model, ...(faults.flaky ? { faults: faults.flaky } : {}) },
      slow: { model, ...(faults.slow ? { faults: faults.slow } : {}) },
    },
  });
  const post = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ query: 'city history', texts: DOCUMENTS }) });
  const warnings = () => logs.filter((l) => l.level === 40).map((l) => String(l.msg));

  before(async () => {
    model = (await tinyModel()).dir;
    metrics = new ServerMetrics({ defaultMetrics: false });
    const logger = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
    engine = await RerankEngine.create({
      loaded: loadedConfig(config({ flaky: { errorRatio: 1 }, slow: { delayMs: 300 } })),
      metrics,
      logger,
    });
    const app = createApp({ reranker: engine, metrics, logger, serving: () => engine.config.serving });
    server = http.createServer(app.callback());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server?.closeAllConnections();
    server?.close();
    await engine?.close();
  });

  it('at start: a warning per version with faults; /info shows them; an injected error answers its status after the version was chosen and counts as that version\'s', async () => {
    assert.deepEqual(warnings().filter((m) => m.startsWith('fault injection')).map((m) => m.split(':')[0]), [
      'fault injection active on version flaky',
      'fault injection active on version slow',
    ]);
    const info = (await (await fetch(`${url}/info`)).json()) as { versions: Array<{ name: string; faults?: unknown }> };
    assert.deepEqual(Object.fromEntries(info.versions.map((v) => [v.name, v.faults])), {
      good: undefined,
      flaky: { errorRatio: 1, errorStatus: 500, delayMs: 0, delayRatio: 1 },
      slow: { errorRatio: 0, errorStatus: 500, delayMs: 300, delayRatio: 1 },
    });

    const failed = await post('/rerank/flaky');
    assert.equal(failed.status, 500);
    const body = (await failed.json()) as { error: string };
    assert.match(body.error, /^fault injected by config: versions\.flaky\.faults\.errorRatio is 1 \(errorStatus 500\)$/);
    assert.equal(await sample(metrics, 'reranker_requests_total{version="flaky",status="500"}'), 1);
    assert.equal(await sample(metrics, 'reranker_injected_faults_total{version="flaky",kind="error"}'), 1);
    // Not scored: no batch ran for it. And no error log with a stack (the access log line has it).
    assert.equal(await sample(metrics, 'reranker_batch_size_count{version="flaky"}'), 0);
    assert.equal(logs.filter((l) => l.msg === 'request failed').length, 0);
    assert.equal(logs.filter((l) => l.msg === 'request' && l.status === 500).length, 1);
    // Unpinned traffic goes to `good`, which has no faults.
    assert.equal((await post('/rerank')).status, 200);
  });

  it('an injected delay is in the version\'s latency (reranker_request_duration_seconds) and the answer is scored as usual', async () => {
    const started = performance.now();
    const answer = await post('/rerank/slow');
    const tookMs = performance.now() - started;
    assert.equal(answer.status, 200);
    assert.equal(((await answer.json()) as unknown[]).length, DOCUMENTS.length);
    assert.ok(tookMs >= 300, `answered after ${tookMs} ms`);
    assert.equal(await sample(metrics, 'reranker_request_duration_seconds_bucket{le="0.25",version="slow"}'), 0);
    assert.equal(await sample(metrics, 'reranker_request_duration_seconds_count{version="slow"}'), 1);
    assert.equal(await sample(metrics, 'reranker_injected_faults_total{version="slow",kind="delay"}'), 1);
  });

  it('a router\'s mirrored copy (X-Rerank-Mirror: 1) fails and waits the same, but is counted apart from client traffic', async () => {
    const before = await sample(metrics, 'reranker_requests_total{version="flaky",status="500"}');
    assert.equal((await post('/rerank/flaky', { 'x-rerank-mirror': '1' })).status, 500);
    assert.equal((await post('/rerank/slow', { 'x-rerank-mirror': '1' })).status, 200);
    assert.equal(await sample(metrics, 'reranker_requests_total{version="flaky",status="500"}'), before);
    assert.equal(await sample(metrics, 'reranker_mirrored_requests_total{version="flaky",status="500"}'), 1);
    assert.equal(await sample(metrics, 'reranker_mirrored_requests_total{version="slow",status="200"}'), 1);
    assert.equal(await sample(metrics, 'reranker_mirrored_request_duration_seconds_count{version="slow"}'), 1);
    assert.equal(await sample(metrics, 'reranker_mirrored_request_duration_seconds_bucket{le="0.25",version="slow"}'), 0);
    assert.equal(await sample(metrics, 'reranker_request_duration_seconds_count{version="slow"}'), 1);
  });

  it('reloadable: a config without them stops them at once (an info line), a changed one warns again, one kept says nothing', async () => {
    const before = warnings().length;
    await engine.apply(loadedConfig(config({ slow: { delayMs: 300 } })));
    assert.equal((await post('/rerank/flaky')).status, 200);
    assert.ok(logs.some((l) => l.msg === 'fault injection ended on version flaky'));
    assert.equal(warnings().length, before, 'slow kept its faults: no new warning');
    await engine.apply(loadedConfig(config({ flaky: { errorRatio: 1, errorStatus: 503 }, slow: { delayMs: 300 } })));
    assert.equal((await post('/rerank/flaky')).status, 503);
    assert.equal(await sample(metrics, 'reranker_requests_total{version="flaky",status="503"}'), 1);
    assert.deepEqual(warnings().slice(before).map((m) => m.split(':')[0]), ['fault injection active on version flaky']);
    const info = (await (await fetch(`${url}/info`)).json()) as { versions: Array<{ name: string; faults?: { errorStatus: number } }> };
    assert.equal(info.versions.find((v) => v.name === 'flaky')?.faults?.errorStatus, 503);
  });
});
