import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig, type LoadedConfig } from '../server/config/load.ts';
import { ConfigReloader } from '../server/config/reloader.ts';
import { createLogger } from '../server/logger.ts';
import { ServerMetrics } from '../server/metrics.ts';
import { metricSum } from '../bench/stats.ts';

const V1 = 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: 100}\nserving: {topK: 5}\n';
const V2 = 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: 100}\nserving: {topK: 3}\n';
const BAD = 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: 300}\nserving: {topK: 3}\n';

async function setup() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-reload-'));
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, V1);
  const initial = parseConfig(V1, { source: file, baseDir: dir });
  const applied: LoadedConfig[] = [];
  let retries = 0;
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const reloader = new ConfigReloader({
    file,
    initial,
    initialText: V1,
    target: {
      apply: async (loaded) => void applied.push(loaded),
      retry: async () => void (retries += 1),
    },
    metrics,
    logger: createLogger('debug', sink),
    mode: 'events',
    debounceMs: 10,
  });
  const save = async (text: string) => {
    await writeFile(`${file}.tmp`, text);
    await rename(`${file}.tmp`, file);
  };
  const until = async (check: () => boolean) => {
    const deadline = Date.now() + 3000;
    while (!check() && Date.now() < deadline) await sleep(5);
    assert.ok(check(), 'condition not met in time');
  };
  return { dir, file, initial, applied, retries: () => retries, lines, metrics, reloader, save, until };
}

describe('ConfigReloader', () => {
  test('a valid edit is applied, logged as a diff with the new hash, and shown by the metrics and status', async () => {
    const t = await setup();
    t.reloader.start();
    try {
      await t.save(V2);
      await t.until(() => t.applied.length === 1);
      const next = t.applied[0]!;
      assert.equal(next.config.serving.topK, 3);
      assert.equal(t.reloader.status().hash, next.hash);
      const line = t.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('config applied'));
      assert.ok(line, 'applied change logged');
      assert.deepEqual(line.changes, ['serving.topK: 5 → 3']);
      assert.equal(line.to, next.hash);
      const text = await t.metrics.registry.metrics();
      assert.equal(metricSum(text, 'reranker_config_reloads_total', 'result="ok"'), 1);
      assert.equal(metricSum(text, 'reranker_config_info', `hash="${next.hash}"`), 1);
      assert.equal(metricSum(text, 'reranker_config_info', `hash="${t.initial.hash}"`), 0, 'old hash series removed');
    } finally {
      t.reloader.stop();
    }
  });

  test('an invalid edit is rejected naming the key; the last good config keeps serving; fixing it applies', async () => {
    const t = await setup();
    t.reloader.start();
    try {
      await t.save(BAD);
      await t.until(() => t.reloader.status().lastError !== undefined);
      assert.equal(t.applied.length, 0);
      assert.equal(t.reloader.status().hash, t.initial.hash);
      assert.match(t.reloader.status().lastError!.issues.join(), /versions\.a\.weight/);
      const rejected = t.lines.find((l) => l.level === 50);
      assert.match(String(rejected?.msg), /config rejected, keeping [0-9a-f]{16}: versions\.a\.weight/);
      let text = await t.metrics.registry.metrics();
      assert.equal(metricSum(text, 'reranker_config_reloads_total', 'result="error"'), 1);
      assert.equal(metricSum(text, 'reranker_config_last_reload_successful'), 0);

      await t.save(V2);
      await t.until(() => t.applied.length === 1);
      assert.equal(t.reloader.status().lastError, undefined);
      text = await t.metrics.registry.metrics();
      assert.equal(metricSum(text, 'reranker_config_last_reload_successful'), 1);
    } finally {
      t.reloader.stop();
    }
  });

  test('a forced reload of unchanged content applies nothing, counts "unchanged" and retries failed versions', async () => {
    const t = await setup();
    t.reloader.start();
    try {
      await t.reloader.forceReload();
      assert.equal(t.applied.length, 0);
      assert.equal(t.retries(), 1, 'SIGHUP of the same config retries what failed under it');
      const text = await t.metrics.registry.metrics();
      assert.equal(metricSum(text, 'reranker_config_reloads_total', 'result="unchanged"'), 1);
      // Same config, other formatting: same hash, nothing applied.
      assert.equal(await t.reloader.reloadText(`# a comment\n${V1}`), 'unchanged');
      assert.equal(t.applied.length, 0);
    } finally {
      t.reloader.stop();
    }
  });

  test('an unreadable config file is logged, not counted as a rejected reload; the config in force stays', async () => {
    const t = await setup();
    t.reloader.start();
    try {
      await rm(t.file);
      await t.until(() => t.lines.some((l) => l.msg === 'config file unreadable; keeping the config in force'));
      assert.equal(t.reloader.status().hash, t.initial.hash);
      assert.equal(t.reloader.status().lastError, undefined);
      const text = await t.metrics.registry.metrics();
      assert.equal(metricSum(text, 'reranker_config_reloads_total', 'result="error"'), 0);
      assert.equal(metricSum(text, 'reranker_config_last_reload_successful'), 1);
    } finally {
      t.reloader.stop();
    }
  });

  test('model paths in a reloaded config resolve against the config file directory', async () => {
    const t = await setup();
    assert.equal(await t.reloader.reloadText(V2), 'ok');
    assert.equal(t.applied[0]?.config.versions.a?.model, path.join(t.dir, 'm'));
  });
});
