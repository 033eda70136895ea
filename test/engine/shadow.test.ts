import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Metric } from 'prom-client';
import type { RerankConfigInput } from '../../server/config/schema.ts';
import { RerankEngine, type RerankEngineOptions } from '../../server/engine/engine.ts';
import { loadOnnxModel, type LoadOnnxModelOptions, type PairScorer } from '../../server/engine/onnx-model.ts';
import { createApp } from '../../server/http/app.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { loadedConfig } from './live-support.ts';
import { scratchDir, tinyModel } from '../support/models.ts';

/**
 * Shadow scoring on a real engine: two generated models as two versions, `a` answering and `b` scoring
 * the same requests again in the background.
 */

const engines: RerankEngine[] = [];
after(async () => {
  await Promise.all(engines.map((engine) => engine.close()));
});

async function engineFor(config: RerankConfigInput, options: Partial<RerankEngineOptions> = {}) {
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const engine = await RerankEngine.create({ loaded: loadedConfig(config), metrics, logger: silentLogger(), ...options });
  engines.push(engine);
  return { engine, metrics };
}

const QUERIES = ['what is the history of the city?', 'river water', 'energy policy and markets', 'music school'];
const DOCUMENTS = [
  'the river runs through the city',
  'water',
  'a much longer document about the history of the city and its market, its school and its music',
  'energy policy and the market',
  'the school of music by the river',
  'prices of energy went up',
  'people who lived there for many years',
  'a short note',
];
const request = (i: number) => ({ query: QUERIES[i % QUERIES.length]!, documents: DOCUMENTS });

/** A series' value: a counter's, or a histogram's `_sum` / `_count`; 0 when absent. */
async function value(metric: Metric<string>, labels: Record<string, string>, suffix: '' | '_sum' | '_count' = ''): Promise<number> {
  const { name, values } = await metric.get();
  // Histogram values name their series (`_bucket`, `_sum`, `_count`); a counter's or gauge's do not.
  const seriesName = (v: (typeof values)[number]) => (v as { metricName?: string }).metricName ?? name;
  const hit = values.find((v) => seriesName(v) === name + suffix && Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return hit?.value ?? 0;
}

async function eventually(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const AB = { from: 'a', to: 'b' };

async function comparisons(metrics: ServerMetrics, count: number): Promise<void> {
  await eventually(async () => (await value(metrics.shadowComparisons, AB)) >= count, `${count} comparisons`);
  assert.equal(await value(metrics.shadowComparisons, AB), count);
}

/** Wraps the loader: runs of the model under `dir` wait while the gate is held (the shadow version made slow at will). */
class SlowGate {
  #held: Promise<void> | undefined;
  #open: (() => void) | undefined;
  waiting = 0;
  /** Runs of the model fail while set. */
  failing = false;
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  hold(): void {
    this.#held = new Promise((resolve) => (this.#open = resolve));
  }

  open(): void {
    this.#open?.();
    this.#held = undefined;
  }

  readonly load = async (options: LoadOnnxModelOptions): Promise<PairScorer> => {
    const model = await loadOnnxModel(options);
    if (!options.modelPath.startsWith(this.dir)) return model;
    return {
      description: model.description,
      run: async (pairs) => {
        if (this.failing) throw new Error('injected inference failure');
        const held = this.#held;
        if (held) {
          this.waiting += 1;
          await held;
          this.waiting -= 1;
        }
        return model.run(pairs);
      },
      close: () => model.close(),
    };
  };
}

let seed42: string;
let seed7: string;

before(async () => {
  seed42 = (await tinyModel()).dir;
  seed7 = (await tinyModel({ seed: 7 })).dir;
});

describe('shadow scoring', () => {
  it('identical models: every request compared (fraction 1), overlap 1 and tau 1; /info shows the setting', async () => {
    const { engine, metrics } = await engineFor({
      defaultVersion: 'a',
      versions: { a: { model: seed42, shadow: { version: 'b', fraction: 1, topK: 3 } }, b: { model: seed42 } },
    });
    for (let i = 0; i < 4; i += 1) await engine.rerank(request(i));
    await comparisons(metrics, 4);
    assert.equal(await value(metrics.shadowTopKOverlap, AB, '_count'), 4);
    assert.equal(await value(metrics.shadowTopKOverlap, AB, '_sum'), 4);
    assert.equal(await value(metrics.shadowKendallTau, AB, '_count'), 4);
    assert.equal(await value(metrics.shadowKendallTau, AB, '_sum'), 4);
    const a = engine.info().versions.find((v) => v.name === 'a');
    assert.deepEqual(a?.shadow, { version: 'b', fraction: 1, topK: 3, maxInFlight: 4, inFlight: 0 });
    assert.equal(engine.info().versions.find((v) => v.name === 'b')?.shadow, undefined);
  });

  it('models of different seeds agree less: mean overlap and mean tau under 1', async () => {
    const { engine, metrics } = await engineFor({
      defaultVersion: 'a',
      versions: { a: { model: seed42, shadow: { version: 'b', fraction: 1, topK: 3 } }, b: { model: seed7 } },
    });
    for (let i = 0; i < 4; i += 1) await engine.rerank(request(i));
    await comparisons(metrics, 4);
    const overlap = (await value(metrics.shadowTopKOverlap, AB, '_sum')) / (await value(metrics.shadowTopKOverlap, AB, '_count'));
    const tau = (await value(metrics.shadowKendallTau, AB, '_sum')) / (await value(metrics.shadowKendallTau, AB, '_count'));
    assert.ok(overlap < 1, `mean overlap ${overlap}`);
    assert.ok(tau < 1, `mean tau ${tau}`);
    assert.ok(overlap >= 0 && tau >= -1);
  });

  it('fraction 0 compares nothing; a fraction draws per request', async () => {
    const draws = [0.1, 0.9, 0.3, 0.7];
    let next = 0;
    const { engine, metrics } = await engineFor(
      { defaultVersion: 'a', versions: { a: { model: seed42, shadow: { version: 'b', fraction: 0.5 } }, b: { model: seed42 } } },
      { random: () => draws[next++ % draws.length]! },
    );
    for (let i = 0; i < 4; i += 1) await engine.rerank(request(i));
    await comparisons(metrics, 2);
    await engine.apply(loadedConfig({ defaultVersion: 'a', versions: { a: { model: seed42, shadow: { version: 'b', fraction: 0 } }, b: { model: seed42 } } }));
    for (let i = 0; i < 4; i += 1) await engine.rerank(request(i));
    await sleep(50);
    assert.equal(await value(metrics.shadowComparisons, AB), 2);
  });

  // The timeout turns an answer that waited for the held shadow scoring into a failure rather than a hang.
  it('a slow shadow version never delays the answer; past maxInFlight a scoring is skipped as saturated', { timeout: 30_000 }, async () => {
    const gate = new SlowGate(seed7);
    const { engine, metrics } = await engineFor(
      { defaultVersion: 'a', versions: { a: { model: seed42, shadow: { version: 'b', fraction: 1, maxInFlight: 1 } }, b: { model: seed7 } } },
      { loadModel: gate.load },
    );
    gate.hold();
    // Answered while b's model is held: the answer does not wait for the shadow scoring.
    const first = await engine.rerank(request(0));
    assert.equal(first.version, 'a');
    await eventually(async () => gate.waiting === 1, "b's run to reach the gate");
    assert.equal(engine.info().versions.find((v) => v.name === 'a')?.shadow?.inFlight, 1);
    const second = await engine.rerank(request(1));
    assert.equal(second.version, 'a');
    assert.equal(await value(metrics.shadowFailures, { ...AB, reason: 'saturated' }), 1);
    assert.equal(await value(metrics.shadowComparisons, AB), 0);
    gate.open();
    await comparisons(metrics, 1);
    await eventually(async () => engine.info().versions.find((v) => v.name === 'a')?.shadow?.inFlight === 0, 'the scoring to end');
  });

  it('a shadow version that cannot serve: the request is answered, the scoring skipped and counted unavailable', async () => {
    const broken = await scratchDir('shadow-broken');
    const { engine, metrics } = await engineFor({
      defaultVersion: 'a',
      versions: { a: { model: seed42, shadow: { version: 'b', fraction: 1 } }, b: { model: broken } },
    });
    assert.equal(engine.info().versions.find((v) => v.name === 'b')?.state, 'failed');
    assert.equal((await engine.rerank(request(0))).version, 'a');
    await eventually(async () => (await value(metrics.shadowFailures, { ...AB, reason: 'unavailable' })) === 1, 'the unavailable count');
    assert.equal(await value(metrics.shadowComparisons, AB), 0);
  });

  it('a shadow version that fails to score: the request is answered, the failure counted as error', async () => {
    const gate = new SlowGate(seed7);
    const { engine, metrics } = await engineFor(
      { defaultVersion: 'a', versions: { a: { model: seed42, shadow: { version: 'b', fraction: 1 } }, b: { model: seed7 } } },
      { loadModel: gate.load },
    );
    gate.failing = true;
    assert.equal((await engine.rerank(request(0))).version, 'a');
    await eventually(async () => (await value(metrics.shadowFailures, { ...AB, reason: 'error' })) === 1, 'the error count');
    assert.equal(await value(metrics.shadowComparisons, AB), 0);
    gate.failing = false;
    await engine.rerank(request(1));
    await comparisons(metrics, 1);
  });

  it('hot reload: a config that adds the shadow starts it, one that removes it stops it', async () => {
    const plain = { defaultVersion: 'a', versions: { a: { model: seed42 }, b: { model: seed42 } } };
    const { engine, metrics } = await engineFor(plain);
    await engine.rerank(request(0));
    await sleep(20);
    assert.equal(await value(metrics.shadowComparisons, AB), 0);
    await engine.apply(loadedConfig({ ...plain, versions: { ...plain.versions, a: { model: seed42, shadow: { version: 'b', fraction: 1 } } } }));
    await engine.rerank(request(1));
    await comparisons(metrics, 1);
    await engine.apply(loadedConfig(plain));
    assert.equal(engine.info().versions.find((v) => v.name === 'a')?.shadow, undefined);
    for (let i = 0; i < 3; i += 1) await engine.rerank(request(i));
    await sleep(50);
    assert.equal(await value(metrics.shadowComparisons, AB), 1);
  });

  it('over HTTP: shadow work is not a request of the shadow version, but its inference metrics count it', async () => {
    const { engine, metrics } = await engineFor({
      defaultVersion: 'a',
      versions: { a: { model: seed42, shadow: { version: 'b', fraction: 1 } }, b: { model: seed7 } },
    });
    const app = createApp({ reranker: engine, metrics, logger: silentLogger(), serving: () => engine.config.serving });
    const server = http.createServer(app.callback());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/rerank`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: QUERIES[0], texts: DOCUMENTS }),
      });
      assert.equal(response.status, 200);
      assert.equal(((await response.json()) as unknown[]).length, DOCUMENTS.length);
      await comparisons(metrics, 1);
      assert.equal(await value(metrics.requests, { version: 'a', status: '200' }), 1);
      const requestsOfB = (await metrics.requests.get()).values.filter((v) => v.labels.version === 'b');
      assert.deepEqual(requestsOfB, []);
      assert.equal(await value(metrics.requestDuration, { version: 'b' }, '_count'), 0);
      assert.equal(await value(metrics.tokenizationDuration, { version: 'b' }, '_count'), 1);
      assert.equal(await value(metrics.inflight, { version: 'b' }), 0);
    } finally {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
  });
});
