import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../server/config/load.ts';
import type { RerankConfigInput } from '../../server/config/schema.ts';
import { RerankEngine } from '../../server/engine/engine.ts';
import { createApp } from '../../server/http/app.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { metricSum } from '../../bench/stats.ts';
import { tinyModel } from '../support/models.ts';

/**
 * Overload by time and client deadlines on a real server: the engine with a generated model behind the
 * HTTP app on a loopback socket. A backlog is queued with the time limit off, then the limit is put in
 * force and the request under test sent at once.
 */

let engine: RerankEngine;
let server: http.Server;
let url: string;
let modelDir: string;

const config = (maxQueueWaitMs: number): RerankConfigInput => ({
  defaultVersion: 'v1',
  versions: { v1: { model: modelDir } },
  serving: { maxBatchSize: 1, maxQueueWaitMs, logLevel: 'error' },
});
const loaded = (maxQueueWaitMs: number) => parseConfig(JSON.stringify(config(maxQueueWaitMs)), { source: 'test', baseDir: '/' });

const documents = (count: number) => Array.from({ length: count }, (_, i) => `document ${i} on the river`);
const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const metrics = () => fetch(`${url}/metrics`).then((r) => r.text());

/**
 * Queues four requests of 1000 short documents (a batch each with maxBatchSize 1: a second or more of work
 * on two cores; admitted: the time limit is off) and resolves once they wait in the queue, as the exported
 * estimate shows.
 */
async function backlog(): Promise<{ done: Promise<Response[]> }> {
  const long = Promise.all([1, 2, 3, 4].map(() => post({ query: 'the city', texts: documents(1000) })));
  for (let i = 0; i < 5000; i += 1) {
    if (metricSum(await metrics(), 'reranker_queue_expected_wait_seconds', 'version="v1"') > 0.2) return { done: long };
    await sleep(1);
  }
  throw new Error('the long requests never showed in the queue estimate');
}

before(async () => {
  modelDir = (await tinyModel()).dir;
  const serverMetrics = new ServerMetrics({ defaultMetrics: false });
  engine = await RerankEngine.create({ loaded: loaded(0), metrics: serverMetrics, logger: silentLogger() });
  const app = createApp({ reranker: engine, metrics: serverMetrics, logger: silentLogger(), serving: () => engine.config.serving });
  server = http.createServer(app.callback()).listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.close();
  await engine.close();
});

describe('overload by time over HTTP', () => {
  it('refuses with 429 and a Retry-After past maxQueueWaitMs, and serves again once the queue drained', async () => {
    const { done: long } = await backlog();
    // The knobs are in force as apply() is called (its promise is for version work: none here).
    const applied = engine.apply(loaded(1));
    const refused = await post({ query: 'the city', texts: documents(5) });
    assert.equal(refused.status, 429, await refused.clone().text());
    const body = (await refused.json()) as { error: string; error_type: string };
    assert.equal(body.error_type, 'overloaded');
    assert.match(body.error, /expected wait [\d.]+ s is over maxQueueWaitMs \(1 ms\)/);
    const retryAfter = refused.headers.get('retry-after');
    assert.ok(Number.isInteger(Number(retryAfter)) && Number(retryAfter) >= 1, `Retry-After ${retryAfter}`);
    // Those of the backlog still tokenizing when the limit came in are refused too.
    for (const response of await long) assert.ok([200, 429].includes(response.status), String(response.status));
    assert.equal((await post({ query: 'the city', texts: documents(5) })).status, 200);
    assert.ok(metricSum(await metrics(), 'reranker_queue_refusals_total', 'reason="wait"') >= 1);
    await applied;
  });

  it('honours X-Request-Timeout-Ms: 504 at once when the queue ahead is longer, 400 when it is not a number of milliseconds', async () => {
    await engine.apply(loaded(0)); // no time limit: only the deadline refuses
    const { done: long } = await backlog();
    const late = await post({ query: 'the city', texts: documents(5) }, { 'X-Request-Timeout-Ms': '100' });
    assert.equal(late.status, 504);
    const body = (await late.json()) as { error: string; error_type: string };
    assert.equal(body.error_type, 'deadline');
    const [, wait, left] = /deadline exceeded: version v1 expects a wait of ([\d.]+) s and the request's deadline is in (\d+) ms/.exec(body.error) ?? [];
    assert.ok(Number(wait) >= 0.1 && Number(wait) * 1000 >= Number(left), `refused for the queue ahead: ${body.error}`);
    const patient = await post({ query: 'the city', texts: documents(5) }, { 'X-Request-Timeout-Ms': '60000' });
    assert.equal(patient.status, 200);
    assert.deepEqual((await long).map((r) => r.status), [200, 200, 200, 200]);
    assert.ok(metricSum(await metrics(), 'reranker_queue_refusals_total', 'reason="deadline"') >= 1);

    for (const value of ['soon', '0', '-5', '1.5', '99999999999']) {
      const bad = await post({ query: 'q', texts: ['a'] }, { 'X-Request-Timeout-Ms': value });
      assert.equal(bad.status, 400, value);
      const error = (await bad.json()) as { error: string; field: string };
      assert.equal(error.field, 'X-Request-Timeout-Ms');
      assert.match(error.error, /^X-Request-Timeout-Ms: must be a whole number of milliseconds from 1 to 86400000/);
    }
  });
});
