import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PairTokenizer, type PairTokenizerOptions } from '../../server/engine/pair-tokenizer.ts';
import { TokenizerCache } from '../../server/engine/tokenizer-cache.ts';
import { tinyModel } from '../support/models.ts';

describe('TokenizerCache', () => {
  let dir: string;
  let first: string;
  let second: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-tokenizer-cache-'));
    const source = (await tinyModel()).tokenizerPath;
    first = path.join(dir, 'first.json');
    second = path.join(dir, 'second.json');
    await copyFile(source, first);
    await copyFile(source, second);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const counting = (maxIdle?: number) => {
    const parsed: string[] = [];
    const load = (options: PairTokenizerOptions) => {
      parsed.push(path.basename(options.tokenizerPath));
      return PairTokenizer.load(options);
    };
    return { cache: new TokenizerCache(maxIdle === undefined ? { load } : { load, maxIdle }), parsed };
  };

  it('shares one parsed tokenizer per file among its users', async () => {
    const { cache, parsed } = counting();
    const a = await cache.acquire({ tokenizerPath: first });
    const b = await cache.acquire({ tokenizerPath: first });
    const c = await cache.acquire({ tokenizerPath: second });
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.deepEqual(parsed, ['first.json', 'second.json']);
    assert.deepEqual({ size: cache.size, idle: cache.idle }, { size: 2, idle: 0 });
    cache.release(a);
    assert.equal(cache.idle, 0, 'still used by b');
    cache.release(b);
    assert.equal(cache.idle, 1);
  });

  it('reuses a released tokenizer instead of parsing again (a version disabled and enabled 50 times)', async () => {
    const { cache, parsed } = counting();
    for (let i = 0; i < 50; i += 1) cache.release(await cache.acquire({ tokenizerPath: first }));
    assert.deepEqual(parsed, ['first.json']);
    assert.deepEqual({ size: cache.size, idle: cache.idle }, { size: 1, idle: 1 });
  });

  it('keeps at most maxIdle unused tokenizers, dropping the oldest released', async () => {
    const { cache, parsed } = counting(1);
    const a = await cache.acquire({ tokenizerPath: first });
    const b = await cache.acquire({ tokenizerPath: second });
    cache.release(a);
    cache.release(b);
    assert.deepEqual({ size: cache.size, idle: cache.idle }, { size: 1, idle: 1 });
    cache.release(await cache.acquire({ tokenizerPath: second }));
    assert.equal(parsed.length, 2, 'second was kept');
    await cache.acquire({ tokenizerPath: first });
    assert.deepEqual(parsed, ['first.json', 'second.json', 'first.json'], 'first was dropped, so parsed again');
  });

  it('parses again when the file changes in place, and keys on the pad id', async () => {
    const { cache, parsed } = counting();
    const a = await cache.acquire({ tokenizerPath: first });
    const later = new Date(Date.now() + 60_000);
    await utimes(first, later, later);
    const b = await cache.acquire({ tokenizerPath: first });
    assert.notEqual(a, b);
    const c = await cache.acquire({ tokenizerPath: first, padId: 3 });
    assert.notEqual(b, c);
    assert.equal(c.padId, 3);
    assert.equal(parsed.length, 3);
  });

  it('a release of something it does not hold, or a second release, changes nothing', async () => {
    const { cache } = counting();
    const a = await cache.acquire({ tokenizerPath: first });
    const b = await cache.acquire({ tokenizerPath: first });
    cache.release(PairTokenizer.load({ tokenizerPath: second }));
    cache.release(a);
    assert.equal(cache.idle, 0);
    cache.release(b);
    cache.release(b);
    assert.deepEqual({ size: cache.size, idle: cache.idle }, { size: 1, idle: 1 });
  });

  it('a missing file fails with its path and holds nothing', async () => {
    const { cache } = counting();
    await assert.rejects(cache.acquire({ tokenizerPath: path.join(dir, 'nope.json') }), /nope\.json/);
    assert.equal(cache.size, 0);
  });
});
