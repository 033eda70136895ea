import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isRerankError } from '../../server/errors.ts';
import { resolveApiKey, sameSecret } from '../../server/http/auth.ts';
import { json, startServer, type Harness } from './harness.ts';

const KEY = 's3cret-key';
const TEI = { query: 'q', texts: ['a'] };
const COHERE = { query: 'q', documents: ['a'] };

describe('API key', () => {
  let h: Harness;
  before(async () => {
    h = await startServer();
  });
  after(() => h.close());

  test('without a key every route is open', async () => {
    h.apiKey = undefined;
    assert.equal((await h.post('/rerank', TEI)).status, 200);
    assert.equal((await h.post('/v1/rerank', COHERE)).status, 200);
    assert.equal((await h.get('/info')).status, 200);
  });

  test('with a key, the rerank routes, /info and /config need Authorization: Bearer <key>', async () => {
    h.apiKey = KEY;
    const guarded: Array<[string, unknown]> = [
      ['/rerank', TEI],
      ['/rerank/v2', TEI],
      ['/v1/rerank', COHERE],
      ['/v2/rerank', COHERE],
    ];
    for (const [route, body] of guarded) {
      const missing = await h.post(route, body);
      assert.equal(missing.status, 401, route);
      assert.match(missing.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal((await json<{ error_type: string }>(missing)).error_type, 'unauthorized');
      assert.equal((await h.post(route, body, { Authorization: 'Bearer wrong' })).status, 401, route);
      assert.equal((await h.post(route, body, { Authorization: KEY })).status, 401, `${route}: no scheme`);
      assert.equal((await h.post(route, body, { Authorization: `Bearer ${KEY}` })).status, 200, route);
      assert.equal((await h.post(route, body, { Authorization: `bearer ${KEY}` })).status, 200, `${route}: scheme is case-insensitive`);
    }
    for (const route of ['/info', '/config']) {
      assert.equal((await h.get(route)).status, 401, route);
      assert.notEqual((await h.get(route, { Authorization: `Bearer ${KEY}` })).status, 401, route);
    }
    assert.equal(h.reranker.calls.filter((call) => call.documents[0] === 'a').length >= 8, true);
  });

  test('with a key, health, readiness, metrics, the OpenAPI document and the config hash stay open', async () => {
    h.apiKey = KEY;
    for (const route of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      assert.equal((await h.get(route)).status, 200, route);
    }
    assert.notEqual((await h.get('/config/hash')).status, 401, '/config/hash');
  });

  test('a 401 is counted under its route pattern, not as unmatched', async () => {
    h.apiKey = KEY;
    await h.post('/rerank/v1', TEI);
    const metrics = await (await h.get('/metrics')).text();
    assert.match(metrics, /http_request_duration_seconds_count\{method="POST",route="\/rerank\/:version",status="401"\} \d+/);
    assert.match(metrics, /reranker_requests_total\{version="none",status="401"\} \d+/);
  });

  test('a rotated key applies to the next request', async () => {
    h.apiKey = 'old';
    assert.equal((await h.post('/rerank', TEI, { Authorization: 'Bearer old' })).status, 200);
    h.apiKey = 'new';
    assert.equal((await h.post('/rerank', TEI, { Authorization: 'Bearer old' })).status, 401);
    assert.equal((await h.post('/rerank', TEI, { Authorization: 'Bearer new' })).status, 200);
  });
});

test('a key file that cannot be read closes the guarded routes (503) instead of opening them', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rerank-key-'));
  const env = { RERANK_API_KEY_FILE: path.join(dir, 'missing') };
  const h = await startServer({ apiKeySource: () => resolveApiKey(env) });
  try {
    const response = await h.post('/rerank', TEI);
    assert.equal(response.status, 503);
    assert.equal((await json<{ error_type: string }>(response)).error_type, 'unavailable');
    assert.equal(h.reranker.calls.length, 0);
    assert.equal((await h.get('/healthz')).status, 200);
  } finally {
    await h.close();
    rmSync(dir, { recursive: true });
  }
});

describe('resolveApiKey', () => {
  test('RERANK_API_KEY, trimmed; nothing set: undefined', () => {
    assert.equal(resolveApiKey({ RERANK_API_KEY: ' abc\n' }), 'abc');
    assert.equal(resolveApiKey({}), undefined);
    assert.equal(resolveApiKey({ RERANK_API_KEY: '' }), undefined);
  });

  test('RERANK_API_KEY_FILE is read, and re-read when the file changes', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rerank-key-'));
    try {
      const file = path.join(dir, 'key');
      writeFileSync(file, 'first\n');
      const env = { RERANK_API_KEY_FILE: file };
      assert.equal(resolveApiKey(env), 'first');
      writeFileSync(file, 'second-key\n');
      utimesSync(file, new Date(), new Date(Date.now() + 5000));
      assert.equal(resolveApiKey(env), 'second-key');
      assert.equal(resolveApiKey({ ...env, RERANK_API_KEY: 'direct' }), 'direct', 'the variable wins over the file');
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test('a key file that is missing or empty is an error (unavailable), never "no key"', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rerank-key-'));
    try {
      const empty = path.join(dir, 'empty');
      writeFileSync(empty, '\n');
      for (const file of [path.join(dir, 'missing'), empty]) {
        assert.throws(
          () => resolveApiKey({ RERANK_API_KEY_FILE: file }),
          (error: unknown) => isRerankError(error) && error.kind === 'unavailable',
        );
      }
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

test('sameSecret compares keys of any length', () => {
  assert.equal(sameSecret('abc', 'abc'), true);
  assert.equal(sameSecret('abc', 'abd'), false);
  assert.equal(sameSecret('abc', 'abcd'), false);
  assert.equal(sameSecret('', 'x'), false);
});
