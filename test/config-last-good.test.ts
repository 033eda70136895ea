import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rename, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultStateDir, LastGoodStore, writeFileAtomic, type WriteFile } from '../server/config/last-good.ts';
import { ConfigError, type LoadedConfig } from '../server/config/load.ts';
import { ConfigReloader } from '../server/config/reloader.ts';
import { loadStartConfig } from '../server/config/start-config.ts';
import { createLogger } from '../server/logger.ts';
import { ServerMetrics } from '../server/metrics.ts';
import { metricSum } from '../bench/stats.ts';

const V1 = 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: 100}\nserving: {topK: 5}\n';
const V2 = 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: 100}\nserving: {topK: 3}\n';
const BAD = 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: 300}\n';

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'rerank-last-good-'));
}

/** A directory that refuses writes the way a mounted ConfigMap does (root ignores file modes, so it is injected). */
function readOnly(dir: string): WriteFile {
  return (target, text) => {
    if (path.dirname(target) === dir) throw Object.assign(new Error(`EROFS: read-only file system, open '${target}'`), { code: 'EROFS' });
    writeFileAtomic(target, text);
  };
}

describe('LastGoodStore', () => {
  test('keeps the text beside the file, replacing it whole and leaving no temp file', async () => {
    const dir = await tempDir();
    const store = new LastGoodStore({ file: path.join(dir, 'config.yaml'), stateDir: path.join(dir, 'state') });
    assert.equal(store.read(), undefined);
    assert.equal(store.save(V1), path.join(dir, 'config.yaml.last-good'));
    assert.equal(store.save(V2), path.join(dir, 'config.yaml.last-good'));
    assert.equal(await readFile(path.join(dir, 'config.yaml.last-good'), 'utf8'), V2);
    assert.deepEqual((await readdir(dir)).sort(), ['config.yaml.last-good']);
    assert.equal(store.read()?.text, V2);
  });

  test('a read-only directory sends the copy to the state directory, named from the file so two files do not collide', async () => {
    const dir = await tempDir();
    const stateDir = path.join(dir, 'state');
    const mounted = path.join(dir, 'mounted');
    const other = path.join(dir, 'other');
    const writeFile = readOnly(mounted);
    const one = new LastGoodStore({ file: path.join(mounted, 'config.yaml'), stateDir, writeFile });
    const two = new LastGoodStore({ file: path.join(other, 'config.yaml'), stateDir, writeFile: readOnly(other) });
    const written = one.save(V1);
    assert.equal(path.dirname(written), stateDir);
    assert.match(path.basename(written), /^config\.yaml-[0-9a-f]{12}\.last-good$/);
    two.save(V2);
    assert.equal((await readdir(stateDir)).length, 2);
    assert.equal(one.read()?.text, V1);
    assert.equal(two.read()?.text, V2);
    // A new store (a restarted process) finds the copy in the state directory.
    assert.equal(new LastGoodStore({ file: path.join(mounted, 'config.yaml'), stateDir }).read()?.file, written);
  });

  test('any other write error is thrown, not hidden by the state directory', () => {
    const failing: WriteFile = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    };
    const store = new LastGoodStore({ file: '/nowhere/config.yaml', stateDir: '/nowhere/state', writeFile: failing });
    assert.throws(() => store.save(V1), /ENOSPC/);
  });

  test('of a copy beside the file and one in the state directory, the newer is read', async () => {
    const dir = await tempDir();
    const stateDir = path.join(dir, 'state');
    const file = path.join(dir, 'config.yaml');
    new LastGoodStore({ file, stateDir }).save(V1);
    const later = new LastGoodStore({ file, stateDir, writeFile: readOnly(dir) });
    later.save(V2);
    await utimes(later.beside, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    assert.deepEqual(new LastGoodStore({ file, stateDir }).read()?.text, V2);
  });

  test('the state directory is $RERANK_STATE_DIR, else one under the temp directory', () => {
    assert.equal(defaultStateDir({ RERANK_STATE_DIR: '/var/lib/rerank' }), '/var/lib/rerank');
    assert.equal(defaultStateDir({}), path.join(os.tmpdir(), 'rerank-server'));
  });
});

describe('loadStartConfig', () => {
  test('a valid file is loaded as is', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'config.yaml');
    await writeFile(file, V1);
    const start = await loadStartConfig(file, new LastGoodStore({ file, stateDir: dir }));
    assert.equal(start.text, V1);
    assert.equal(start.lastGood, undefined);
  });

  test('a broken file with a copy starts on the copy, its model paths resolved against the file\'s directory', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'config.yaml');
    const store = new LastGoodStore({ file, stateDir: path.join(dir, 'state'), writeFile: readOnly(dir) });
    store.save(V1);
    await writeFile(file, BAD);
    const start = await loadStartConfig(file, store);
    assert.equal(start.text, V1);
    assert.equal(start.loaded.config.versions.a?.model, path.join(dir, 'm'));
    assert.equal(start.loaded.source, file);
    assert.equal(start.lastGood?.copy, store.inStateDir);
    assert.match(start.lastGood?.issues.join() ?? '', /versions\.a\.weight/);
    assert.equal(start.lastGood?.fileText, BAD);
  });

  test('without a copy, or with a copy that is no longer valid, the start fails naming the file\'s issues', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'config.yaml');
    await writeFile(file, BAD);
    const store = new LastGoodStore({ file, stateDir: dir });
    await assert.rejects(loadStartConfig(file, store), (error: unknown) => error instanceof ConfigError && /versions\.a\.weight/.test(error.message));
    await writeFile(store.beside, 'versions: 3\n');
    await assert.rejects(loadStartConfig(file, store), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /versions\.a\.weight/);
      assert.match(error.message, /last good copy .*config\.yaml\.last-good/);
      return true;
    });
  });
});

describe('ConfigReloader with a last good store', () => {
  async function setup(options: { fileText: string; startOnCopy: boolean; writeFile?: WriteFile }) {
    const dir = await tempDir();
    const file = path.join(dir, 'config.yaml');
    const stateDir = path.join(dir, 'state');
    await writeFile(file, options.fileText);
    const seed = new LastGoodStore({ file, stateDir });
    if (options.startOnCopy) seed.save(V1);
    const store = new LastGoodStore({ file, stateDir, ...(options.writeFile ? { writeFile: options.writeFile } : {}) });
    const start = await loadStartConfig(file, store);
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const metrics = new ServerMetrics({ defaultMetrics: false });
    const applied: LoadedConfig[] = [];
    const reloader = new ConfigReloader({
      file,
      initial: start.loaded,
      initialText: start.text,
      target: { apply: async (loaded) => void applied.push(loaded) },
      metrics,
      logger: createLogger('info', sink),
      mode: 'events',
      debounceMs: 10,
      lastGood: store,
      ...(start.lastGood ? { startedOnLastGood: start.lastGood } : {}),
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
    return { file, store, reloader, metrics, lines, applied, save, until };
  }

  test('the config in force at start and each applied edit are kept; a rejected edit is not', async (t) => {
    const s = await setup({ fileText: V1, startOnCopy: false });
    s.reloader.start();
    t.after(() => s.reloader.stop());
    assert.equal(await readFile(s.store.beside, 'utf8'), V1);
    assert.equal(s.reloader.status().lastGood?.file, s.store.beside);
    await s.save(V2);
    await s.until(() => s.applied.length === 1);
    assert.equal(await readFile(s.store.beside, 'utf8'), V2);
    await s.save(BAD);
    await s.until(() => s.reloader.status().lastError !== undefined);
    assert.equal(await readFile(s.store.beside, 'utf8'), V2);
    assert.deepEqual(s.reloader.notices(), [], 'a rejected edit of a running server is not a start on the copy');
  });

  test('started on the copy: the file\'s error is in the status, the metrics and /info\'s notice until the file is fixed', async (t) => {
    const s = await setup({ fileText: BAD, startOnCopy: true });
    s.reloader.start();
    t.after(() => s.reloader.stop());
    const status = s.reloader.status();
    assert.match(status.lastError?.issues.join() ?? '', /versions\.a\.weight/);
    assert.equal(status.startedOnLastGood?.copy, s.store.beside);
    assert.equal(metricSum(await s.metrics.registry.metrics(), 'reranker_config_last_reload_successful'), 0);
    assert.equal(metricSum(await s.metrics.registry.metrics(), 'reranker_config_reloads_total', 'result="error"'), 1);
    assert.match(s.reloader.notices()[0] ?? '', /config file .*config\.yaml is invalid \(versions\.a\.weight.*\); serving the last good config [0-9a-f]{16} from .*last-good/);
    assert.ok(s.lines.some((line) => line.level === 50 && /rejected/.test(String(line.msg))), 'the file\'s error is logged');
    // The broken text is not delivered again by the watcher: still one error.
    await sleep(100);
    assert.equal(metricSum(await s.metrics.registry.metrics(), 'reranker_config_reloads_total', 'result="error"'), 1);

    await s.save(V2);
    await s.until(() => s.applied.length === 1);
    assert.equal(s.applied[0]?.config.serving.topK, 3);
    assert.equal(s.reloader.status().startedOnLastGood, undefined);
    assert.equal(s.reloader.status().lastError, undefined);
    assert.deepEqual(s.reloader.notices(), []);
    assert.equal(metricSum(await s.metrics.registry.metrics(), 'reranker_config_last_reload_successful'), 1);
    assert.equal(await readFile(s.store.beside, 'utf8'), V2);
  });

  test('started on the copy, a file fixed to the same config ends the notice without a new apply', async (t) => {
    const s = await setup({ fileText: BAD, startOnCopy: true });
    s.reloader.start();
    t.after(() => s.reloader.stop());
    await s.save(`# fixed\n${V1}`);
    await s.until(() => s.reloader.status().startedOnLastGood === undefined);
    assert.equal(s.applied.length, 0);
    assert.equal(s.reloader.status().lastError, undefined);
  });

  test('a copy that cannot be kept is logged once, counted, and shown; serving goes on', async (t) => {
    const failing: WriteFile = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    };
    const s = await setup({ fileText: V1, startOnCopy: false, writeFile: failing });
    s.reloader.start();
    t.after(() => s.reloader.stop());
    await s.save(V2);
    await s.until(() => s.applied.length === 1);
    assert.equal(metricSum(await s.metrics.registry.metrics(), 'reranker_config_last_good_save_failures_total'), 2);
    assert.equal(s.lines.filter((line) => /cannot keep the last good config/.test(String(line.msg))).length, 1);
    assert.match(s.reloader.status().lastGood?.error ?? '', /ENOSPC/);
  });
});
