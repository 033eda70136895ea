import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { availableVariants, modelFiles } from '../../server/engine/model-files.ts';
import { entryFiles, entryVariants, loadCatalog, parseCatalog, type CatalogEntry } from '../../server/models/catalog.ts';
import { pullVariant } from '../../server/models/cli.ts';
import { pullModel } from '../../server/models/pull.ts';
import { bytes, startFakeHub, type FakeHub } from './hub.ts';

const catalog = parseCatalog(`models:
  - id: test-org/tiny-reranker
    source: hf://test-org/tiny-reranker
    license: apache-2.0
    architecture: bert
    maxLength: 512
    tokenTypeIds: true
    files:
      - { path: onnx/model.onnx, model: true }
      - { path: onnx/model_qint8_avx512_vnni.onnx, variant: int8, optional: true }
      - { path: onnx/model_quantized.onnx, variant: int8, optional: true }
      - { path: tokenizer.json }
      - { path: config.json }
  - id: test-org/fp32-only
    source: hf://test-org/fp32-only
    license: apache-2.0
    architecture: bert
    maxLength: 512
    tokenTypeIds: true
    files:
      - { path: onnx/model.onnx, model: true }
      - { path: tokenizer.json }
`);
const entry = catalog.models[0] as CatalogEntry;
const fp32Only = catalog.models[1] as CatalogEntry;

describe('catalogue variants', () => {
  test('an entry lists the exports it has; a pull of one takes its graph under the name the server looks for', () => {
    assert.deepEqual(entryVariants(entry), ['fp32', 'int8']);
    assert.deepEqual(entryVariants(fp32Only), ['fp32']);
    assert.deepEqual(
      entryFiles(entry, 'fp32').map((f) => [f.paths, f.dest]),
      [[['onnx/model.onnx'], 'model.onnx'], [['tokenizer.json'], 'tokenizer.json'], [['config.json'], 'config.json']],
    );
    const int8 = entryFiles(entry, 'int8');
    assert.deepEqual(int8[0], { paths: ['onnx/model_qint8_avx512_vnni.onnx', 'onnx/model_quantized.onnx'], dest: 'model_int8.onnx', model: true });
    assert.deepEqual(int8.slice(1).map((f) => f.dest), ['tokenizer.json', 'config.json']);
    assert.throws(() => entryFiles(fp32Only, 'int8'), /test-org\/fp32-only: the catalogue lists no int8 export: pull the fp32 model and run `rerank-server models quantize DIR`/);
  });

  test('--variant auto: int8 on a VNNI CPU when the catalogue has one, else fp32; a bad value is refused', () => {
    const vnni = { int8: ['avx512_vnni' as const], source: 'test' };
    const plain = { int8: [], source: 'test' };
    assert.equal(pullVariant('auto', entry, vnni), 'int8');
    assert.equal(pullVariant('auto', entry, plain), 'fp32');
    assert.equal(pullVariant('auto', fp32Only, vnni), 'fp32');
    assert.equal(pullVariant('auto', undefined, vnni), 'fp32');
    assert.equal(pullVariant('fp16', entry, vnni), 'fp16');
    assert.throws(() => pullVariant('int4', entry, vnni), /--variant must be one of auto, fp32, int8, fp16, got "int4"/);
  });

  test('the shipped catalogue parses, and its variant files are marked optional (not every repo has each name)', async () => {
    const shipped = await loadCatalog();
    const variantFiles = shipped.models.flatMap((m) => m.files.filter((f) => f.variant !== undefined));
    assert.ok(variantFiles.length > 0);
    for (const f of variantFiles) assert.equal(f.optional, true, f.path);
  });
});

describe('models pull --variant int8', () => {
  let hub: FakeHub;
  before(async () => {
    hub = await startFakeHub();
  });
  after(() => hub.close());

  test('fetches the first int8 name the repo has, as model_int8.onnx, and no fp32 graph; the server then finds only int8', async () => {
    const quantized = bytes(50_000, 3);
    hub.files.set('test-org/tiny-reranker/main/onnx/model.onnx', bytes(200_000, 1));
    hub.files.set('test-org/tiny-reranker/main/onnx/model_quantized.onnx', quantized);
    hub.files.set('test-org/tiny-reranker/main/tokenizer.json', Buffer.from('{}'));
    hub.files.set('test-org/tiny-reranker/main/config.json', Buffer.from('{}'));
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pull-variant-'));
    await pullModel({ source: 'test-org/tiny-reranker', dir, catalog, variant: 'int8', env: { HF_ENDPOINT: hub.endpoint } });
    assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'model_int8.onnx', 'tokenizer.json']);
    assert.deepEqual(await readFile(path.join(dir, 'model_int8.onnx')), quantized);
    assert.ok(!hub.requests.some((r) => r.url.endsWith('/onnx/model.onnx')), 'the fp32 graph is not fetched');
    assert.deepEqual(availableVariants(await modelFiles(dir)), ['int8']);
  });

  test('a repo with none of the names fails naming what it looked for', async () => {
    hub.reset();
    hub.files.set('test-org/tiny-reranker/main/tokenizer.json', Buffer.from('{}'));
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pull-variant-'));
    await assert.rejects(
      pullModel({ source: 'test-org/tiny-reranker', dir, catalog, variant: 'int8', env: { HF_ENDPOINT: hub.endpoint }, retries: 0 }),
      /model_qint8_avx512_vnni\.onnx|model_quantized\.onnx/,
    );
  });
});
