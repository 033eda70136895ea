import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Command } from 'commander';
import { Header, create as createTar, type HeaderData } from 'tar';
import { ArchiveError, MARKER } from '../../server/models/archive.ts';
import { addModelsCommand, defaultDir } from '../../server/models/cli.ts';
import { ChecksumError } from '../../server/models/download.ts';
import { createProgress } from '../../server/models/progress.ts';
import { pullModel } from '../../server/models/pull.ts';
import { resolveSource, ResolveError } from '../../server/models/resolve.ts';
import { planDesiredObjects } from '../../operator/planner.ts';
import { IMAGES, example } from '../operator/support/examples.ts';
import { bytes, sha256, startFakeHub, type FakeHub } from './hub.ts';

const MODEL = bytes(300_000, 7);
const WEIGHTS = bytes(120_000, 9);
const TOKENIZER = Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'WordPiece' } }));
const CONFIG = Buffer.from('{"architectures":["XLMRobertaForSequenceClassification"]}');

interface RawEntry {
  path: string;
  type?: HeaderData['type'];
  body?: Buffer;
  linkpath?: string;
}

/** A tar written header by header, so an archive can hold what no well-behaved tool would write. */
function rawTar(entries: readonly RawEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = e.body ?? Buffer.alloc(0);
    const type = e.type ?? 'File';
    const block = Buffer.alloc(512);
    new Header({
      path: e.path, type, size: body.length, mode: type === 'Directory' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: new Date(0),
      ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}),
    }).encode(block, 0);
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const modelDir = (top: string, extra: RawEntry[] = []): RawEntry[] => [
  { path: `${top}/`, type: 'Directory' },
  { path: `${top}/model.onnx`, body: MODEL },
  { path: `${top}/model.onnx_data`, body: WEIGHTS },
  { path: `${top}/tokenizer.json`, body: TOKENIZER },
  { path: `${top}/config.json`, body: CONFIG },
  ...extra,
];

let hub: FakeHub;
let root: string;
let dir: string;
const url = (name: string) => `${hub.endpoint}/models/bge/resolve/main/${name}`;
const serve = (name: string, body: Buffer) => hub.files.set(`models/bge/main/${name}`, body);
const collect = () => {
  const lines: string[] = [];
  return { lines, progress: createProgress({ write: (t: string) => lines.push(t), isTTY: false }) };
};
const pull = (name: string, extra: Partial<Parameters<typeof pullModel>[0]> = {}) => pullModel({ source: url(name), dir, env: {}, retryDelayMs: 5, ...extra });
const cdnRequests = () => hub.requests.filter((r) => r.server === 'cdn');

before(async () => {
  hub = await startFakeHub();
});
after(() => hub.close());
beforeEach(async () => {
  hub.reset();
  root = await mkdtemp(path.join(os.tmpdir(), 'models-archive-'));
  dir = path.join(root, 'bge-reranker-large');
});

describe('models pull of an https:// archive', () => {
  test('a .tar.gz with one top-level directory: stripped, external weights beside model.onnx, the archive deleted; a re-run skips', async () => {
    const archive = gzipSync(rawTar(modelDir('bge-reranker-large')));
    serve('bge-reranker-large.tar.gz', archive);
    const { lines, progress } = collect();
    const result = await pull('bge-reranker-large.tar.gz', { sha256: sha256(archive), progress });
    assert.equal(result.plan.kind, 'archive');
    assert.deepEqual((await readdir(dir)).sort(), [MARKER, 'config.json', 'model.onnx', 'model.onnx_data', 'tokenizer.json']);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx_data')), WEIGHTS);
    assert.deepEqual(await readFile(path.join(dir, 'tokenizer.json')), TOKENIZER);
    assert.deepEqual(result.files.map((f) => [f.file, f.outcome]), [
      ['config.json', 'extracted'], ['model.onnx', 'extracted'], ['model.onnx_data', 'extracted'], ['tokenizer.json', 'extracted'],
    ]);
    // Nothing beside the model directory: no archive, no working directory.
    assert.deepEqual(await readdir(root), ['bge-reranker-large']);
    const text = lines.join('');
    assert.match(text, /bge-reranker-large\.tar\.gz: downloading/);
    assert.match(text, /4 file\(s\), .* extracted into .*bge-reranker-large \(top-level bge-reranker-large\/ stripped\)/);

    hub.requests.length = 0;
    const again = await pull('bge-reranker-large.tar.gz', { sha256: sha256(archive) });
    assert.deepEqual(again.files.map((f) => f.outcome), ['skipped', 'skipped', 'skipped', 'skipped']);
    assert.equal(hub.requests.length, 0);

    // With a pinned sha256 the skip is verified: a changed file (same size) is noticed and the archive pulled again.
    await writeFile(path.join(dir, 'model.onnx'), bytes(MODEL.length, 99));
    const repaired = await pull('bge-reranker-large.tar.gz', { sha256: sha256(archive) });
    assert.deepEqual(repaired.files.map((f) => f.outcome), ['extracted', 'extracted', 'extracted', 'extracted']);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.equal(cdnRequests().length, 1);
  });

  test('a .tgz of a directory\'s content ("./" entries, made by tar itself): a lone graph of another name lands as model.onnx', async () => {
    const src = path.join(root, 'export');
    await mkdir(src);
    await writeFile(path.join(src, 'reranker.onnx'), MODEL);
    await writeFile(path.join(src, 'reranker.onnx_data'), WEIGHTS);
    await writeFile(path.join(src, 'tokenizer.json'), TOKENIZER);
    const file = path.join(root, 'export.tgz');
    await createTar({ gzip: true, file, cwd: src, portable: true }, ['.']);
    serve('export.tgz', await readFile(file));
    const { lines, progress } = collect();
    await pull('export.tgz', { progress });
    // The graph refers to its external weights by name: they keep theirs.
    assert.deepEqual((await readdir(dir)).sort(), [MARKER, 'model.onnx', 'reranker.onnx_data', 'tokenizer.json']);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.match(lines.join(''), /reranker\.onnx saved as model\.onnx/);
    assert.doesNotMatch(lines.join(''), /stripped/);
  });

  test('an uncompressed .tar: onnx/model.onnx keeps its place, an in-archive symlink is kept', async () => {
    serve('m.tar', rawTar([
      { path: 'onnx/model.onnx', body: MODEL },
      { path: 'files/tokenizer.json', body: TOKENIZER },
      { path: 'tokenizer.json', type: 'SymbolicLink', linkpath: 'files/tokenizer.json' },
    ]));
    const result = await pull('m.tar');
    assert.deepEqual(await readFile(path.join(dir, 'onnx', 'model.onnx')), MODEL);
    assert.equal(await readlink(path.join(dir, 'tokenizer.json')), 'files/tokenizer.json');
    assert.deepEqual(await readFile(path.join(dir, 'tokenizer.json')), TOKENIZER);
    assert.deepEqual(result.files.map((f) => f.file), ['files/tokenizer.json', 'onnx/model.onnx']);
  });

  test('a sha256 that does not match the archive fails and leaves nothing behind', async () => {
    const archive = gzipSync(rawTar(modelDir('bge')));
    serve('bge.tar.gz', archive);
    const wrong = 'd'.repeat(64);
    await assert.rejects(
      pull('bge.tar.gz', { sha256: wrong }),
      (e: Error) => e instanceof ChecksumError && e.message.includes(`expected ${wrong}`) && e.message.includes(sha256(archive)),
    );
    assert.deepEqual(await readdir(root), []);
  });

  test('entries that would leave the model directory are refused before anything is written', async () => {
    const cases: Array<[string, RawEntry, RegExp]> = [
      ['dotdot', { path: 'bge/../../evil.txt', body: Buffer.from('x') }, /entry "bge\/\.\.\/\.\.\/evil\.txt" has a "\.\." component/],
      ['absolute', { path: '/tmp/evil.txt', body: Buffer.from('x') }, /entry "\/tmp\/evil\.txt" is an absolute path/],
      ['symlink', { path: 'bge/evil', type: 'SymbolicLink', linkpath: '../../../etc/passwd' }, /entry "bge\/evil" is a symlink to \.\.\/\.\.\/\.\.\/etc\/passwd outside the archive/],
      ['symlink-abs', { path: 'bge/evil', type: 'SymbolicLink', linkpath: '/etc/passwd' }, /is a symlink to \/etc\/passwd outside the archive/],
      // Inside the archive, but outside bge/, which becomes the model directory: it would point at a sibling.
      ['symlink-sibling', { path: 'bge/evil', type: 'SymbolicLink', linkpath: '../other-version/model.onnx' }, /entry "bge\/evil" is a symlink to \.\.\/other-version\/model\.onnx outside bge\//],
      ['hardlink', { path: 'bge/evil', type: 'Link', linkpath: '../etc/passwd' }, /entry "bge\/evil" is a hard link to \.\.\/etc\/passwd, which is no file earlier in the archive/],
      ['device', { path: 'bge/tty', type: 'CharacterDevice' }, /entry "bge\/tty" is a CharacterDevice/],
      ['fifo', { path: 'bge/pipe', type: 'FIFO' }, /entry "bge\/pipe" is a FIFO/],
    ];
    for (const [name, bad, message] of cases) {
      serve(`${name}.tar.gz`, gzipSync(rawTar(modelDir('bge', [bad]))));
      await assert.rejects(pull(`${name}.tar.gz`), (e: Error) => e instanceof ArchiveError && message.test(e.message), name);
      assert.deepEqual(await readdir(root), [], name);
    }
    assert.deepEqual((await readdir(os.tmpdir())).filter((f) => f === 'evil.txt'), []);
    // Writing through a symlink that stays inside is refused too.
    serve('through.tar', rawTar(modelDir('bge', [{ path: 'bge/sub', type: 'SymbolicLink', linkpath: '.' }, { path: 'bge/sub/x', body: Buffer.from('x') }])));
    await assert.rejects(pull('through.tar'), /entry "bge\/sub\/x" lies below the symlink bge\/sub/);
  });

  test('an archive without tokenizer.json fails, names what it holds, and leaves no model directory', async () => {
    serve('bge.tar.gz', gzipSync(rawTar([{ path: 'bge/model.onnx', body: MODEL }, { path: 'bge/config.json', body: CONFIG }])));
    await assert.rejects(
      pull('bge.tar.gz'),
      (e: Error) => e instanceof ArchiveError && e.message === 'bge.tar.gz: no tokenizer.json in the archive; it holds bge/model.onnx, bge/config.json',
    );
    assert.deepEqual(await readdir(root), []);
    serve('graphless.tar', rawTar([{ path: 'a.onnx', body: MODEL }, { path: 'b.onnx', body: MODEL }, { path: 'tokenizer.json', body: TOKENIZER }]));
    await assert.rejects(pull('graphless.tar'), /no model\.onnx \(or onnx\/model\.onnx, or a single \.onnx file\) in the archive; it holds a\.onnx, b\.onnx, tokenizer\.json/);
    serve('junk.tar.gz', Buffer.from('<html>not found</html>'));
    await assert.rejects(pull('junk.tar.gz'), (e: Error) => e instanceof ArchiveError && /junk\.tar\.gz: not a readable tar archive/.test(e.message));
    assert.deepEqual(await readdir(root), []);
  });

  test('a dropped connection resumes with a Range request; a .part left by an earlier run resumes too', async () => {
    const archive = gzipSync(rawTar(modelDir('bge')));
    serve('bge.tar.gz', archive);
    hub.cutOnce.add('models/bge/main/bge.tar.gz');
    const { lines, progress } = collect();
    await pull('bge.tar.gz', { sha256: sha256(archive), progress });
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    const gets = cdnRequests();
    assert.equal(gets.length, 2);
    assert.equal(gets[0]?.headers.range, undefined);
    assert.ok(Number(/^bytes=(\d+)-$/.exec(gets[1]?.headers.range ?? '')?.[1]) > 0);
    assert.match(lines.join(''), /retrying from byte \d+/);

    // An earlier run stopped mid-download: its .part sits in the working directory beside the model directory.
    const other = path.join(root, 'other');
    await mkdir(path.join(root, '.other.pull'));
    await writeFile(path.join(root, '.other.pull', 'bge.tar.gz.part'), archive.subarray(0, 1000));
    hub.requests.length = 0;
    await pullModel({ source: url('bge.tar.gz'), dir: other, env: {}, sha256: sha256(archive) });
    assert.equal(cdnRequests()[0]?.headers.range, 'bytes=1000-');
    assert.deepEqual(await readFile(path.join(other, 'model.onnx')), MODEL);
    assert.deepEqual((await readdir(root)).sort(), ['bge-reranker-large', 'other']);
  });

  test('the directory is replaced whole; one that holds files of another kind of pull is refused and left alone', async () => {
    serve('v1.tar.gz', gzipSync(rawTar(modelDir('bge'))));
    serve('v2.tar.gz', gzipSync(rawTar([{ path: 'model.onnx', body: bytes(1000, 5) }, { path: 'tokenizer.json', body: TOKENIZER }])));
    await pull('v1.tar.gz');
    await pull('v2.tar.gz');
    assert.deepEqual((await readdir(dir)).sort(), [MARKER, 'model.onnx', 'tokenizer.json']);
    assert.equal((await readFile(path.join(dir, 'model.onnx'))).length, 1000);
    assert.deepEqual(await readdir(root), ['bge-reranker-large']);

    const foreign = path.join(root, 'foreign');
    await mkdir(foreign);
    await writeFile(path.join(foreign, 'notes.txt'), 'mine');
    await assert.rejects(
      pullModel({ source: url('v1.tar.gz'), dir: foreign, env: {} }),
      /foreign already holds files no archive pull put there \(notes\.txt\); empty it or choose another --dir/,
    );
    assert.deepEqual(await readdir(foreign), ['notes.txt']);
    assert.equal(cdnRequests().filter((r) => r.url.includes('v1')).length, 1, 'refused before downloading');
  });

  test('resolving: archive suffixes, --sha256 pins the archive, --file is refused; the default directory drops the suffix', () => {
    const sha = 'A'.repeat(64);
    assert.deepEqual(resolveSource('https://models.example.com/bge-reranker-large.tar.gz', { sha256: sha }), {
      kind: 'archive',
      source: 'https://models.example.com/bge-reranker-large.tar.gz',
      url: 'https://models.example.com/bge-reranker-large.tar.gz',
      name: 'bge-reranker-large.tar.gz',
      sha256: 'a'.repeat(64),
    });
    assert.equal(resolveSource('https://h/m.TGZ?X-Amz-Signature=abc').kind, 'archive');
    assert.equal(resolveSource('http://h/m.tar').kind, 'archive');
    assert.equal(resolveSource('https://h/m.onnx').kind, 'http');
    assert.throws(() => resolveSource('https://h/m.tar.gz', { files: ['model.onnx'] }), /an https:\/\/ source is one file or one archive/);
    assert.throws(() => resolveSource('https://h/m.tar.gz', { sha256: 'xyz' }), ResolveError);
    assert.equal(defaultDir('https://models.example.com/bge-reranker-large.tar.gz'), path.join('models', 'local', 'bge-reranker-large'));
    assert.equal(defaultDir('https://h/m.tgz'), path.join('models', 'local', 'm'));
  });

  test('the seed example\'s https:// .tar.gz version: the init container\'s args resolve to an archive pinned by model.sha256', () => {
    const objects = planDesiredObjects(example('seed'), IMAGES, {});
    const v1 = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'rerankers-v1') as unknown as {
      spec: { template: { spec: { initContainers: Array<{ args: string[] }> } } };
    };
    const [, , source, , , , sha] = v1.spec.template.spec.initContainers[0]!.args;
    assert.deepEqual(resolveSource(source!, { sha256: sha!, env: {} }), {
      kind: 'archive',
      source: 'https://models.example.com/bge-reranker-large.tar.gz',
      url: 'https://models.example.com/bge-reranker-large.tar.gz',
      name: 'bge-reranker-large.tar.gz',
      sha256: sha,
    });
  });

  test('the CLI prints what it extracted, and an archive that is no model as one line', async () => {
    serve('good.tar.gz', gzipSync(rawTar(modelDir('bge'))));
    serve('bad.tar.gz', gzipSync(rawTar([{ path: 'bge/model.onnx', body: MODEL }])));
    const script = `
      import { Command } from 'commander';
      import { addModelsCommand } from ${JSON.stringify(path.resolve('server/models/cli.ts'))};
      const program = new Command('rerank-server');
      addModelsCommand(program);
      await program.parseAsync(process.argv.slice(1), { from: 'user' });`;
    // Asynchronous: the fake hub answers from this process.
    const run = (...args: string[]) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--input-type=module', '-e', script, ...args], (error, stdout, stderr) =>
          resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
        );
      });
    const ok = await run('models', 'pull', url('good.tar.gz'), '--dir', dir);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /good\.tar\.gz -> .*: config\.json \(extracted\), model\.onnx \(extracted\), model\.onnx_data \(extracted\), tokenizer\.json \(extracted\)/);
    const bad = await run('models', 'pull', url('bad.tar.gz'), '--dir', path.join(root, 'bad'));
    assert.equal(bad.status, 1);
    assert.equal(bad.stderr.trim().split('\n').at(-1), 'models pull: bad.tar.gz: no tokenizer.json in the archive; it holds bge/model.onnx');
  });

  test('`models pull --help` says what an archive source does', () => {
    const program = new Command('rerank-server');
    const pullCommand = addModelsCommand(program).commands.find((c) => c.name() === 'pull');
    let help = '';
    pullCommand?.configureOutput({ writeOut: (text) => (help += text) });
    pullCommand?.outputHelp();
    assert.match(help, /when the path ends in \.tar\.gz, \.tgz or \.tar, an archive/);
    assert.match(help, /--sha256 then pins the archive/);
    assert.match(help, /oras push <ref> model-dir\//);
  });
});
