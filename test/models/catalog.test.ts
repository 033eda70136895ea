import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CatalogError, findEntry, loadCatalog, parseCatalog } from '../../server/models/catalog.ts';
import { resolveSource } from '../../server/models/resolve.ts';

describe('model catalogue', () => {
  test('models/catalog.yaml parses; ids are unique; every entry is complete', async () => {
    const catalog = await loadCatalog();
    const ids = catalog.models.map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ['BAAI/bge-reranker-v2-m3', 'BAAI/bge-reranker-base', 'BAAI/bge-reranker-large', 'cross-encoder/ms-marco-MiniLM-L-6-v2', 'jinaai/jina-reranker-v2-base-multilingual', 'mixedbread-ai/mxbai-rerank-base-v1']) {
      assert.ok(ids.includes(id), id);
    }
    for (const m of catalog.models) {
      assert.equal(m.source, `hf://${m.id}`);
      assert.ok(m.license && m.maxLength > 0 && typeof m.tokenTypeIds === 'boolean');
      assert.ok(m.files.some((f) => f.path === 'tokenizer.json'), `${m.id}: tokenizer.json`);
      assert.ok(m.files.some((f) => f.model) || m.export?.command.includes(m.id), `${m.id}: a graph or an export recipe`);
      // Every entry resolves to a plan that writes model.onnx and tokenizer.json where the server reads them.
      const plan = resolveSource(m.id, { catalog, env: {} });
      assert.equal(plan.kind, 'http');
      if (plan.kind === 'http') assert.deepEqual(plan.files.map((f) => f.dest).slice(0, 2).sort(), ['model.onnx', 'tokenizer.json']);
    }
    // XLM-R graphs take no token_type_ids; BERT ones do.
    assert.equal(findEntry(catalog, 'hf://BAAI/bge-reranker-v2-m3')?.tokenTypeIds, false);
    assert.equal(findEntry(catalog, 'cross-encoder/ms-marco-MiniLM-L-6-v2')?.tokenTypeIds, true);
  });

  test('a short name finds its entry when exactly one has it; a shared one names the candidates', async () => {
    const catalog = await loadCatalog();
    assert.equal(findEntry(catalog, 'bge-reranker-v2-m3')?.id, 'BAAI/bge-reranker-v2-m3');
    assert.equal(findEntry(catalog, 'ms-marco-MiniLM-L-6-v2')?.id, 'cross-encoder/ms-marco-MiniLM-L-6-v2');
    const plan = resolveSource('ms-marco-MiniLM-L-6-v2', { catalog, env: {} });
    assert.equal(plan.kind, 'http');
    assert.equal(findEntry(catalog, 'no-such-model'), undefined);
    const shared = parseCatalog(`models:\n${['a/m', 'b/m'].map((id) => `  - {id: ${id}, source: hf://${id}, license: mit, architecture: bert, maxLength: 512, tokenTypeIds: true, files: [{path: onnx/model.onnx, model: true}, {path: tokenizer.json}]}\n`).join('')}`);
    assert.throws(() => findEntry(shared, 'm'), /"m" names 2 catalogue entries \(a\/m, b\/m\): give the full id/);
    assert.equal(findEntry(shared, 'a/m')?.id, 'a/m');
  });

  test('duplicate ids, bad sha256 and incomplete entries are rejected', () => {
    const entry = `  - id: a/b
    source: hf://a/b
    license: mit
    architecture: bert
    maxLength: 512
    tokenTypeIds: true
    files: [{ path: onnx/model.onnx, model: true }, { path: tokenizer.json }]
`;
    assert.equal(parseCatalog(`models:\n${entry}`).models.length, 1);
    assert.throws(() => parseCatalog(`models:\n${entry}${entry}`), (e: Error) => e instanceof CatalogError && /duplicate id a\/b/.test(e.message));
    assert.throws(() => parseCatalog(`models:\n${entry.replace('model: true }', 'model: true, sha256: abc }')}`), /sha256/);
    assert.throws(() => parseCatalog(`models:\n${entry.replace(', { path: tokenizer.json }', '')}`), /tokenizer.json is required/);
    assert.throws(() => parseCatalog(`models:\n${entry.replace('    license: mit\n', '')}`), /license/);
  });
});
