import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { load } from 'js-yaml';
import { ConfigError } from '../server/config/load.ts';
import { WatchedFile, type Parsed, type ReloadResult, type WatchedFileOptions } from '../server/config/watched-file.ts';
import { createLogger } from '../server/logger.ts';

/** A toy format: YAML mapping of name → number; a negative number is a bad key. */
function parse(text: string): Parsed<Record<string, number>> {
  const value = (load(text) ?? {}) as Record<string, number>;
  const bad = Object.entries(value).filter(([, n]) => n < 0);
  if (bad.length > 0) throw new ConfigError('mem', bad.map(([key]) => `${key}: must be >= 0`));
  return { value, hash: JSON.stringify(Object.entries(value).sort()) };
}

function setup(file: string, options: Partial<WatchedFileOptions<Record<string, number>>> = {}) {
  const applied: Array<Record<string, number>> = [];
  const counted: ReloadResult[] = [];
  const series: string[] = [];
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const watched = new WatchedFile({
    file,
    name: 'limits',
    parse,
    apply: (next) => void applied.push(next.value),
    metrics: {
      reloaded: (result) => void counted.push(result),
      inForce: (hash, previous) => void series.push(`${previous ?? '-'} → ${hash}`),
    },
    logger: createLogger('debug', sink),
    mode: 'events',
    debounceMs: 5,
    now: () => new Date('2026-01-02T03:04:05Z'),
    ...options,
  });
  const until = async (check: () => boolean) => {
    const deadline = Date.now() + 3000;
    while (!check() && Date.now() < deadline) await sleep(5);
    assert.ok(check(), 'condition not met in time');
  };
  return { watched, applied, counted, series, lines, until };
}

const messages = (lines: Array<Record<string, unknown>>) => lines.map((l) => String(l.msg));

describe('WatchedFile', () => {
  test('each new valid content is in force, logged key by key and applied once; unchanged content is counted, not applied', () => {
    const t = setup('/nowhere/limits.yaml');
    assert.equal(t.watched.reload('a: 1\nb: 2\n'), 'ok');
    assert.equal(t.watched.reload('b: 2\na: 1\n'), 'unchanged');
    assert.equal(t.watched.reload('a: 1\nb: 3\nc: 4\n'), 'ok');
    assert.deepEqual(t.applied, [{ a: 1, b: 2 }, { a: 1, b: 3, c: 4 }]);
    assert.deepEqual(t.counted, ['ok', 'unchanged', 'ok']);
    const [first, second] = [parse('a: 1\nb: 2').hash, parse('a: 1\nb: 3\nc: 4').hash];
    assert.deepEqual(t.series, [`- → ${first}`, `${first} → ${second}`]);
    const applied = t.lines.find((l) => String(l.msg).startsWith('limits applied'));
    assert.deepEqual(applied?.changes, ['b: 2 → 3', 'c: (absent) → 4']);
    assert.deepEqual(messages(t.lines).slice(0, 2), [`limits loaded ${first}`, 'limits unchanged']);
    assert.deepEqual(t.watched.current?.value, { a: 1, b: 3, c: 4 });
    assert.deepEqual(t.watched.status(), { source: '/nowhere/limits.yaml', hash: second, appliedAt: '2026-01-02T03:04:05.000Z' });
  });

  test('an invalid content is rejected naming its keys and kept out; the next valid one clears the error', () => {
    const t = setup('/nowhere/limits.yaml');
    assert.equal(t.watched.reload('x: -1\n'), 'error');
    assert.equal(t.watched.status().hash, undefined, 'nothing in force');
    assert.match(messages(t.lines).at(-1)!, /^limits rejected, nothing loaded yet: x: must be >= 0$/);
    t.watched.reload('a: 1\n');
    assert.equal(t.watched.reload('a: 2\ny: -5\n'), 'error');
    assert.deepEqual(t.watched.current?.value, { a: 1 });
    assert.deepEqual(t.watched.status().lastError?.issues, ['y: must be >= 0']);
    assert.match(messages(t.lines).at(-1)!, /^limits rejected, keeping .+: y: must be >= 0$/);
    assert.deepEqual(t.applied, [{ a: 1 }]);
    assert.deepEqual(t.counted, ['error', 'ok', 'error']);
    t.watched.reload('a: 2\n');
    assert.equal(t.watched.status().lastError, undefined);
  });

  test('started on a missing file: the error is reported once while it lasts, the file is loaded when it appears', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-watched-'));
    const file = path.join(dir, 'limits.yaml');
    const t = setup(file, { mode: 'poll', pollIntervalMs: 10 });
    await t.watched.start();
    try {
      assert.deepEqual(t.watched.status().lastError?.issues, ['(file): ENOENT']);
      await sleep(60);
      assert.deepEqual(t.counted, ['error'], 'not counted again at every poll');
      await writeFile(file, 'a: 1\n');
      await t.until(() => t.applied.length === 1);
      assert.equal(t.watched.status().lastError, undefined);
    } finally {
      t.watched.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('with an initial content: in force from the start, not delivered again; an unreadable file goes to onUnreadable alone', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-watched-'));
    const file = path.join(dir, 'limits.yaml');
    await writeFile(file, 'a: 1\n');
    const unreadable: string[] = [];
    const t = setup(file, {
      mode: 'poll',
      pollIntervalMs: 10,
      initial: { parsed: parse('a: 1\n'), text: 'a: 1\n' },
      onUnreadable: (error) => void unreadable.push((error as NodeJS.ErrnoException).code ?? error.message),
    });
    await t.watched.start();
    try {
      assert.deepEqual(t.watched.current?.value, { a: 1 });
      assert.deepEqual(t.series, [`- → ${parse('a: 1').hash}`]);
      await rm(file);
      await t.until(() => unreadable.length > 0);
      assert.equal(unreadable[0], 'ENOENT');
      assert.deepEqual([t.applied, t.counted, t.watched.status().lastError], [[], [], undefined]);
      await writeFile(file, 'a: 2\n');
      await t.until(() => t.applied.length === 1);
      assert.deepEqual(t.counted, ['ok']);
    } finally {
      t.watched.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
