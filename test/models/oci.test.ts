import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { ArchiveError, MARKER } from '../../server/models/archive.ts';
import { ChecksumError, DownloadError } from '../../server/models/download.ts';
import { checkTitle } from '../../server/models/oci.ts';
import { createProgress } from '../../server/models/progress.ts';
import { pullModel } from '../../server/models/pull.ts';
import { parseOciSource, resolveSource, ResolveError } from '../../server/models/resolve.ts';
import { planDesiredObjects } from '../../operator/planner.ts';
import { IMAGES, example } from '../operator/support/examples.ts';
import { bytes, sha256 } from './hub.ts';
import { startFakeRegistry, type FakeRegistry } from './registry.ts';

const MODEL = bytes(200_000, 11);
const TOKENIZER = Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'WordPiece' } }));
const CONFIG = Buffer.from('{"architectures":["XLMRobertaForSequenceClassification"]}');
const FILES = [
  { title: 'model.onnx', body: MODEL },
  { title: 'tokenizer.json', body: TOKENIZER },
  { title: 'config.json', body: CONFIG },
];

const UNPACK = 'io.deis.oras.content.unpack';

/** What `oras push <ref> model-dir/` uploads: the directory as one tar+gzip layer, entries under model-dir/. */
function packedDir(top: string, files: Array<{ path: string; body?: Buffer; type?: 'File' | 'SymbolicLink'; linkpath?: string }>): Buffer {
  const blocks: Buffer[] = [];
  for (const f of [{ path: `${top}/`, type: 'Directory' as const }, ...files.map((f) => ({ ...f, path: `${top}/${f.path}` }))]) {
    const body = 'body' in f && f.body ? f.body : Buffer.alloc(0);
    const block = Buffer.alloc(512);
    new Header({ path: f.path, type: f.type ?? 'File', size: body.length, mode: 0o644, mtime: new Date(0), ...('linkpath' in f && f.linkpath ? { linkpath: f.linkpath } : {}) }).encode(block, 0);
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  return gzipSync(Buffer.concat([...blocks, Buffer.alloc(1024)]));
}

let registry: FakeRegistry;
let dir: string;
const collect = () => {
  const lines: string[] = [];
  return { lines, progress: createProgress({ write: (t: string) => lines.push(t), isTTY: false }) };
};
const pull = (source: string, extra: Partial<Parameters<typeof pullModel>[0]> = {}) =>
  pullModel({ source, dir, env: {}, retryDelayMs: 5, ...extra });

before(async () => {
  registry = await startFakeRegistry();
});
after(() => registry.close());
beforeEach(async () => {
  registry.reset();
  dir = await mkdtemp(path.join(os.tmpdir(), 'models-oci-'));
});

describe('oci:// sources', () => {
  test('parsing: host and port, tag (default latest), digest, http only for loopback or OCI_INSECURE', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.deepEqual(parseOciSource('oci://registry.example.com/models/bge-reranker-v2-gemma:2024-06'), {
      baseUrl: 'https://registry.example.com', repository: 'models/bge-reranker-v2-gemma', reference: '2024-06',
    });
    assert.deepEqual(parseOciSource('oci://localhost:5000/m'), { baseUrl: 'http://localhost:5000', repository: 'm', reference: 'latest' });
    assert.deepEqual(parseOciSource(`oci://ghcr.io/org/m:v1@${digest}`), { baseUrl: 'https://ghcr.io', repository: 'org/m', reference: digest });
    assert.deepEqual(parseOciSource('oci://registry.lan:5000/m:v1', { OCI_INSECURE: '1' }).baseUrl, 'http://registry.lan:5000');
    assert.equal(parseOciSource('oci://docker.io/org/m:v1').baseUrl, 'https://registry-1.docker.io');
    for (const bad of ['oci://host-only', 'oci://r.io/Upper/Case:v1', 'oci://r.io/m@sha256:abc', 'oci://r.io/m:bad tag']) {
      assert.throws(() => parseOciSource(bad), ResolveError, bad);
    }
  });

  test('the seed example\'s oci:// version: the init container\'s args resolve to a registry pull pinned by model.sha256', () => {
    const objects = planDesiredObjects(example('seed'), IMAGES, {});
    const gemma = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'rerankers-v2-gemma') as unknown as {
      spec: { template: { spec: { initContainers: Array<{ args: string[] }> } } };
    };
    const [, , source, , , , sha] = gemma.spec.template.spec.initContainers[0]!.args;
    assert.deepEqual(resolveSource(source!, { sha256: sha!, env: {} }), {
      kind: 'oci',
      source: 'oci://registry.example.com/models/bge-reranker-v2-gemma:2024-06',
      ref: { baseUrl: 'https://registry.example.com', repository: 'models/bge-reranker-v2-gemma', reference: '2024-06' },
      sha256: sha,
    });
  });

  test('layer titles must stay inside the model directory', () => {
    for (const good of ['model.onnx', 'onnx/model.onnx', 'model.onnx_data']) assert.equal(checkTitle(good), undefined, good);
    for (const bad of ['', '../model.onnx', 'onnx/../../x', '/etc/passwd', 'a//b', './x', 'a\\b', 'C:x']) assert.ok(checkTitle(bad), bad);
  });

  test('a tag: anonymous token after the 401, every layer lands under its title and verifies; a second pull skips', async () => {
    registry.pushArtifact('models/tiny', 'v1', FILES);
    const { lines, progress } = collect();
    const result = await pull(`oci://${registry.host}/models/tiny:v1`, { progress });
    assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'model.onnx', 'tokenizer.json']);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.deepEqual(await readFile(path.join(dir, 'tokenizer.json')), TOKENIZER);
    assert.deepEqual(result.files.map((f) => [f.file, f.outcome]), [['model.onnx', 'downloaded'], ['tokenizer.json', 'downloaded'], ['config.json', 'downloaded']]);
    assert.equal(result.plan.source, `oci://${registry.host}/models/tiny:v1`);

    // The Distribution token flow: 401 with a challenge, one token request with its service and scope, then Bearer.
    assert.equal(registry.requests[0]?.url, '/v2/models/tiny/manifests/v1');
    assert.equal(registry.requests[0]?.headers.authorization, undefined);
    assert.match(String(registry.requests[0]?.headers.accept), /application\/vnd\.oci\.image\.manifest\.v1\+json/);
    assert.match(String(registry.requests[0]?.headers.accept), /application\/vnd\.oci\.image\.index\.v1\+json/);
    assert.equal(registry.tokenRequests.length, 1);
    const tokenUrl = new URL(registry.tokenRequests[0]!.url, 'http://x');
    assert.deepEqual([tokenUrl.searchParams.get('service'), tokenUrl.searchParams.get('scope')], ['fake-registry', 'repository:models/tiny:pull']);
    assert.equal(registry.tokenRequests[0]?.headers.authorization, undefined, 'anonymous: no credentials sent');
    const after401 = registry.requests.slice(1);
    assert.equal(after401.length, 4);
    for (const r of after401) assert.equal(r.headers.authorization, 'Bearer token-1', r.url);
    assert.deepEqual(after401.slice(1).map((r) => r.url), FILES.map((f) => `/v2/models/tiny/blobs/sha256:${sha256(f.body)}`));

    const text = lines.join('');
    assert.match(text, /manifest sha256:[a-f0-9]{64}, 3 file\(s\)/);
    assert.match(text, /model\.onnx: downloading 200\.0 KB/);
    assert.match(text, /model\.onnx: 100% \(200\.0 KB\) done/);

    registry.requests.length = 0;
    const again = await pull(`oci://${registry.host}/models/tiny:v1`);
    assert.deepEqual(again.files.map((f) => f.outcome), ['skipped', 'skipped', 'skipped']);
    assert.ok(registry.requests.every((r) => r.url.includes('/manifests/')), 'a verified file was fetched again');
  });

  test('a digest pins the manifest: the bytes must hash to it', async () => {
    const digest = registry.pushArtifact('models/pinned', undefined, FILES);
    const result = await pull(`oci://${registry.host}/models/pinned@${digest}`);
    assert.equal(result.plan.source, `oci://${registry.host}/models/pinned@${digest}`);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);

    const other = `sha256:${'b'.repeat(64)}`;
    registry.putManifest('models/pinned', other, 'application/vnd.oci.image.manifest.v1+json', Buffer.from('{"schemaVersion":2,"layers":[]}'));
    await assert.rejects(pull(`oci://${registry.host}/models/pinned@${other}`), (e: Error) => e instanceof ChecksumError && /manifest whose digest is sha256:/.test(e.message));
  });

  test('an index: the linux/amd64 manifest is pulled; without platforms, the first', async () => {
    const arm = registry.pushArtifact('models/multi', undefined, [{ title: 'model.onnx', body: bytes(1000, 3) }, { title: 'tokenizer.json', body: TOKENIZER }]);
    const amd = registry.pushArtifact('models/multi', undefined, FILES);
    registry.pushIndex('models/multi', 'v2', [
      { digest: arm, platform: { os: 'linux', architecture: 'arm64' } },
      { digest: amd, platform: { os: 'linux', architecture: 'amd64' } },
    ]);
    await pull(`oci://${registry.host}/models/multi:v2`);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.ok(registry.requests.some((r) => r.url === `/v2/models/multi/manifests/${amd}`));

    registry.pushIndex('models/multi', 'plain', [{ digest: arm }, { digest: amd }]);
    const second = path.join(dir, 'first');
    await pullModel({ source: `oci://${registry.host}/models/multi:plain`, dir: second, env: {} });
    assert.equal((await readFile(path.join(second, 'model.onnx'))).length, 1000);
  });

  test('credentials from OCI_USERNAME/OCI_PASSWORD go to the token endpoint; wrong ones fail clearly', async () => {
    registry.pushArtifact('private/m', 'v1', FILES);
    registry.credentials = { username: 'robot', password: 's3cret' };
    await pull(`oci://${registry.host}/private/m:v1`, { env: { OCI_USERNAME: 'robot', OCI_PASSWORD: 's3cret' } });
    assert.equal(registry.tokenRequests[0]?.headers.authorization, `Basic ${Buffer.from('robot:s3cret').toString('base64')}`);
    assert.ok(registry.requests.every((r) => r.headers.authorization !== registry.tokenRequests[0]?.headers.authorization), 'the password went to the registry itself');

    await assert.rejects(
      pullModel({ source: `oci://${registry.host}/private/m:v1`, dir: path.join(dir, 'anon'), env: {} }),
      (e: Error) => e instanceof DownloadError && e.status === 401 && /token request answered HTTP 401: the repository may be private; set OCI_USERNAME and OCI_PASSWORD/.test(e.message),
    );
    await assert.rejects(
      pullModel({ source: `oci://${registry.host}/private/m:v1`, dir: path.join(dir, 'wrong'), env: { OCI_USERNAME: 'robot', OCI_PASSWORD: 'nope' } }),
      /check OCI_USERNAME and OCI_PASSWORD/,
    );
  });

  test('a token that expires mid-pull is renewed; a dropped blob resumes with a Range request', async () => {
    registry.pushArtifact('models/tiny', 'v1', FILES);
    const modelDigest = `sha256:${sha256(MODEL)}`;
    registry.cutOnce.add(modelDigest);
    let revoked = false;
    const { lines, progress } = collect();
    await pull(`oci://${registry.host}/models/tiny:v1`, {
      progress,
      // Revoke every token once the model blob has started: its resume must fetch a new one.
      fetcher: async (url, init) => {
        const response = await fetch(url, init);
        if (url.endsWith(modelDigest) && !revoked) {
          revoked = true;
          registry.revokeTokens();
        }
        return response;
      },
    });
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    assert.equal(registry.tokenRequests.length, 2);
    const blobGets = registry.requests.filter((r) => r.url.endsWith(modelDigest));
    assert.deepEqual(blobGets.map((r) => [r.headers.authorization, r.headers.range !== undefined]), [
      ['Bearer token-1', false], ['Bearer token-1', true], ['Bearer token-2', true],
    ]);
    assert.match(lines.join(''), /retrying from byte \d+/);
  });

  test('blobs redirected to object storage: followed, and the token stays with the registry', async () => {
    registry.pushArtifact('models/tiny', 'v1', FILES);
    registry.redirectBlobs = true;
    await pull(`oci://${registry.host}/models/tiny:v1`);
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    const storage = registry.requests.filter((r) => r.url.startsWith('storage:'));
    assert.equal(storage.length, 3);
    for (const r of storage) assert.equal(r.headers.authorization, undefined);
  });

  test('a corrupt blob is refused and deleted; files already verified stay', async () => {
    registry.pushArtifact('models/corrupt', 'v1', [
      { title: 'tokenizer.json', body: TOKENIZER },
      { title: 'model.onnx', body: MODEL, served: bytes(200_000, 12) },
    ]);
    await assert.rejects(
      pull(`oci://${registry.host}/models/corrupt:v1`),
      (e: Error) => e instanceof ChecksumError && e.message.includes(`expected ${sha256(MODEL)}`) && e.message.startsWith('model.onnx: sha256 mismatch'),
    );
    assert.deepEqual(await readdir(dir), ['tokenizer.json']);
  });

  test('a directory packed into one layer is extracted as the model directory; --sha256 pins the layer; a re-run skips', async () => {
    const layer = packedDir('model-dir', FILES.map((f) => ({ path: f.title, body: f.body })));
    registry.pushArtifact('models/packed', 'v1', [{ title: 'model-dir', body: layer, annotations: { [UNPACK]: 'true' } }]);
    const target = path.join(dir, 'v1');
    const source = `oci://${registry.host}/models/packed:v1`;
    await assert.rejects(
      pullModel({ source, dir: target, env: {}, sha256: 'e'.repeat(64) }),
      (e: Error) => e instanceof ChecksumError && /the packed directory model-dir is sha256:[a-f0-9]{64} in manifest .*expected sha256:e{64}; nothing was downloaded/.test(e.message),
    );
    assert.ok(registry.requests.every((r) => !r.url.includes('/blobs/')));
    assert.deepEqual(await readdir(dir), []);

    const result = await pullModel({ source, dir: target, env: {}, sha256: sha256(layer) });
    assert.deepEqual((await readdir(target)).sort(), [MARKER, 'config.json', 'model.onnx', 'tokenizer.json']);
    assert.deepEqual(await readFile(path.join(target, 'model.onnx')), MODEL);
    assert.deepEqual(result.files.map((f) => [f.file, f.outcome]), [['config.json', 'extracted'], ['model.onnx', 'extracted'], ['tokenizer.json', 'extracted']]);
    assert.deepEqual(await readdir(dir), ['v1']);

    registry.requests.length = 0;
    const again = await pullModel({ source, dir: target, env: {} });
    assert.deepEqual(again.files.map((f) => f.outcome), ['skipped', 'skipped', 'skipped']);
    assert.ok(registry.requests.every((r) => !r.url.includes('/blobs/')), 'the layer was fetched again');

    // The same checks as an https:// archive: a link out of the directory is refused, nothing is left.
    const evil = packedDir('model-dir', [...FILES.map((f) => ({ path: f.title, body: f.body })), { path: 'leak', type: 'SymbolicLink', linkpath: '../../etc/passwd' }]);
    registry.pushArtifact('models/evil-packed', 'v1', [{ title: 'model-dir', body: evil, annotations: { [UNPACK]: 'true' } }]);
    await assert.rejects(
      pullModel({ source: `oci://${registry.host}/models/evil-packed:v1`, dir: path.join(dir, 'evil'), env: {} }),
      (e: Error) => e instanceof ArchiveError && /entry "model-dir\/leak" is a symlink to \.\.\/\.\.\/etc\/passwd outside the archive/.test(e.message),
    );
    assert.deepEqual(await readdir(dir), ['v1']);
  });

  test('a title that would leave the directory is refused before anything is written', async () => {
    for (const title of ['../escape.onnx', '/tmp/abs.onnx', 'onnx/../../x']) {
      registry.pushArtifact('models/evil', 'v1', [{ title: 'tokenizer.json', body: TOKENIZER }, { title, body: MODEL }]);
      await assert.rejects(pull(`oci://${registry.host}/models/evil:v1`), (e: Error) => e instanceof DownloadError && e.message.includes(`layer title "${title}"`), title);
    }
    assert.deepEqual(await readdir(dir), []);
    assert.deepEqual(await readdir(path.dirname(dir)).then((entries) => entries.filter((e) => e === 'escape.onnx')), []);
    assert.ok(registry.requests.every((r) => !r.url.includes('/blobs/')), 'a blob was fetched');
  });

  test('a missing tag names the tag and the registry\'s error code; an unreachable registry is a DownloadError', async () => {
    registry.pushArtifact('models/tiny', 'v1', FILES);
    await assert.rejects(
      pull(`oci://${registry.host}/models/tiny:v9`),
      (e: Error) => e instanceof DownloadError && e.status === 404 && e.message.startsWith('models/tiny:v9: HTTP 404: no tag "v9" in models/tiny [MANIFEST_UNKNOWN: manifest unknown]'),
    );
    await assert.rejects(pull(`oci://127.0.0.1:1/models/tiny:v1`, { retries: 0 }), DownloadError);
  });

  test('--sha256 pins the model.onnx layer: a mismatch fails before any blob is fetched; layouts and odd artifacts', async () => {
    registry.pushArtifact('models/tiny', 'v1', FILES);
    await pull(`oci://${registry.host}/models/tiny:v1`, { sha256: sha256(MODEL) });
    assert.deepEqual(await readFile(path.join(dir, 'model.onnx')), MODEL);
    registry.requests.length = 0;
    await assert.rejects(
      pullModel({ source: `oci://${registry.host}/models/tiny:v1`, dir: path.join(dir, 'x'), env: {}, sha256: 'c'.repeat(64) }),
      (e: Error) => e instanceof ChecksumError && /model\.onnx is sha256:[a-f0-9]{64} in manifest .*expected sha256:c{64}; nothing was downloaded/.test(e.message),
    );
    assert.ok(registry.requests.every((r) => !r.url.includes('/blobs/')));

    // onnx/model.onnx keeps its place (the server reads it there); a lone graph of another name becomes model.onnx.
    registry.pushArtifact('models/nested', 'v1', [{ title: 'onnx/model.onnx', body: MODEL }, { title: 'tokenizer.json', body: TOKENIZER }]);
    const nested = path.join(dir, 'nested');
    await pullModel({ source: `oci://${registry.host}/models/nested:v1`, dir: nested, env: {}, sha256: sha256(MODEL) });
    assert.deepEqual(await readFile(path.join(nested, 'onnx', 'model.onnx')), MODEL);
    registry.pushArtifact('models/named', 'v1', [{ title: 'reranker.onnx', body: MODEL }, { title: 'tokenizer.json', body: TOKENIZER }, { body: bytes(10) }]);
    const named = path.join(dir, 'named');
    const { lines, progress } = collect();
    await pullModel({ source: `oci://${registry.host}/models/named:v1`, dir: named, env: {}, progress });
    assert.deepEqual((await readdir(named)).sort(), ['model.onnx', 'tokenizer.json']);
    assert.match(lines.join(''), /has no org\.opencontainers\.image\.title annotation, skipped/);

    registry.pushArtifact('models/graphless', 'v1', [{ title: 'tokenizer.json', body: TOKENIZER }]);
    await assert.rejects(pull(`oci://${registry.host}/models/graphless:v1`), /no model\.onnx .* among tokenizer\.json/);
    registry.pushArtifact('models/mixed', 'v1', [{ title: 'model-dir', body: bytes(100), annotations: { [UNPACK]: 'true' } }, { title: 'tokenizer.json', body: TOKENIZER }]);
    await assert.rejects(pull(`oci://${registry.host}/models/mixed:v1`), /"model-dir" is a packed directory among other layers; push one directory alone/);
    await assert.rejects(pull(`oci://${registry.host}/models/tiny:v1`, { files: ['model.onnx'] }), /--file applies to hf:\/\/ sources/);
  });
});
