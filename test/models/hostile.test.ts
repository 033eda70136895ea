import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { DownloadError } from '../../server/models/download.ts';
import { LimitError } from '../../server/models/limits.ts';
import { createProgress } from '../../server/models/progress.ts';
import { pullModel, type PullOptions } from '../../server/models/pull.ts';
import { ResolveError } from '../../server/models/resolve.ts';
import { bytes, sha256, startFakeHub, type FakeHub } from './hub.ts';
import { startHostileSource, type HostileSource } from './hostile.ts';
import { startFakeRegistry, type FakeRegistry } from './registry.ts';

/** `models pull` against sources that send hostile names, too many bytes, nothing at all, or a close after the body. */

const MODEL = bytes(300_000, 7);
const TOKENIZER = Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'WordPiece' } }));
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** A tar.gz written header by header: entries may claim sizes their data does not have. */
function tarGz(entries: ReadonlyArray<{ path: string; body?: Buffer; size?: number; type?: 'File' | 'Directory' }>): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = e.body ?? Buffer.alloc(0);
    const type = e.type ?? 'File';
    const block = Buffer.alloc(512);
    new Header({ path: e.path, type, size: e.size ?? body.length, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0) }).encode(block, 0);
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

let source: HostileSource;
let hub: FakeHub;
let registry: FakeRegistry;
let root: string;
let dir: string;
const pull = (url: string, extra: Partial<PullOptions> = {}) => pullModel({ source: url, dir, env: {}, retryDelayMs: 5, ...extra });
/** Every file under `at`, relative: what a failed pull left behind. */
const leftUnder = async (at: string) => (await readdir(at, { recursive: true })).sort();

before(async () => {
  [source, hub, registry] = await Promise.all([startHostileSource(), startFakeHub(), startFakeRegistry()]);
});
after(() => Promise.all([source.close(), hub.close(), registry.close()]));
beforeEach(async () => {
  source.reset();
  hub.reset();
  registry.reset();
  root = await mkdtemp(path.join(os.tmpdir(), 'models-hostile-'));
  dir = path.join(root, 'a', 'b', 'model');
  await mkdir(path.dirname(dir), { recursive: true });
});
afterEach(() => rm(root, { recursive: true, force: true }));

describe('a name a source chooses never leaves --dir', () => {
  test('an https:// file name that decodes to a path, a backslash, a NUL or bad encoding is refused before any request', async () => {
    for (const name of ['..%2F..%2Fevil', '..%2F..%2F..%2Fevil.tar.gz', 'x%2Fmodel.onnx', '..%5C..%5Cevil', 'model%00.onnx', '%E0%A4%A', '%2E%2E']) {
      source.serve(`/m/${name}`, { kind: 'file', body: MODEL });
      await assert.rejects(pull(`${source.origin}/m/${name}`), (e: Error) => e instanceof ResolveError && /(the file name .* (refusing to write it|not valid percent-encoding)|the URL names no file)$/.test(e.message), name);
    }
    assert.deepEqual(source.requests, []);
    assert.deepEqual(await leftUnder(root), ['a', 'a/b']);
  });

  test('an hf:// --file whose name is ".." or has empty parts is refused', async () => {
    hub.files.set('org/repo/main/a/..', MODEL);
    for (const file of ['a/..', 'a//model.onnx', '/etc/passwd']) {
      await assert.rejects(pullModel({ source: 'hf://org/repo', files: [file], dir, env: { HF_ENDPOINT: hub.endpoint } }), ResolveError, file);
    }
    assert.deepEqual(hub.requests, []);
  });

  test('an archive entry whose name holds a control character is refused before anything is extracted', async () => {
    hub.files.set('m/r/main/bad.tar.gz', tarGz([{ path: 'model.onnx', body: MODEL }, { path: 'tokenizer.json', body: TOKENIZER }, { path: 'evil\nname', body: TOKENIZER }]));
    await assert.rejects(pull(`${hub.endpoint}/m/r/resolve/main/bad.tar.gz`), /entry "evil\nname" has a part that contains a control character/);
    assert.deepEqual(await leftUnder(root), ['a', 'a/b']);
  });
});

describe('limits: bytes per file, per pull and extracted, and the free space', () => {
  test('a Content-Length over the per-file limit is refused before the body is read, and leaves nothing', { timeout: 20_000 }, async () => {
    source.serve('/m/model.onnx', { kind: 'endless', contentLength: 10 * GiB });
    await assert.rejects(pull(`${source.origin}/m/model.onnx`, { limits: { maxFileBytes: 1 * GiB } }), (e: Error) =>
      e instanceof LimitError && e.message === 'model.onnx: is 10 GiB, over the per-file limit of 1 GiB (--max-file-bytes); the file was not kept');
    assert.deepEqual(await readdir(dir), []);
    assert.equal(source.requests.length, 1, 'a refusal is not retried');
  });

  test('an endless response without a length stops at the per-file limit and its .part is deleted', { timeout: 20_000 }, async () => {
    source.serve('/m/model.onnx', { kind: 'endless' });
    await assert.rejects(pull(`${source.origin}/m/model.onnx`, { limits: { maxFileBytes: 4 * MiB } }), (e: Error) =>
      e instanceof LimitError && /^model\.onnx: sent more than 4 MiB, over the per-file limit of 4 MiB \(--max-file-bytes\)/.test(e.message));
    assert.deepEqual(await readdir(dir), []);
  });

  test('a file bigger than the free space is refused before the body is read (the file system\'s real free space)', { timeout: 20_000 }, async () => {
    source.serve('/m/model.onnx', { kind: 'endless', contentLength: 2 ** 50 });
    const huge = { maxFileBytes: 2 ** 52, maxPullBytes: 2 ** 52 };
    await assert.rejects(pull(`${source.origin}/m/model.onnx`, { limits: huge }), (e: Error) =>
      e instanceof LimitError && /^model\.onnx: needs 1024 TiB but only .* is free on the file system of .*; nothing was written$/.test(e.message));
    assert.deepEqual(await readdir(dir), []);
  });

  test('the files of one pull together stop at the per-pull limit; the files finished before it stay', async () => {
    const tokenizer = Buffer.concat([TOKENIZER, Buffer.alloc(100_000, 0x20)]);
    hub.files.set('org/repo/main/onnx/model.onnx', MODEL);
    hub.files.set('org/repo/main/tokenizer.json', tokenizer);
    await assert.rejects(pullModel({ source: 'hf://org/repo', dir, env: { HF_ENDPOINT: hub.endpoint }, limits: { maxPullBytes: 350_000 } }), (e: Error) =>
      e instanceof LimitError && /^tokenizer\.json: is 100\.\d KB, with the 300\.0 KB pulled before it, over the per-pull limit of 350\.0 KB \(--max-pull-bytes\)/.test(e.message));
    assert.deepEqual(await readdir(dir), ['model.onnx']);
  });

  test('a small archive of a huge file is refused by its tar header, under the default limits, before anything is extracted', async () => {
    // 47 KB on the wire; the header claims 25 GiB (the data is cut short: nothing may read that far).
    hub.files.set('m/r/main/bomb.tar.gz', tarGz([{ path: 'm/', type: 'Directory' }, { path: 'm/model.onnx', size: 25 * GiB, body: Buffer.alloc(4 * MiB) }]));
    await assert.rejects(pull(`${hub.endpoint}/m/r/resolve/main/bomb.tar.gz`), (e: Error) =>
      e instanceof LimitError && e.message === 'bomb.tar.gz: entry "m/model.onnx": is 25 GiB, over the per-file limit of 20 GiB (--max-file-bytes); nothing was extracted');
    assert.deepEqual(await leftUnder(root), ['a', 'a/b']);
  });

  test('an archive that extracts past the extracted limit, or past the free space, leaves nothing behind', async () => {
    const archive = tarGz([{ path: 'model.onnx', body: Buffer.alloc(700 * KiB) }, { path: 'tokenizer.json', body: Buffer.alloc(700 * KiB) }]);
    assert.ok(archive.length < 10 * KiB);
    hub.files.set('m/r/main/big.tar.gz', archive);
    const url = `${hub.endpoint}/m/r/resolve/main/big.tar.gz`;
    await assert.rejects(pull(url, { limits: { maxExtractedBytes: 1 * MiB } }), (e: Error) =>
      e instanceof LimitError && /^big\.tar\.gz: entry "tokenizer\.json": brings the archive's content to 1\.4 MB, over the extracted limit of 1 MiB \(--max-extracted-bytes\)/.test(e.message));
    assert.deepEqual(await leftUnder(root), ['a', 'a/b']);

    await assert.rejects(pull(url, { disk: { free: async () => 1 * MiB } }), (e: Error) =>
      e instanceof LimitError && /^big\.tar\.gz: extracting 2 entries: needs 1\.4 MB but only 1 MiB is free/.test(e.message));
    assert.deepEqual(await leftUnder(root), ['a', 'a/b']);

    await pull(url);
    assert.equal((await stat(path.join(dir, 'model.onnx'))).size, 700 * KiB);
  });

  test('oci://: layers announced over the limits are refused before any blob is fetched; a manifest over 4 MiB is refused', async () => {
    registry.pushArtifact('models/big', 'v1', [{ title: 'model.onnx', body: MODEL }, { title: 'tokenizer.json', body: TOKENIZER }]);
    const blobs = () => registry.requests.filter((r) => r.url.includes('/blobs/sha256:'));
    await assert.rejects(pull(`oci://${registry.host}/models/big:v1`, { limits: { maxFileBytes: 200_000 } }), (e: Error) =>
      e instanceof LimitError && /model\.onnx: is 300\.0 KB, over the per-file limit of 200\.0 KB \(--max-file-bytes\)/.test(e.message));
    await assert.rejects(pull(`oci://${registry.host}/models/big:v1`, { limits: { maxPullBytes: 300_010 } }), (e: Error) =>
      e instanceof LimitError && /: 2 files of 300\.\d KB in all, over the per-pull limit .*; nothing was downloaded$/.test(e.message));
    assert.deepEqual(blobs().filter((r) => !r.url.endsWith(sha256(Buffer.from('{}')))), []);

    registry.putManifest('models/huge', 'v1', 'application/vnd.oci.image.manifest.v1+json', Buffer.alloc(5 * MiB, 0x20));
    await assert.rejects(pull(`oci://${registry.host}/models/huge:v1`), /models\/huge:v1: the manifest is .* more than the 4194304 .*accepted/);
  });
});

describe('a stalled source fails an attempt, which is retried and resumed', () => {
  test('headers that never come: each attempt times out, and the error names the URL and what stalled', { timeout: 20_000 }, async () => {
    source.serve('/m/model.onnx', { kind: 'stall-headers' });
    const url = `${source.origin}/m/model.onnx`;
    const lines: string[] = [];
    await assert.rejects(
      pull(url, { timeouts: { idleMs: 300 }, retries: 1, progress: createProgress({ write: (t: string) => lines.push(t), isTTY: false }) }),
      (e: Error) => e instanceof DownloadError && e.message === `model.onnx: download failed after 2 attempts: stalled: no response headers within the idle timeout (0.3 s) (${url})`,
    );
    assert.equal(source.requests.length, 2);
    assert.match(lines.join(''), /model\.onnx: stalled: no response headers within the idle timeout \(0\.3 s\); retrying from byte 0 \(attempt 2 of 2\)/);
  });

  test('a connection that never completes (a TLS handshake nobody answers) fails within the connect timeout', { timeout: 20_000 }, async () => {
    const url = `${source.origin.replace('http:', 'https:')}/m/model.onnx`;
    await assert.rejects(pull(url, { timeouts: { connectMs: 300 }, retries: 0 }), (e: Error) =>
      e instanceof DownloadError && e.message === `model.onnx: download failed: could not connect within the connect timeout (0.3 s) (${url})`);
  });

  test('a body that stops: the attempt times out and the next one resumes with a Range request', { timeout: 20_000 }, async () => {
    source.serve('/m/model.onnx', { kind: 'stall-body', body: MODEL, sent: 100_000, once: true });
    const result = await pull(`${source.origin}/m/model.onnx`, { timeouts: { idleMs: 300 }, sha256: sha256(MODEL) });
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.equal(result.files[0]?.outcome, 'downloaded');
    assert.deepEqual(source.requests.map((r) => r.range), [undefined, 'bytes=100000-']);
  });

  test('the CLI gives up after its retries with one line naming the URL and the stall, and exits 1', { timeout: 30_000 }, async () => {
    source.serve('/m/model.onnx', { kind: 'stall-body', body: MODEL, sent: 1000 });
    const url = `${source.origin}/m/model.onnx`;
    const script = `
      import { Command } from 'commander';
      import { addModelsCommand } from ${JSON.stringify(path.resolve('server/models/cli.ts'))};
      const program = new Command('rerank-server');
      addModelsCommand(program);
      await program.parseAsync(process.argv.slice(1), { from: 'user' });`;
    const { status, stderr } = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--input-type=module', '-e', script, 'models', 'pull', url, '--dir', dir, '--idle-timeout', '0.3', '--retries', '1'], (error, _stdout, stderr) =>
        resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stderr }),
      );
    });
    assert.equal(status, 1, stderr);
    const last = stderr.trimEnd().split('\n').pop();
    assert.equal(last, `models pull: model.onnx: download failed after 2 attempts: stalled: no data within the idle timeout while reading the body (0.3 s) (${url})`);
  });
});

describe('a server that closes the connection right after the body', () => {
  test('50 pulls in a row all complete: no crash in the HTTP client (nodejs/undici#5360)', async () => {
    // Node's bundled fetch crashed within the first 7 pulls in each of 12 runs of this loop.
    const body = bytes(256 * 1024, 3);
    source.serve('/m/model.onnx', { kind: 'file', body });
    for (let i = 0; i < 50; i++) {
      const result = await pullModel({ source: `${source.origin}/m/model.onnx`, dir: path.join(root, `m${i}`), env: {}, retries: 0, sha256: sha256(body) });
      assert.equal(result.files[0]?.outcome, 'downloaded');
    }
    assert.equal(source.requests.length, 50);
  });
});
