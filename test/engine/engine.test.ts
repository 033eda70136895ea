import assert from 'node:assert/strict';
import { mkdir, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../server/config/load.ts';
import type { RerankConfigInput } from '../../server/config/schema.ts';
import { RerankError, versionOfFailure } from '../../server/errors.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { RerankEngine, type RerankEngineOptions } from '../../server/engine/engine.ts';
import { scratchDir, tinyModel } from '../support/models.ts';

const engines: RerankEngine[] = [];
after(async () => {
  await Promise.all(engines.map((engine) => engine.close()));
});

async function engineFor(config: RerankConfigInput, options: Partial<RerankEngineOptions> = {}) {
  const loaded = parseConfig(JSON.stringify(config), { source: 'test', baseDir: '/' });
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const engine = await RerankEngine.create({ loaded, metrics, logger: silentLogger(), ...options });
  engines.push(engine);
  return { engine, metrics };
}

const isKind = (kind: RerankError['kind'], field?: string) => (error: unknown) => {
  assert.ok(error instanceof RerankError, `a RerankError, got ${String(error)}`);
  assert.equal(error.kind, kind, error.message);
  if (field !== undefined) assert.equal(error.field, field);
  return true;
};

const QUERY = 'what is the history of the city?';
const DOCUMENTS = [
  'the river runs through the city',
  'water',
  'a much longer document about the history of the city and its market, its school, its music and the people who lived there for many years',
  'energy policy and the market',
];

let bert: string;
let xlmr: string;
let broken: string;

before(async () => {
  bert = (await tinyModel()).dir;
  xlmr = (await tinyModel({ arch: 'xlmr', logits: 'batch' })).dir;
  // A model directory whose model.onnx is not a model: the tokenizer loads, the session does not.
  broken = await scratchDir('broken');
  await mkdir(broken, { recursive: true });
  await copyFile((await tinyModel()).tokenizerPath, path.join(broken, 'tokenizer.json'));
  await writeFile(path.join(broken, 'model.onnx'), 'garbage');
});

describe('RerankEngine', () => {
  let engine: RerankEngine;
  let metrics: ServerMetrics;
  before(async () => {
    ({ engine, metrics } = await engineFor({
      defaultVersion: 'stable',
      versions: {
        stable: { model: bert, weight: 100, description: 'bert' },
        multilingual: { model: xlmr, weight: 0 },
        broken: { model: broken, weight: 0 },
        retired: { model: bert, enabled: false },
      },
      serving: { maxLength: 64, maxDocuments: 10 },
    }));
  });

  it('loads every enabled version; a broken one is failed with the reason and the others serve', () => {
    assert.equal(engine.isReady(), true);
    const info = engine.info();
    const byName = Object.fromEntries(info.versions.map((v) => [v.name, v]));
    assert.equal(byName.stable?.state, 'ready');
    assert.equal(byName.multilingual?.state, 'ready');
    assert.equal(byName.broken?.state, 'failed');
    assert.match(byName.broken?.error ?? '', /model\.onnx/);
    assert.equal(byName.retired?.state, 'disabled');
    assert.equal(byName.stable?.synthetic, true);
    assert.deepEqual(byName.multilingual?.inputs.sort(), ['attention_mask', 'input_ids']);
    assert.equal(byName.stable?.device, 'cpu');
    assert.deepEqual(info.devices, [{ device: 'cpu', versions: ['stable', 'multilingual'] }], 'no version wants a GPU: cpu alone, with what runs there');
    assert.equal(info.limits.maxLength, 64);
    assert.equal(info.defaultVersion, 'stable');
    assert.equal(info.configHash.length, 16);
  });

  it('answers logits, sigmoid scores, tokens and timings, in request order', async () => {
    const outcome = await engine.rerank({ query: QUERY, documents: DOCUMENTS });
    assert.equal(outcome.version, 'stable');
    assert.equal(outcome.logits.length, DOCUMENTS.length);
    outcome.logits.forEach((logit, i) => assert.ok(Math.abs((outcome.scores[i] as number) - 1 / (1 + Math.exp(-logit))) < 1e-12));
    assert.ok(outcome.tokens > DOCUMENTS.length * 3);
    const { tokenizeSeconds, queueSeconds, inferenceSeconds } = outcome.timings;
    assert.ok(tokenizeSeconds > 0 && queueSeconds >= 0 && inferenceSeconds > 0);
  });

  it("scores a document the same alone as among others of other lengths, from other requests too", async () => {
    const together = await Promise.all([
      engine.rerank({ query: QUERY, documents: DOCUMENTS }),
      engine.rerank({ query: QUERY, documents: [...DOCUMENTS].reverse() }),
    ]);
    for (let i = 0; i < DOCUMENTS.length; i += 1) {
      const alone = await engine.rerank({ query: QUERY, documents: [DOCUMENTS[i] as string] });
      const expected = alone.logits[0] as number;
      assert.ok(Math.abs((together[0].logits[i] as number) - expected) < 1e-4);
      assert.ok(Math.abs((together[1].logits[DOCUMENTS.length - 1 - i] as number) - expected) < 1e-4);
    }
  });

  it('serves the version named by the path, then by the header; an unusable one falls back to the default', async () => {
    assert.equal((await engine.rerank({ query: QUERY, documents: DOCUMENTS, pathVersion: 'multilingual', headerVersion: 'stable' })).version, 'multilingual');
    assert.equal((await engine.rerank({ query: QUERY, documents: DOCUMENTS, headerVersion: 'multilingual' })).version, 'multilingual');
    for (const name of ['nope', 'broken', 'retired']) {
      const outcome = await engine.rerank({ query: QUERY, documents: DOCUMENTS, headerVersion: name });
      assert.equal(outcome.version, 'stable');
      assert.equal(outcome.fallbackFrom, name);
    }
    assert.equal((await engine.rerank({ query: QUERY, documents: DOCUMENTS, pathVersion: 'broken' })).fallbackFrom, 'broken', 'a configured version on the path falls back');
    await assert.rejects(engine.rerank({ query: QUERY, documents: DOCUMENTS, pathVersion: 'nope' }), isKind('not_found'));
  });

  it('truncates long documents to maxLength, or refuses them with truncate: false', async () => {
    const long = 'water '.repeat(500);
    const outcome = await engine.rerank({ query: QUERY, documents: ['short', long] });
    assert.ok(outcome.tokens <= 2 * 64);
    await assert.rejects(engine.rerank({ query: QUERY, documents: ['short', long], truncate: false }), isKind('payload_too_large', 'documents.1'));
  });

  it('validates the document count', async () => {
    await assert.rejects(engine.rerank({ query: QUERY, documents: Array.from({ length: 11 }, () => 'x') }), isKind('payload_too_large', 'documents'));
    await assert.rejects(engine.rerank({ query: QUERY, documents: [] }), isKind('validation', 'documents'));
  });

  it('answers a caller that already went away with cancelled', async () => {
    await assert.rejects(engine.rerank({ query: QUERY, documents: DOCUMENTS, signal: AbortSignal.abort() }), isKind('cancelled'));
  });

  it('packs concurrent requests into shared batches and exports the metrics', async () => {
    // Documents of one token length each, so every pair of every request may share a batch.
    const documents = ['water city school', 'house world people', 'life state family', 'country church program'];
    const before = await batchCount(metrics);
    const requests = Array.from({ length: 8 }, (_, r) => engine.rerank({ query: `${QUERY} ${r}`, documents }));
    await Promise.all(requests);
    const batches = (await batchCount(metrics)) - before;
    // At worst the first request runs alone while the other seven queue behind it.
    assert.ok(batches <= 2, `${batches} batches for 8 requests of 4 documents`);
    const text = await metrics.registry.metrics();
    assert.match(text, /reranker_tokenization_duration_seconds_count\{version="stable"\} \d+/);
    assert.match(text, /reranker_version_info\{version="broken",device="cpu",state="failed"\} 1/);
    assert.match(text, /reranker_version_info\{version="stable",device="cpu",state="ready"\} 1/);
  });

  it('packs under serving.maxPaddingRatio, and a reload changes it for the next batches', async () => {
    // One pair of a few tokens beside one of many: a batch of both is mostly padding.
    const documents = ['water', 'a much longer document about the history of the city and its market, its school, its music and the people who lived there for many years'];
    const config = (maxPaddingRatio: number): RerankConfigInput => ({
      defaultVersion: 'v',
      versions: { v: { model: bert } },
      serving: { maxPaddingRatio },
    });
    const { engine: packed, metrics: packedMetrics } = await engineFor(config(1));
    const batchesOf = async () => {
      const before = await batchCount(packedMetrics);
      await packed.rerank({ query: QUERY, documents });
      return (await batchCount(packedMetrics)) - before;
    };
    assert.equal(await batchesOf(), 1, 'no cap: both pairs in one batch');
    const report = await packed.apply(parseConfig(JSON.stringify(config(0.05)), { source: 'test', baseDir: '/' }));
    assert.deepEqual(report.versions.filter((v) => v.action === 'failed'), []);
    assert.equal(await batchesOf(), 2, 'a 5 % cap: each pair in a batch of its own');
  });

  it('counts the requests a version is working on in reranker_inflight_requests, back to 0 when answered', async () => {
    const inflight = async () => (await metrics.inflight.get()).values.find((v) => v.labels.version === 'stable')?.value ?? 0;
    const requests = Array.from({ length: 3 }, (_, r) => engine.rerank({ query: `${QUERY} ${r}`, documents: DOCUMENTS }));
    // Picked in the same turn as the call: all three count before any is answered.
    assert.equal(await inflight(), 3);
    await Promise.all(requests);
    assert.equal(await inflight(), 0);
    // A refused request (cancelled before the pick) never counts.
    await assert.rejects(engine.rerank({ query: QUERY, documents: DOCUMENTS, signal: AbortSignal.abort() }), isKind('cancelled'));
    assert.equal(await inflight(), 0);
  });
});

describe('RerankEngine failures of a chosen version', () => {
  it('are marked with the version, so the request counts as its failure; failures before the pick are not', async () => {
    const { engine } = await engineFor({ defaultVersion: 'stable', versions: { stable: { model: bert } }, serving: { maxQueuedPairs: 2, maxDocuments: 10 } });
    // Three pairs for a queue of two: refused by the version's queue, after the version was chosen.
    const refused = await engine.rerank({ query: QUERY, documents: DOCUMENTS.slice(0, 3) }).catch((error: unknown) => error);
    assert.ok(refused instanceof RerankError && refused.kind === 'payload_too_large', String(refused));
    assert.equal(versionOfFailure(refused), 'stable');
    const early = await engine.rerank({ query: QUERY, documents: [] }).catch((error: unknown) => error);
    assert.ok(early instanceof RerankError && early.kind === 'validation', String(early));
    assert.equal(versionOfFailure(early), undefined);
    // A wrapping error (the TEI adapter renames fields) keeps the version through its cause.
    assert.equal(versionOfFailure(new RerankError('payload_too_large', 'texts: ...', { cause: refused })), 'stable');
  });
});

describe('RerankEngine without a working default', () => {
  it('is not ready and answers unavailable, while a named working version still serves', async () => {
    const { engine } = await engineFor({
      defaultVersion: 'stable',
      versions: { stable: { model: broken, weight: 0 }, canary: { model: bert, weight: 0 } },
    });
    assert.equal(engine.isReady(), false);
    await assert.rejects(engine.rerank({ query: QUERY, documents: DOCUMENTS }), isKind('unavailable'));
    assert.equal((await engine.rerank({ query: QUERY, documents: DOCUMENTS, pathVersion: 'canary' })).version, 'canary');
  });

  it('answers a version whose model directory is missing as failed', async () => {
    const { engine } = await engineFor({
      defaultVersion: 'stable',
      versions: { stable: { model: bert }, gone: { model: '/nonexistent/model-dir' } },
    });
    const gone = engine.info().versions.find((v) => v.name === 'gone');
    assert.equal(gone?.state, 'failed');
    assert.match(gone?.error ?? '', /no model\.onnx in \/nonexistent\/model-dir/);
    assert.equal(engine.isReady(), true);
  });
});

describe('RerankEngine routing and shutdown', () => {
  it('splits unpinned traffic by weight with the injected random source', async () => {
    const draws = [0.1, 0.7, 0.2, 0.9];
    let next = 0;
    const { engine } = await engineFor(
      { defaultVersion: 'a', versions: { a: { model: bert, weight: 50 }, b: { model: xlmr, weight: 50 } } },
      { random: () => draws[next++ % draws.length] as number },
    );
    const answered = [];
    for (let i = 0; i < draws.length; i += 1) answered.push((await engine.rerank({ query: QUERY, documents: ['water'] })).version);
    assert.deepEqual(answered, ['a', 'b', 'a', 'b']);
  });

  it('finishes accepted work on close, then refuses', async () => {
    const { engine } = await engineFor({ defaultVersion: 'a', versions: { a: { model: bert } } });
    const inFlight = engine.rerank({ query: QUERY, documents: DOCUMENTS });
    await engine.close();
    assert.equal((await inFlight).logits.length, DOCUMENTS.length);
    assert.equal(engine.isReady(), false);
    await assert.rejects(engine.rerank({ query: QUERY, documents: DOCUMENTS }), isKind('unavailable'));
  });
});

async function batchCount(metrics: ServerMetrics): Promise<number> {
  const metric = await metrics.batchSize.get();
  return metric.values.filter((v) => v.metricName === 'reranker_batch_size_count').reduce((sum, v) => sum + v.value, 0);
}
