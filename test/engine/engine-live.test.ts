import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RerankConfigInput } from '../../server/config/schema.ts';
import { RerankEngine, type ApplyReport, type RerankEngineOptions, type VersionAction } from '../../server/engine/engine.ts';
import type { RerankOutcome } from '../../server/engine/types.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { scratchDir, tinyModel } from '../support/models.ts';
import { DOCUMENTS, GatedLoader, QUERY, loadedConfig, requestLoad, seededRandom } from './live-support.ts';

/**
 * Hot reload, engine side: every change is applied while 8 request loops run, and none of their
 * requests may fail.
 */

let seed42: string;
let seed7: string;
let broken: string;

before(async () => {
  seed42 = (await tinyModel()).dir;
  seed7 = (await tinyModel({ seed: 7 })).dir;
  broken = await scratchDir('broken');
  await mkdir(broken, { recursive: true });
  await copyFile((await tinyModel()).tokenizerPath, path.join(broken, 'tokenizer.json'));
  await writeFile(path.join(broken, 'model.onnx'), 'garbage');
});

const engines: RerankEngine[] = [];
after(async () => {
  await Promise.all(engines.map((engine) => engine.close()));
});

async function engineFor(config: RerankConfigInput, options: Partial<RerankEngineOptions> = {}) {
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const engine = await RerankEngine.create({ loaded: loadedConfig(config), metrics, logger: silentLogger(), intraOpNumThreads: 1, ...options });
  engines.push(engine);
  return { engine, metrics };
}

function actions(report: ApplyReport): Record<string, VersionAction> {
  return Object.fromEntries(report.versions.map((v) => [v.name, v.action]));
}

function version(engine: RerankEngine, name: string) {
  return engine.info().versions.find((v) => v.name === name);
}

/** Logits of the fixed query and documents through `name`. */
async function logitsOf(engine: RerankEngine, name: string): Promise<number[]> {
  const outcome = await engine.rerank({ query: QUERY, documents: DOCUMENTS, pathVersion: name });
  assert.equal(outcome.version, name);
  return outcome.logits;
}

async function counterValue(metric: ServerMetrics['versionLoadFailures'], version: string): Promise<number> {
  return (await metric.get()).values.find((v) => v.labels.version === version)?.value ?? 0;
}

/** Runs `change` under 8 request loops (half pinned to `pin`), and asserts that no request failed. */
async function underLoad<T>(engine: RerankEngine, pin: string, change: () => Promise<T>): Promise<T> {
  const load = requestLoad(engine, { shape: (i) => (i % 2 === 0 ? { headerVersion: pin } : {}) });
  await load.progress();
  const result = await change();
  await load.progress();
  const { ok, failed, errors } = await load.stop();
  assert.equal(failed, 0, `failed requests: ${errors.join(' | ')}`);
  assert.ok(ok > 16, `${ok} requests`);
  return result;
}

describe('RerankEngine.apply: versions', () => {
  const base = (): RerankConfigInput => ({
    defaultVersion: 'a',
    versions: { a: { model: seed42, weight: 50 }, b: { model: seed7, weight: 50, enabled: false } },
    serving: { maxLength: 64 },
  });

  it('enables a version: loads and warms it, then it takes traffic', async () => {
    const { engine } = await engineFor(base());
    assert.equal(engine.liveSessions(), 1);
    const config = base();
    config.versions.b = { model: seed7, weight: 50, enabled: true };
    const report = await underLoad(engine, 'b', () => engine.apply(loadedConfig(config)));
    assert.deepEqual(actions(report), { a: 'unchanged', b: 'loaded' });
    assert.equal(version(engine, 'b')?.state, 'ready');
    assert.equal(engine.liveSessions(), 2);
    assert.equal((await engine.rerank({ query: QUERY, documents: DOCUMENTS, headerVersion: 'b' })).version, 'b');
  });

  it('disables a version: routing stops at once, in-flight work finishes, its session is freed', async () => {
    const enabled = base();
    enabled.versions.b = { model: seed7, weight: 50 };
    const { engine, metrics } = await engineFor(enabled);
    assert.equal(engine.liveSessions(), 2);
    let tokenizing: Promise<RerankOutcome> | undefined;
    const report = await underLoad(engine, 'b', async () => {
      // A request still tokenizing on b when b is disabled: it must finish on b.
      tokenizing = engine.rerank({ query: QUERY, documents: DOCUMENTS, pathVersion: 'b' });
      const applied = engine.apply(loadedConfig(base()));
      const outcome = await engine.rerank({ query: QUERY, documents: DOCUMENTS, headerVersion: 'b' });
      assert.equal(outcome.version, 'a', 'the next request no longer reaches b');
      assert.equal(outcome.fallbackFrom, 'b');
      return applied;
    });
    assert.equal((await tokenizing)?.version, 'b');
    assert.deepEqual(actions(report), { a: 'unchanged', b: 'unloaded' });
    const b = version(engine, 'b');
    assert.equal(b?.state, 'disabled');
    assert.equal(b?.inFlight, 0);
    assert.equal(engine.liveSessions(), 1, 'b session released (its worker has exited)');
    assert.match(await metrics.registry.metrics(), /reranker_version_info\{version="b",device="cpu",state="disabled"\} 1/);
    assert.doesNotMatch(await metrics.registry.metrics(), /version="b",device="cpu",state="(ready|draining)"/);
  });

  it('enable/disable cycles free every session and reuse the parsed tokenizer', async () => {
    const { engine } = await engineFor(base());
    const enabled = base();
    enabled.versions.b = { model: seed7, weight: 50 };
    await underLoad(engine, 'b', async () => {
      for (let i = 0; i < 5; i += 1) {
        assert.deepEqual(actions(await engine.apply(loadedConfig(enabled))), { a: 'unchanged', b: 'loaded' });
        assert.deepEqual(engine.tokenizers(), { held: 2, idle: 0 });
        assert.deepEqual(actions(await engine.apply(loadedConfig(base()))), { a: 'unchanged', b: 'unloaded' });
        assert.equal(engine.liveSessions(), 1);
        assert.deepEqual(engine.tokenizers(), { held: 2, idle: 1 }, "b's tokenizer is kept for its return, not parsed again");
      }
    });
  });

  it('replaces a model: the new one answers once ready, the old one is drained and freed', async () => {
    const { engine } = await engineFor(base());
    const before = await logitsOf(engine, 'a');
    const config = base();
    config.versions.a = { model: seed7, weight: 50 };
    const report = await underLoad(engine, 'a', () => engine.apply(loadedConfig(config)));
    assert.deepEqual(actions(report), { a: 'replaced', b: 'unchanged' });
    const afterLogits = await logitsOf(engine, 'a');
    assert.notDeepEqual(afterLogits, before, 'seed 7 scores differently from seed 42');
    const direct = await engineFor({ defaultVersion: 'x', versions: { x: { model: seed7 } }, serving: { maxLength: 64 } }, { modelThread: 'main' });
    assert.deepEqual(afterLogits, await logitsOf(direct.engine, 'x'));
    assert.equal(version(engine, 'a')?.modelPath, seed7);
    assert.equal(engine.liveSessions(), 1);
  });

  it('adds and removes versions', async () => {
    const { engine, metrics } = await engineFor(base());
    const added = base();
    added.versions.c = { model: seed7, weight: 10, description: 'new' };
    assert.deepEqual(actions(await underLoad(engine, 'c', () => engine.apply(loadedConfig(added)))), { a: 'unchanged', b: 'unchanged', c: 'loaded' });
    assert.equal(version(engine, 'c')?.description, 'new');
    assert.equal(engine.liveSessions(), 2);

    const removed = base();
    delete removed.versions.b;
    const report = await underLoad(engine, 'c', () => engine.apply(loadedConfig(removed)));
    assert.deepEqual(actions(report), { a: 'unchanged', b: 'unloaded', c: 'unloaded' });
    assert.deepEqual(
      engine.info().versions.map((v) => v.name),
      ['a'],
    );
    assert.equal(engine.liveSessions(), 1);
    assert.doesNotMatch(await metrics.registry.metrics(), /version="c"/);
  });

  it('a new version that fails to load is failed with the reason; the others keep serving', async () => {
    const { engine, metrics } = await engineFor(base(), { modelThread: 'main' });
    const config = base();
    config.versions.bad = { model: broken, weight: 50 };
    const report = await underLoad(engine, 'bad', () => engine.apply(loadedConfig(config)));
    const bad = report.versions.find((v) => v.name === 'bad');
    assert.equal(bad?.action, 'failed');
    assert.match(bad?.error ?? '', /model\.onnx/);
    assert.equal(version(engine, 'bad')?.state, 'failed');
    assert.equal(await counterValue(metrics.versionLoadFailures, 'bad'), 1);
    assert.equal(engine.isReady(), true);
    assert.equal(engine.liveSessions(), 1);
  });

  it('retryFailed loads a failed version once its model is there, and leaves the others alone', async () => {
    const { engine } = await engineFor(base(), { modelThread: 'main' });
    const late = await scratchDir('late');
    const config = base();
    config.versions.late = { model: late, weight: 0 };
    const loaded = loadedConfig(config);
    assert.equal(actions(await engine.apply(loaded)).late, 'failed');
    assert.equal(actions(await engine.apply(loaded)).late, 'failed', 'the same config retries, and fails again');
    await mkdir(late);
    for (const file of ['model.onnx', 'tokenizer.json', 'config.json']) await copyFile(path.join(seed7, file), path.join(late, file));
    const report = await engine.retryFailed();
    assert.deepEqual(actions(report), { a: 'unchanged', b: 'unchanged', late: 'loaded' });
    assert.equal(version(engine, 'late')?.state, 'ready');
    assert.equal(version(engine, 'late')?.error, undefined);
    assert.deepEqual(actions(await engine.retryFailed()), { a: 'unchanged', b: 'unchanged', late: 'unchanged' });
  });

  it('a model change that fails keeps the old model serving and reports the error', async () => {
    const { engine, metrics } = await engineFor(base(), { modelThread: 'main' });
    const before = await logitsOf(engine, 'a');
    const config = base();
    config.versions.a = { model: broken, weight: 50 };
    const report = await underLoad(engine, 'a', () => engine.apply(loadedConfig(config)));
    assert.equal(report.versions.find((v) => v.name === 'a')?.action, 'failed');
    const a = version(engine, 'a');
    assert.equal(a?.state, 'ready');
    assert.equal(a?.modelPath, seed42, 'the old model serves');
    assert.match(a?.error ?? '', /model\.onnx/);
    assert.deepEqual(await logitsOf(engine, 'a'), before);
    assert.equal(await counterValue(metrics.versionLoadFailures, 'a'), 1);
    assert.equal(engine.isReady(), true);
    assert.equal(engine.liveSessions(), 1);

    // Reverting the config clears the error.
    assert.deepEqual(actions(await engine.apply(loadedConfig(base()))), { a: 'updated', b: 'unchanged' });
    assert.equal(version(engine, 'a')?.error, undefined);
  });

  it('enable/disable cycles leave no session behind', async () => {
    const { engine } = await engineFor(base());
    const enabled = base();
    enabled.versions.b = { model: seed7, weight: 50 };
    await underLoad(engine, 'b', async () => {
      for (let cycle = 0; cycle < 5; cycle += 1) {
        assert.equal(actions(await engine.apply(loadedConfig(enabled))).b, 'loaded');
        assert.equal(engine.liveSessions(), 2);
        assert.equal(actions(await engine.apply(loadedConfig(base()))).b, 'unloaded');
        assert.equal(engine.liveSessions(), 1);
      }
    });
  });

  it('rapid successive applies: the last one wins and no session leaks', async () => {
    const { engine } = await engineFor(base());
    const configs: RerankConfigInput[] = [];
    for (let i = 0; i < 8; i += 1) {
      const config = base();
      config.versions.a = { model: i % 2 === 0 ? seed7 : seed42, weight: 50 };
      config.versions.b = { model: i % 3 === 0 ? seed42 : seed7, weight: 50, enabled: i % 2 === 0 };
      configs.push(config);
    }
    const last: RerankConfigInput = { defaultVersion: 'a', versions: { a: { model: seed7, weight: 20 }, c: { model: seed42, weight: 80 } }, serving: { maxLength: 64 } };
    configs.push(last);
    const reports = await underLoad(engine, 'b', () => Promise.all(configs.map((config) => engine.apply(loadedConfig(config)))));
    assert.equal(reports.length, configs.length);
    const info = engine.info();
    assert.deepEqual(
      info.versions.map((v) => [v.name, v.state, v.modelPath]),
      [
        ['a', 'ready', seed7],
        ['c', 'ready', seed42],
      ],
    );
    assert.equal(engine.liveSessions(), 2);
  });

  it('a slow load does not stall the other versions, and a new default takes over once ready', async () => {
    const gate = new GatedLoader();
    const { engine } = await engineFor(base(), { loadModel: gate.load });
    gate.hold();
    const reached = gate.waiting();
    // The new default is brand new and the old default is removed in the same apply.
    const config: RerankConfigInput = { defaultVersion: 'c', versions: { c: { model: seed7, weight: 100 } }, serving: { maxLength: 64 } };
    const load = requestLoad(engine);
    await load.progress();
    const applied = engine.apply(loadedConfig(config));
    await reached;
    assert.equal(version(engine, 'c')?.state, 'loading');
    assert.equal(engine.isReady(), true, 'ready while the previous default stands in');
    assert.equal(engine.info().servingDefault, 'a');
    const started = performance.now();
    await load.progress(5);
    assert.ok(performance.now() - started < 2000, 'requests keep flowing while c loads');
    gate.open();
    const report = await applied;
    await load.progress();
    const { failed, errors, versions } = await load.stop();
    assert.equal(failed, 0, errors.join(' | '));
    assert.ok((versions.a ?? 0) > 0 && (versions.c ?? 0) > 0, JSON.stringify(versions));
    assert.deepEqual(actions(report), { a: 'unloaded', b: 'unloaded', c: 'loaded' });
    assert.equal(report.servingDefault, undefined);
    assert.equal(engine.info().servingDefault, undefined);
    assert.equal((await engine.rerank({ query: QUERY, documents: DOCUMENTS })).version, 'c');
    assert.equal(engine.liveSessions(), 1);
  });

  it('a new default that fails to load: the previous default keeps answering', async () => {
    const { engine } = await engineFor(base(), { modelThread: 'main' });
    const config: RerankConfigInput = { defaultVersion: 'bad', versions: { a: { model: seed42, enabled: false }, bad: { model: broken } } };
    const report = await underLoad(engine, 'bad', () => engine.apply(loadedConfig(config)));
    assert.equal(report.servingDefault, 'a');
    assert.equal(actions(report).bad, 'failed');
    assert.equal(version(engine, 'a')?.state, 'draining');
    assert.equal(engine.isReady(), true);
    assert.equal((await engine.rerank({ query: QUERY, documents: DOCUMENTS })).version, 'a');
    // A later config that settles the default retires the stand-in.
    const settled: RerankConfigInput = { defaultVersion: 'c', versions: { a: { model: seed42, enabled: false }, c: { model: seed7 } } };
    const next = await engine.apply(loadedConfig(settled));
    assert.deepEqual(actions(next), { a: 'unloaded', bad: 'unloaded', c: 'loaded' });
    assert.equal(engine.liveSessions(), 1);
  });
});

describe('RerankEngine.apply: knobs and routing', () => {
  it('a knob change is in force for the next request, before the apply resolves', async () => {
    const config: RerankConfigInput = { defaultVersion: 'a', versions: { a: { model: seed42 } }, serving: { maxLength: 64 } };
    const { engine } = await engineFor(config, { modelThread: 'main' });
    const long = 'water '.repeat(200);
    assert.ok((await engine.rerank({ query: QUERY, documents: [long] })).tokens > 32);
    const before = engine.info().appliedAt;
    const applied = engine.apply(loadedConfig({ ...config, serving: { maxLength: 16, maxDocuments: 2 } }));
    assert.equal((await engine.rerank({ query: QUERY, documents: [long] })).tokens, 16);
    await assert.rejects(engine.rerank({ query: QUERY, documents: ['x', 'y', 'z'] }), /limit of 2/);
    assert.equal(engine.info().limits.maxLength, 16);
    assert.notEqual(engine.info().appliedAt, before);
    assert.deepEqual(actions(await applied), { a: 'unchanged' });
  });

  it('weights change on the next request, and the split follows them within 2 points', async () => {
    const config: RerankConfigInput = { defaultVersion: 'a', versions: { a: { model: seed42, weight: 100 }, b: { model: seed7, weight: 0 } } };
    const { engine } = await engineFor(config, { random: seededRandom(2024), modelThread: 'main' });
    const applied = engine.apply(loadedConfig({ ...config, versions: { a: { model: seed42, weight: 70 }, b: { model: seed7, weight: 30 } } }));
    const counts: Record<string, number> = {};
    const total = 2000;
    for (let sent = 0; sent < total; sent += 100) {
      const outcomes = await Promise.all(Array.from({ length: 100 }, () => engine.rerank({ query: QUERY, documents: ['water'] })));
      for (const { version: v } of outcomes) counts[v] = (counts[v] ?? 0) + 1;
    }
    assert.ok(Math.abs((counts.b ?? 0) / total - 0.3) < 0.02, JSON.stringify(counts));
    assert.deepEqual(actions(await applied), { a: 'updated', b: 'updated' });
  });

  it('a sticky key stays on one version while the weights stay the same', async () => {
    const { engine } = await engineFor({ defaultVersion: 'a', versions: { a: { model: seed42, weight: 50 }, b: { model: seed7, weight: 50 } } }, { modelThread: 'main' });
    const seen: Record<string, number> = {};
    for (let user = 0; user < 40; user += 1) {
      const answers = new Set<string>();
      for (let i = 0; i < 5; i += 1) answers.add((await engine.rerank({ query: QUERY, documents: ['water'], stickyKey: `user-${user}` })).version);
      assert.equal(answers.size, 1, `user-${user} answered by ${[...answers].join(', ')}`);
      const [only] = answers;
      seen[only as string] = (seen[only as string] ?? 0) + 1;
    }
    assert.ok((seen.a ?? 0) > 5 && (seen.b ?? 0) > 5, JSON.stringify(seen));
  });

  it('reports queued pairs and in-flight requests per version', async () => {
    const { engine } = await engineFor({ defaultVersion: 'a', versions: { a: { model: seed42 } }, serving: { maxBatchSize: 1 } });
    const pending = Array.from({ length: 6 }, () => engine.rerank({ query: QUERY, documents: DOCUMENTS }));
    assert.equal(version(engine, 'a')?.inFlight, 6, 'counted from the pick, before tokenizing');
    let queued = 0;
    for (let turn = 0; turn < 10_000 && queued === 0; turn += 1) {
      await new Promise(setImmediate);
      queued = version(engine, 'a')?.queuedPairs ?? 0;
    }
    assert.ok(queued > 0);
    await Promise.all(pending);
    assert.equal(version(engine, 'a')?.inFlight, 0);
    assert.equal(version(engine, 'a')?.queuedPairs, 0);
  });
});
