import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findEntry, loadCatalog } from '../../server/models/catalog.ts';
import { catalogueHead, headForVersion } from '../../server/engine/scoring-head.ts';

describe('catalogue heads', () => {
  it('the LLM rerankers of the catalogue carry their head, export and prepare recipes and memory', async () => {
    const catalog = await loadCatalog();
    for (const [id, template] of [
      ['BAAI/bge-reranker-v2-gemma', 'bge-gemma'],
      ['Qwen/Qwen3-Reranker-0.6B', 'qwen3'],
      ['Qwen/Qwen3-Reranker-4B', 'qwen3'],
    ] as const) {
      const entry = findEntry(catalog, id);
      assert.ok(entry, id);
      assert.deepEqual(entry.head, { type: 'causal-lm-yes-no', template }, id);
      assert.match(entry.export?.command ?? '', /--task text-generation /, id);
      assert.match(entry.export?.prepare ?? '', /^rerank-server models prepare /, id);
      assert.ok(entry.memory && entry.license, id);
    }
    assert.equal(findEntry(catalog, 'BAAI/bge-reranker-v2-m3')?.head, undefined, 'cross-encoders need no head');
  });

  it('a model directory named like a known model, or exported from one, takes its head; config overrides it', async () => {
    const catalog = await loadCatalog();
    assert.deepEqual(await catalogueHead('/models/BAAI/bge-reranker-v2-gemma', {}, catalog), { type: 'causal-lm-yes-no', template: 'bge-gemma' });
    assert.deepEqual(await catalogueHead('/models/local/Qwen3-Reranker-0.6B', {}, catalog), { type: 'causal-lm-yes-no', template: 'qwen3' });
    assert.deepEqual(await catalogueHead('/models/v2-gemma', { nameOrPath: 'BAAI/bge-reranker-v2-gemma' }, catalog), { type: 'causal-lm-yes-no', template: 'bge-gemma' });
    assert.equal(await catalogueHead('/models/v2', {}, catalog), undefined);

    const known = await headForVersion(undefined, '/models/v2-gemma', { nameOrPath: 'BAAI/bge-reranker-v2-gemma' }, catalog);
    assert.deepEqual([known.head.type, known.source], ['causal-lm-yes-no', 'catalogue']);
    const overridden = await headForVersion({ type: 'cross-encoder' }, '/models/v2-gemma', { nameOrPath: 'BAAI/bge-reranker-v2-gemma' }, catalog);
    assert.deepEqual([overridden.head.type, overridden.source], ['cross-encoder', 'config']);
    const unknown = await headForVersion(undefined, '/models/v1', {}, catalog);
    assert.deepEqual([unknown.head.type, unknown.source], ['cross-encoder', 'default']);
  });
});
