import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { json, startServer } from './harness.ts';

describe('GET /config and version endpoints', () => {
  test('/config answers what the reloader reports, behind the API key; /config/hash shows only the hash, open', async () => {
    const status = { hash: '0123456789abcdef', source: '/etc/rerank/config.yaml', appliedAt: '2026-11-23T00:00:00.000Z', config: { defaultVersion: 'a' } };
    const h = await startServer({ apiKey: 'k', configStatus: () => status });
    try {
      assert.equal((await h.get('/config')).status, 401);
      const response = await h.get('/config', { Authorization: 'Bearer k' });
      assert.equal(response.status, 200);
      assert.deepEqual(await json(response), status);
      const hash = await h.get('/config/hash');
      assert.equal(hash.status, 200);
      assert.deepEqual(await json(hash), { hash: status.hash, appliedAt: status.appliedAt });
    } finally {
      await h.close();
    }
  });

  test('/config is a 404 JSON error on a server without a config file', async () => {
    const h = await startServer();
    try {
      for (const route of ['/config', '/config/hash']) {
        const response = await h.get(route);
        assert.equal(response.status, 404, route);
        assert.equal((await json<{ error_type: string }>(response)).error_type, 'not_found', route);
      }
    } finally {
      await h.close();
    }
  });

  test("a version's endpoint serves it like /rerank/{version}, read per request", async () => {
    const endpoints = new Map([['/gemma/rerank', 'v2-gemma']]);
    const h = await startServer({ endpoints: () => endpoints });
    try {
      const response = await h.post('/gemma/rerank', { query: 'q', texts: ['a', 'bb'] });
      assert.equal(response.status, 200);
      assert.equal(h.reranker.calls.at(-1)?.pathVersion, 'v2-gemma');
      endpoints.clear();
      assert.equal((await h.post('/gemma/rerank', { query: 'q', texts: ['a'] })).status, 404);
      assert.equal((await h.get('/gemma/rerank')).status, 404, 'only POST is rewritten');
    } finally {
      await h.close();
    }
  });
});

describe('sticky key', () => {
  test('X-Rerank-Sticky-Key reaches the core; absent or blank, none is passed', async () => {
    const h = await startServer();
    try {
      await h.post('/rerank', { query: 'q', texts: ['a'] }, { 'X-Rerank-Sticky-Key': 'user-42' });
      assert.equal(h.reranker.calls.at(-1)?.stickyKey, 'user-42');
      await h.post('/v1/rerank', { query: 'q', documents: ['a'] }, { 'X-Rerank-Sticky-Key': '  ' });
      assert.equal(h.reranker.calls.at(-1)?.stickyKey, undefined);
    } finally {
      await h.close();
    }
  });
});
