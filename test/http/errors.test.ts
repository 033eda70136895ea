import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import { RerankError, type RerankErrorKind } from '../../server/errors.ts';
import { STATUS_BY_KIND } from '../../server/http/errors.ts';
import { json, startServer, type Harness } from './harness.ts';

type ErrorBody = { error: string; error_type: string; field?: string; detail?: string };

const KINDS: Array<{ kind: RerankErrorKind; status: number }> = [
  { kind: 'validation', status: 400 },
  { kind: 'payload_too_large', status: 413 },
  { kind: 'tokenizer', status: 422 },
  { kind: 'overloaded', status: 429 },
  { kind: 'unauthorized', status: 401 },
  { kind: 'not_found', status: 404 },
  { kind: 'unavailable', status: 503 },
  { kind: 'cancelled', status: 499 },
  { kind: 'deadline', status: 504 },
  { kind: 'model', status: 500 },
];

test('every error kind has a status, and the table covers them all', () => {
  assert.deepEqual(Object.keys(STATUS_BY_KIND).sort(), KINDS.map((k) => k.kind).sort());
});

describe('error mapping over HTTP', () => {
  let h: Harness;
  before(async () => {
    h = await startServer();
  });
  after(() => h.close());
  beforeEach(() => {
    h.serving = ServingConfigSchema.parse({});
    h.reranker.failWith(undefined);
    h.reranker.calls.length = 0;
    h.logs.length = 0;
  });

  for (const { kind, status } of KINDS) {
    test(`${kind} from the core → ${status} with {error, error_type}`, async () => {
      h.reranker.failWith(new RerankError(kind, `the core says ${kind}`, { field: 'documents.1' }));
      for (const path of ['/rerank', '/v1/rerank']) {
        const body = path === '/rerank' ? { query: 'q', texts: ['a', 'b'] } : { query: 'q', documents: ['a', 'b'] };
        const response = await h.post(path, body);
        assert.equal(response.status, status, path);
        assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
        const error = await json<ErrorBody>(response);
        assert.equal(error.error, `the core says ${kind}`);
        assert.equal(error.error_type, kind);
        assert.equal(error.field, path === '/rerank' ? 'texts.1' : 'documents.1', 'the field in the API\'s own terms');
        assert.equal(error.detail, path === '/rerank' ? undefined : error.error);
      }
    });
  }

  test('a core error naming documents.N is reported as texts.N to a TEI caller', async () => {
    h.reranker.failWith(new RerankError('payload_too_large', 'documents.0: longer than 512 tokens, and truncate is false', { field: 'documents.0' }));
    const tei = await json<ErrorBody>(await h.post('/rerank', { query: 'q', texts: ['a'], truncate: false }));
    assert.deepEqual(tei, { error: 'texts.0: longer than 512 tokens, and truncate is false', error_type: 'payload_too_large', field: 'texts.0' });
    const cohere = await json<ErrorBody>(await h.post('/v2/rerank', { query: 'q', documents: ['a'] }));
    assert.equal(cohere.field, 'documents.0');
  });

  test('429 carries Retry-After: the core\'s value, rounded up, else 1', async () => {
    h.reranker.failWith(new RerankError('overloaded', 'queue full', { retryAfterSeconds: 2.2 }));
    const given = await h.post('/rerank', { query: 'q', texts: ['a'] });
    assert.equal(given.status, 429);
    assert.equal(given.headers.get('retry-after'), '3');
    h.reranker.failWith(new RerankError('overloaded', 'queue full'));
    const fallback = await h.post('/rerank', { query: 'q', texts: ['a'] });
    assert.equal(fallback.headers.get('retry-after'), '1');
  });

  test('401 from the core carries WWW-Authenticate: Bearer', async () => {
    h.reranker.failWith(new RerankError('unauthorized', 'no'));
    const response = await h.post('/rerank', { query: 'q', texts: ['a'] });
    assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer/);
  });

  test('a non-RerankError is a 500 that reveals nothing, logged with its stack; the server keeps serving', async () => {
    h.reranker.failWith(new TypeError('secret internals: cannot read x of undefined'));
    const response = await h.post('/rerank', { query: 'q', texts: ['a'] });
    assert.equal(response.status, 500);
    const body = await json<ErrorBody>(response);
    assert.deepEqual(body, { error: 'internal server error', error_type: 'internal' });
    const logged = h.logs.find((line) => line.msg === 'request failed') as { err?: { stack?: string } } | undefined;
    assert.match(logged?.err?.stack ?? '', /secret internals[\s\S]*at /);
    h.reranker.failWith(undefined);
    assert.equal((await h.get('/healthz')).status, 200);
    assert.equal((await h.post('/rerank', { query: 'q', texts: ['a'] })).status, 200);
  });

  test('a thrown non-Error value is a 500 too', async () => {
    h.reranker.failWith('a string, not an error');
    const response = await h.post('/v2/rerank', { query: 'q', documents: ['a'] });
    assert.equal(response.status, 500);
    assert.equal((await json<ErrorBody>(response)).error_type, 'internal');
  });

  const BAD_BODIES: Array<{ name: string; path: string; body: unknown; field: string; status?: number }> = [
    { name: 'malformed JSON', path: '/rerank', body: '{"query": "q", "texts": [', field: 'body' },
    { name: 'a JSON array', path: '/rerank', body: '[1, 2]', field: 'body' },
    { name: 'a JSON string', path: '/v1/rerank', body: '"just a string"', field: 'body' },
    { name: 'a JSON number', path: '/v1/rerank', body: '42', field: 'body' },
    { name: 'a __proto__ key', path: '/rerank', body: '{"query":"q","texts":["a"],"__proto__":{"x":1}}', field: 'body' },
    { name: 'an empty body', path: '/rerank', body: '', field: 'query' },
    { name: 'missing query', path: '/rerank', body: { texts: ['a'] }, field: 'query' },
    { name: 'empty query', path: '/rerank', body: { query: '', texts: ['a'] }, field: 'query' },
    { name: 'blank query', path: '/v2/rerank', body: { query: ' \n\t', documents: ['a'] }, field: 'query' },
    { name: 'query of the wrong type', path: '/rerank', body: { query: 5, texts: ['a'] }, field: 'query' },
    { name: 'empty texts', path: '/rerank', body: { query: 'q', texts: [] }, field: 'texts' },
    { name: 'texts not an array', path: '/rerank', body: { query: 'q', texts: 'a' }, field: 'texts' },
    { name: 'a non-string text', path: '/rerank', body: { query: 'q', texts: ['a', 'b', null] }, field: 'texts.2' },
    { name: 'empty documents', path: '/v1/rerank', body: { query: 'q', documents: [] }, field: 'documents' },
    { name: 'a non-string document', path: '/v1/rerank', body: { query: 'q', documents: ['a', 'b', 'c', 4] }, field: 'documents.3' },
    { name: 'a document with a non-string text', path: '/v2/rerank', body: { query: 'q', documents: [{ text: 1 }] }, field: 'documents.0.text' },
    { name: 'an image document', path: '/v1/rerank', body: { query: 'q', documents: [{ image: 'https://x/y.png' }] }, field: 'documents.0.text' },
    { name: 'top_n zero', path: '/v1/rerank', body: { query: 'q', documents: ['a'], top_n: 0 }, field: 'top_n' },
    { name: 'top_n fractional', path: '/v1/rerank', body: { query: 'q', documents: ['a'], top_n: 1.5 }, field: 'top_n' },
    { name: 'top_n a string', path: '/v2/rerank', body: { query: 'q', documents: ['a'], top_n: '3' }, field: 'top_n' },
    { name: 'return_documents a string', path: '/v1/rerank', body: { query: 'q', documents: ['a'], return_documents: 'yes' }, field: 'return_documents' },
    { name: 'raw_scores a string', path: '/rerank', body: { query: 'q', texts: ['a'], raw_scores: 'true' }, field: 'raw_scores' },
    { name: 'top_k negative', path: '/rerank/v1', body: { query: 'q', texts: ['a'], top_k: -1 }, field: 'top_k' },
  ];

  for (const { name, path, body, field, status = 400 } of BAD_BODIES) {
    test(`${name} → ${status} naming ${field}, and the core is not called`, async () => {
      const response = await h.post(path, body);
      assert.equal(response.status, status);
      const error = await json<ErrorBody>(response);
      assert.equal(error.error_type, 'validation');
      assert.equal(error.field, field);
      assert.ok(error.error.startsWith(`${field}: `), error.error);
      assert.equal(h.reranker.calls.length, 0);
    });
  }

  test('a form-urlencoded Content-Type is still parsed as JSON (curl -d)', async () => {
    const response = await fetch(`${h.url}/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: JSON.stringify({ query: 'q', texts: ['a'] }),
    });
    assert.equal(response.status, 200);
  });

  test('a body over maxBodyBytes → 413 naming body, read from the live config', async () => {
    h.serving = ServingConfigSchema.parse({ maxBodyBytes: 2048 });
    const big = { query: 'q', texts: ['x'.repeat(4096)] };
    const response = await h.post('/rerank', big);
    assert.equal(response.status, 413);
    const error = await json<ErrorBody>(response);
    assert.equal(error.error_type, 'payload_too_large');
    assert.equal(error.field, 'body');
    h.serving = ServingConfigSchema.parse({ maxBodyBytes: 8192 });
    assert.equal((await h.post('/rerank', big)).status, 200);
  });

  test('more documents than maxDocuments → 413 naming the list, before anything is validated', async () => {
    h.serving = ServingConfigSchema.parse({ maxDocuments: 3 });
    const tei = await h.post('/rerank', { query: 'q', texts: ['a', 'b', 'c', 'd'] });
    assert.equal(tei.status, 413);
    assert.equal((await json<ErrorBody>(tei)).field, 'texts');
    const cohere = await h.post('/v1/rerank', { query: '', documents: [1, 2, 3, 4] });
    assert.equal(cohere.status, 413);
    assert.equal((await json<ErrorBody>(cohere)).field, 'documents');
    assert.equal((await h.post('/rerank', { query: 'q', texts: ['a', 'b', 'c'] })).status, 200);
  });

  test('an unknown route → 404 JSON', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['POST', '/v3/rerank'],
      ['POST', '/rerank/a/b'],
    ] as const) {
      const response = await fetch(`${h.url}${path}`, { method });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.equal((await json<ErrorBody>(response)).error_type, 'not_found');
    }
  });

  test('a known path with the wrong method → 405 JSON with Allow', async () => {
    const getRerank = await h.get('/rerank');
    assert.equal(getRerank.status, 405);
    assert.equal(getRerank.headers.get('allow'), 'POST');
    assert.equal((await json<ErrorBody>(getRerank)).error_type, 'method_not_allowed');
    const postHealth = await h.post('/healthz', {});
    assert.equal(postHealth.status, 405);
    assert.match(postHealth.headers.get('allow') ?? '', /GET/);
    const deleteVersion = await fetch(`${h.url}/rerank/v1`, { method: 'DELETE' });
    assert.equal(deleteVersion.status, 405);
  });
});
