import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigWatcher, contentHash, type WatchMode } from '../server/config/watcher.ts';
import { diffConfig } from '../server/config/diff.ts';

/** A directory laid out the way kubelet mounts a ConfigMap: config.yaml → ..data/config.yaml → ..<ts>/config.yaml. */
async function kubeletVolume(text: string) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-cm-'));
  let generation = 0;
  const publish = async (content: string) => {
    generation += 1;
    const stamp = `..2026_11_23_00_00_${String(generation).padStart(2, '0')}.000000001`;
    await mkdir(path.join(dir, stamp));
    await writeFile(path.join(dir, stamp, 'config.yaml'), content);
    // Atomic swap: a new symlink under a temp name, renamed over ..data (what kubelet's AtomicWriter does).
    await symlink(stamp, path.join(dir, '..data_tmp'));
    await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    const previous = `..2026_11_23_00_00_${String(generation - 1).padStart(2, '0')}.000000001`;
    if (generation > 1) await rm(path.join(dir, previous), { recursive: true, force: true });
  };
  await publish(text);
  await symlink('..data/config.yaml', path.join(dir, 'config.yaml'));
  return { file: path.join(dir, 'config.yaml'), publish };
}

function recorder() {
  const seen: string[] = [];
  return {
    seen,
    onChange: (text: string) => {
      seen.push(text);
    },
    async waitFor(count: number, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      while (seen.length < count && Date.now() < deadline) await sleep(5);
      return seen.length;
    },
  };
}

for (const mode of ['events', 'poll'] as WatchMode[]) {
  describe(`ConfigWatcher (${mode})`, () => {
    const timing = { mode, debounceMs: 20, pollIntervalMs: 30 };

    test('a kubelet ..data symlink swap is delivered exactly once per change, indefinitely', async () => {
      const volume = await kubeletVolume('v: 0\n');
      const rec = recorder();
      const watcher = new ConfigWatcher({ file: volume.file, onChange: rec.onChange, ...timing });
      watcher.start(contentHash('v: 0\n'));
      try {
        for (let i = 1; i <= 5; i += 1) {
          await volume.publish(`v: ${i}\n`);
          assert.equal(await rec.waitFor(i), i, `change ${i} delivered`);
          await sleep(80); // no duplicate deliveries trail behind
          assert.deepEqual(rec.seen, Array.from({ length: i }, (_, k) => `v: ${k + 1}\n`));
        }
      } finally {
        watcher.stop();
      }
    });

    test('an editor save by rename is delivered once; rewriting the same content is not', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-edit-'));
      const file = path.join(dir, 'config.yaml');
      await writeFile(file, 'a: 1\n');
      const rec = recorder();
      const watcher = new ConfigWatcher({ file, onChange: rec.onChange, ...timing });
      watcher.start(contentHash('a: 1\n'));
      try {
        await writeFile(path.join(dir, '.config.yaml.swp'), 'a: 2\n');
        await rename(path.join(dir, '.config.yaml.swp'), file);
        assert.equal(await rec.waitFor(1), 1);
        await writeFile(file, 'a: 2\n');
        await sleep(120);
        assert.deepEqual(rec.seen, ['a: 2\n']);
      } finally {
        watcher.stop();
      }
    });
  });
}

describe('ConfigWatcher', () => {
  test('rapid edits collapse: the last content is always delivered, and no stale one after it', async () => {
    const volume = await kubeletVolume('n: 0\n');
    const rec = recorder();
    const watcher = new ConfigWatcher({ file: volume.file, onChange: rec.onChange, mode: 'auto', debounceMs: 20, pollIntervalMs: 50 });
    watcher.start(contentHash('n: 0\n'));
    try {
      for (let i = 1; i <= 20; i += 1) await volume.publish(`n: ${i}\n`);
      const deadline = Date.now() + 3000;
      while (rec.seen.at(-1) !== 'n: 20\n' && Date.now() < deadline) await sleep(5);
      await sleep(150);
      assert.equal(rec.seen.at(-1), 'n: 20\n');
      assert.ok(rec.seen.length <= 20, `at most one delivery per change, got ${rec.seen.length}`);
      assert.equal(new Set(rec.seen).size, rec.seen.length, 'no content delivered twice');
    } finally {
      watcher.stop();
    }
  });

  test('check({force}) redelivers unchanged content (SIGHUP); a read error is reported and watching goes on', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-force-'));
    const file = path.join(dir, 'config.yaml');
    await writeFile(file, 'x: 1\n');
    const rec = recorder();
    const errors: Error[] = [];
    const watcher = new ConfigWatcher({ file, onChange: rec.onChange, onError: (e) => errors.push(e), mode: 'events', debounceMs: 10 });
    watcher.start(contentHash('x: 1\n'));
    try {
      await watcher.check();
      assert.deepEqual(rec.seen, []);
      await watcher.check({ force: true });
      assert.deepEqual(rec.seen, ['x: 1\n']);
      await rm(file);
      await watcher.check();
      assert.ok(errors.some((e) => /ENOENT/.test(e.message)));
      await writeFile(file, 'x: 2\n');
      assert.equal(await rec.waitFor(2), 2);
    } finally {
      watcher.stop();
    }
  });

  test('a failing onChange is reported, and the next change is still delivered', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-fail-'));
    const file = path.join(dir, 'config.yaml');
    await writeFile(file, 'y: 1\n');
    const seen: string[] = [];
    const errors: Error[] = [];
    const watcher = new ConfigWatcher({
      file,
      mode: 'poll',
      pollIntervalMs: 20,
      onChange: (text) => {
        seen.push(text);
        if (text === 'y: 2\n') throw new Error('rejected');
      },
      onError: (e) => errors.push(e),
    });
    watcher.start(contentHash('y: 1\n'));
    try {
      await writeFile(file, 'y: 2\n');
      const deadline = Date.now() + 2000;
      while (seen.length < 1 && Date.now() < deadline) await sleep(5);
      await writeFile(file, 'y: 3\n');
      while (seen.length < 2 && Date.now() < deadline) await sleep(5);
      assert.deepEqual(seen, ['y: 2\n', 'y: 3\n']);
      assert.deepEqual(errors.map((e) => e.message), ['rejected']);
    } finally {
      watcher.stop();
    }
  });
});

describe('diffConfig', () => {
  test('lists changed, added and removed leaves by dotted path', () => {
    assert.deepEqual(
      diffConfig(
        { serving: { topK: 5, threshold: 0.1 }, versions: { a: { weight: 90 }, b: { weight: 10 } } },
        { serving: { topK: 3, threshold: 0.1 }, versions: { a: { weight: 100 }, c: { weight: 0 } } },
      ),
      [
        { path: 'serving.topK', from: 5, to: 3 },
        { path: 'versions.a.weight', from: 90, to: 100 },
        { path: 'versions.b', from: { weight: 10 }, to: undefined },
        { path: 'versions.c', from: undefined, to: { weight: 0 } },
      ],
    );
    assert.deepEqual(diffConfig({ a: [1, 2] }, { a: [1, 2] }), []);
  });
});
