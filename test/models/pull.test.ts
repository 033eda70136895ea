/* eslint-disable @typescript-eslint/no-explicit-any -- the test reads into the planned Deployment */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { parseCatalog } from '../../server/models/catalog.ts';
import { addModelsCommand } from '../../server/models/cli.ts';
import { ChecksumError, DownloadError } from '../../server/models/download.ts';
import { createProgress } from '../../server/models/progress.ts';
import { pullModel } from '../../server/models/pull.ts';
import { planDesiredObjects } from '../../operator/planner.ts';
import { IMAGES, example } from '../operator/support/examples.ts';
import { bytes, sha256, startFakeHub, type FakeHub } from './hub.ts';

const MODEL = bytes(300_000, 7);
const TOKENIZER = Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'WordPiece' } }));
const CONFIG = Buffer.from('{"architectures":["BertForSequenceClassification"]}');
const catalog = parseCatalog(`models:
  - id: test-org/tiny-reranker
    source: hf://test-org/tiny-reranker
    license: apache-2.0
    architecture: bert
    maxLength: 512
    tokenTypeIds: true
    files:
      - { path: onnx/model.onnx, model: true, sha256: ${sha256(MODEL)} }
      - { path: tokenizer.json }
      - { path: config.json }
`);

let hub: FakeHub;
let dir: string;
const env = () => ({ HF_ENDPOINT: hub.endpoint, HF_TOKEN: 'hf_test_token' });
const collect = () => {
  const lines: string[] = [];
  return { lines, progress: createProgress({ write: (t: string) => lines.push(t), isTTY: false }) };
};

before(async () => {
  hub = await startFakeHub();
});
after(() => hub.close());
beforeEach(async () => {
  hub.reset();
  for (const [file, body] of [['onnx/model.onnx', MODEL], ['tokenizer.json', TOKENIZER], ['config.json', CONFIG]] as const) {
    hub.files.set(`test-org/tiny-reranker/main/${file}`, body);
  }
  dir = await mkdtemp(path.join(os.tmpdir(), 'models-pull-'));
});

describe('models pull from a hub', () => {
  test('a catalogue id: every file lands where the server reads it, the token goes to the hub, progress lines are printed', async () => {
    const { lines, progress } = collect();
    const result = await pullModel({ source: 'test-org/tiny-reranker', dir, catalog, env: env(), progress });
    assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'model.onnx', 'tokenizer.json']);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.deepEqual(await readFile(path.join(dir, 'tokenizer.json')), TOKENIZER);
    assert.deepEqual(result.files.map((f) => f.outcome), ['downloaded', 'downloaded', 'downloaded']);
    const hubRequests = hub.requests.filter((r) => r.server === 'hub');
    assert.deepEqual(hubRequests.map((r) => r.url), [
      '/test-org/tiny-reranker/resolve/main/onnx/model.onnx',
      '/test-org/tiny-reranker/resolve/main/tokenizer.json',
      '/test-org/tiny-reranker/resolve/main/config.json',
    ]);
    for (const r of hubRequests) assert.equal(r.headers.authorization, 'Bearer hf_test_token');
    // The CDN is another origin: the redirect is followed and the token stays with the hub.
    assert.ok(hub.requests.some((r) => r.server === 'cdn' && r.headers.authorization === undefined));
    const text = lines.join('');
    assert.match(text, /onnx\/model\.onnx: downloading 300\.0 KB/);
    assert.match(text, /onnx\/model\.onnx: [1-9]\d% \(/);
    assert.match(text, /onnx\/model\.onnx: 100% \(300\.0 KB\) done/);

    // Again: present and verified → skipped, nothing fetched.
    hub.requests.length = 0;
    const again = await pullModel({ source: 'hf://test-org/tiny-reranker', dir, catalog, env: env() });
    assert.deepEqual(again.files.map((f) => f.outcome), ['skipped', 'skipped', 'skipped']);
    assert.equal(hub.requests.length, 0);
  });

  test('a dropped connection resumes with a Range request and the file verifies', async () => {
    hub.cutOnce.add('test-org/tiny-reranker/main/onnx/model.onnx');
    const { lines, progress } = collect();
    await pullModel({ source: 'test-org/tiny-reranker', dir, catalog, env: env(), progress, retryDelayMs: 5 });
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    const cdnModel = hub.requests.filter((r) => r.server === 'cdn' && r.url.includes('model.onnx'));
    assert.equal(cdnModel.length, 2);
    assert.equal(cdnModel[0]?.headers.range, undefined);
    assert.match(cdnModel[1]?.headers.range ?? '', /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(cdnModel[1]?.headers.range ?? '')?.[0]) > 0);
    assert.match(lines.join(''), /retrying from byte \d+/);
    assert.match(lines.join(''), /resuming at/);
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.part')), []);
  });

  test('a .part left by an earlier run resumes (206), or restarts when the server answers 200', async () => {
    await writeFile(path.join(dir, 'model.onnx.part'), MODEL.subarray(0, 1000));
    const resumed = await pullModel({ source: 'test-org/tiny-reranker', dir, catalog, env: env() });
    assert.equal(resumed.files[0]?.outcome, 'resumed');
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.equal(hub.requests.find((r) => r.server === 'cdn' && r.url.includes('model.onnx'))?.headers.range, 'bytes=1000-');

    await rm(path.join(dir, 'model.onnx'));
    await writeFile(path.join(dir, 'model.onnx.part'), Buffer.alloc(1000, 0xff)); // junk: a restart must overwrite it
    hub.ignoreRange = true;
    await pullModel({ source: 'test-org/tiny-reranker', dir, catalog, env: env() });
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
  });

  test('a sha256 mismatch fails clearly and leaves no file in place', async () => {
    const wrong = 'a'.repeat(64);
    await assert.rejects(
      pullModel({ source: 'test-org/tiny-reranker', dir, catalog, env: env(), sha256: wrong }),
      (e: Error) => e instanceof ChecksumError && e.message.includes(`expected ${wrong}`) && e.message.includes(sha256(MODEL)),
    );
    assert.deepEqual(await readdir(dir), []);
    // The catalogue's own sha catches a corrupt hub file too.
    hub.files.set('test-org/tiny-reranker/main/onnx/model.onnx', bytes(300_000, 8));
    await assert.rejects(pullModel({ source: 'test-org/tiny-reranker', dir, catalog, env: env() }), ChecksumError);
    assert.deepEqual(await readdir(dir), []);
  });

  test('404 names the missing file; a repo outside the catalogue tries onnx/model.onnx then model.onnx', async () => {
    hub.files.delete('test-org/tiny-reranker/main/tokenizer.json');
    await assert.rejects(
      pullModel({ source: 'test-org/tiny-reranker', dir, catalog, env: env() }),
      (e: Error) => e instanceof DownloadError && e.status === 404 && /^tokenizer\.json: HTTP 404/.test(e.message),
    );
    hub.files.set('other/flat/v2/model.onnx', MODEL);
    hub.files.set('other/flat/v2/tokenizer.json', TOKENIZER);
    const flat = await pullModel({ source: 'hf://other/flat@v2', dir: path.join(dir, 'flat'), env: env() });
    assert.deepEqual(flat.files.map((f) => [f.file, f.outcome]), [['model.onnx', 'downloaded'], ['tokenizer.json', 'downloaded'], ['config.json', 'absent']]);
    await assert.rejects(
      pullModel({ source: 'hf://other/none', dir: path.join(dir, 'none'), env: env() }),
      /model\.onnx: none of onnx\/model\.onnx, model\.onnx exists in hf:\/\/other\/none@main/,
    );
  });

  test('https:// fetches one file (a graph lands as model.onnx); an unknown scheme is refused clearly', async () => {
    hub.files.set('x/y/main/reranker.onnx', MODEL);
    const cdnUrl = `${hub.endpoint}/x/y/resolve/main/reranker.onnx`;
    await pullModel({ source: cdnUrl, dir, sha256: sha256(MODEL), env: {} });
    assert.deepEqual(await readdir(dir), ['model.onnx']);
    await assert.rejects(pullModel({ source: 's3://bucket/m', dir, env: {} }), /unknown source scheme "s3:\/\/" \(hf:\/\/, https:\/\/, pvc:\/\/, oci:\/\/, or a catalogue id\)/);
  });
});

describe('models pull: the operator\'s init container', () => {
  test('the rendered args parse, and a pvc:// source is copied from the claim mounted under /mnt/pvc/<claim>', async () => {
    const objects = planDesiredObjects(example('router'), IMAGES, { stable: { primary: 1, fallback: 0 }, candidate: { primary: 1, fallback: 0 } });
    const deployment = objects.find((o) => o.kind === 'Deployment' && (o as any).spec.template.spec.initContainers) as any;
    const init = deployment.spec.template.spec.initContainers[0];
    assert.deepEqual(init.command, ['rerank-server']);
    const program = new Command('rerank-server').exitOverride();
    let parsed: { source?: string; opts?: Record<string, unknown> } = {};
    addModelsCommand(program).commands.find((c) => c.name() === 'pull')?.action((source: string, opts: Record<string, unknown>) => {
      parsed = { source, opts };
    });
    await program.parseAsync(init.args as string[], { from: 'user' });
    assert.match(parsed.source ?? '', /^pvc:\/\/reranker-models\//);
    const claimMount = init.volumeMounts.find((m: any) => m.name === 'model-source');
    assert.equal(claimMount.mountPath, '/mnt/pvc/reranker-models');

    // The claim's content as the init container would see it, under a stand-in root.
    const root = path.join(dir, 'mnt');
    const rel = (parsed.source ?? '').replace(/^pvc:\/\/reranker-models\//, '');
    const modelDir = path.join(root, 'reranker-models', rel);
    await mkdir(path.join(modelDir, 'onnx'), { recursive: true });
    await writeFile(path.join(modelDir, 'onnx', 'model.onnx'), MODEL);
    await writeFile(path.join(modelDir, 'tokenizer.json'), TOKENIZER);
    const out = path.join(dir, 'models', 'v');
    await pullModel({ source: parsed.source ?? '', dir: out, sha256: sha256(MODEL), env: { RERANK_PVC_ROOT: root } });
    assert.deepEqual((await readdir(out)).sort(), ['model.onnx', 'tokenizer.json']);
    await assert.rejects(
      pullModel({ source: parsed.source ?? '', dir: path.join(dir, 'bad'), sha256: 'b'.repeat(64), env: { RERANK_PVC_ROOT: root } }),
      ChecksumError,
    );
    assert.deepEqual(await readdir(path.join(dir, 'bad')), []);
  });

  test('the CLI exits non-zero with a clear message, and prints progress lines when stderr is not a TTY', async () => {
    const script = `
      import { Command } from 'commander';
      import { addModelsCommand } from ${JSON.stringify(path.resolve('server/models/cli.ts'))};
      const program = new Command('rerank-server');
      addModelsCommand(program);
      await program.parseAsync(process.argv.slice(1), { from: 'user' });`;
    // Asynchronous: the fake hub answers from this process.
    const run = (...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--input-type=module', '-e', script, ...args], { env: { ...process.env, HF_ENDPOINT: hub.endpoint, HF_TOKEN: '' } }, (error, stdout, stderr) =>
          resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
        );
      });
    const ok = await run('models', 'pull', 'hf://test-org/tiny-reranker', '--dir', path.join(dir, 'cli'));
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stderr, /onnx\/model\.onnx: downloading/);
    assert.match(ok.stderr, /onnx\/model\.onnx: 100% .* done/);
    assert.match(ok.stdout, /hf:\/\/test-org\/tiny-reranker@main -> .*model\.onnx \(downloaded\)/);
    const missing = await run('models', 'pull', 'hf://test-org/tiny-reranker', '--dir', path.join(dir, 'cli2'), '--file', 'nope.onnx');
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /models pull: nope\.onnx: HTTP 404/);
    const corrupt = await run('models', 'pull', 'hf://test-org/tiny-reranker', '--dir', path.join(dir, 'cli3'), '--sha256', 'c'.repeat(64));
    assert.equal(corrupt.status, 1);
    assert.match(corrupt.stderr, /sha256 mismatch/);
  });
});
