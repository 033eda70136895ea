import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import { CohereRerankResponseSchema, type CohereRerankResponse } from '../../server/http/apis/schemas.ts';
import { FakeReranker } from '../support/fake-reranker.ts';
import { json, startServer, type Harness } from './harness.ts';

const DOCUMENTS = [
  'Carson City is the capital city of the American state of Nevada.',
  'Washington, D.C. is the capital of the United States.',
  'Capital punishment has existed in the United States since before it was a country.',
  'Paris.',
];

async function rerank(h: Harness, path: string, body: unknown, headers?: Record<string, string>) {
  const response = await h.post(path, body, headers);
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return { response, body: CohereRerankResponseSchema.parse(JSON.parse(text)) };
}

const indices = (body: CohereRerankResponse) => body.results.map((result) => result.index);

describe('Cohere and Jina APIs: POST /v1/rerank, POST /v2/rerank', () => {
  let h: Harness;
  before(async () => {
    h = await startServer({ reranker: new FakeReranker({ versions: ['stable', 'canary'] }) });
  });
  after(() => h.close());
  beforeEach(() => {
    h.serving = ServingConfigSchema.parse({});
    h.reranker.calls.length = 0;
  });

  test('Cohere v1 SDK body: id, results by relevance, meta; documents echoed by default on /v1', async () => {
    const { body, response } = await rerank(h, '/v1/rerank', {
      model: 'rerank-english-v3.0',
      query: 'What is the capital of the United States?',
      documents: DOCUMENTS,
      top_n: 3,
    });
    assert.equal(body.id, response.headers.get('x-request-id'));
    assert.equal(body.model, 'stable');
    assert.deepEqual(indices(body), [2, 0, 1]);
    for (const result of body.results) {
      assert.equal(result.document?.text, DOCUMENTS[result.index]);
      assert.ok(result.relevance_score > 0 && result.relevance_score < 1);
    }
    assert.deepEqual(body.meta, { api_version: { version: '1' }, billed_units: { search_units: 1 } });
    assert.equal(body.usage.total_tokens, DOCUMENTS.reduce((sum, d) => sum + d.length + 41, 0));
    assert.equal(h.reranker.calls[0]?.headerVersion, undefined, 'a foreign model id is ignored');
    assert.equal(h.reranker.calls[0]?.truncate, true);
  });

  test('Cohere v1 with return_documents false: index and relevance_score only', async () => {
    const { body } = await rerank(h, '/v1/rerank', { query: 'q', documents: DOCUMENTS, return_documents: false });
    assert.equal(body.results.length, 4);
    for (const result of body.results) assert.deepEqual(Object.keys(result).sort(), ['index', 'relevance_score']);
  });

  test('Cohere v2 SDK body: meta version 2, no documents unless asked', async () => {
    const plain = await rerank(h, '/v2/rerank', {
      model: 'rerank-v3.5',
      query: 'What is the capital of the United States?',
      documents: DOCUMENTS,
      top_n: 2,
      max_tokens_per_doc: 512,
    });
    assert.deepEqual(indices(plain.body), [2, 0]);
    assert.equal(plain.body.meta.api_version.version, '2');
    assert.equal(plain.body.results[0]?.document, undefined);

    const withDocuments = await rerank(h, '/v2/rerank', { model: 'rerank-v3.5', query: 'q', documents: DOCUMENTS, return_documents: true });
    assert.equal(withDocuments.body.results[0]?.document?.text, DOCUMENTS[2]);
  });

  test('LangChain JinaRerank body (top_n null): all results, index and relevance_score readable', async () => {
    const { body } = await rerank(h, '/v1/rerank', {
      query: 'q',
      documents: DOCUMENTS,
      model: 'jina-reranker-v1-base-en',
      top_n: null,
    });
    assert.deepEqual(indices(body), [2, 0, 1, 3]);
    for (const result of body.results) assert.equal(typeof result.relevance_score, 'number');
  });

  test('LlamaIndex JinaRerank body: top_n cuts; the configured topK applies when absent', async () => {
    const { body } = await rerank(h, '/v1/rerank', { query: 'q', documents: DOCUMENTS, model: 'jina-reranker-v1-base-en', top_n: 2 });
    assert.deepEqual(indices(body), [2, 0]);
    h.serving = ServingConfigSchema.parse({ topK: 1 });
    const configured = await rerank(h, '/v1/rerank', { query: 'q', documents: DOCUMENTS });
    assert.deepEqual(indices(configured.body), [2]);
  });

  test('the configured threshold drops low relevance scores', async () => {
    h.serving = ServingConfigSchema.parse({ threshold: 0.99 });
    const { body } = await rerank(h, '/v1/rerank', { query: 'q', documents: DOCUMENTS, top_n: 3 });
    assert.deepEqual(indices(body), [2]);
    for (const result of body.results) assert.ok(result.relevance_score >= 0.99);
  });

  test('{text} documents (Jina TextDoc, Cohere objects) and a {text} query are ranked on their text', async () => {
    const { body } = await rerank(h, '/v1/rerank', {
      query: { text: 'capital' },
      documents: [{ text: 'short' }, 'a longer plain string', { text: 'the longest text document of all', id: 7 }],
    });
    assert.deepEqual(indices(body), [2, 1, 0]);
    assert.equal(body.results[0]?.document?.text, 'the longest text document of all');
    assert.equal(h.reranker.calls[0]?.query, 'capital');
    assert.deepEqual(h.reranker.calls[0]?.documents, ['short', 'a longer plain string', 'the longest text document of all']);
  });

  test('rank_fields ranks object documents on the named fields, one `field: value` line each', async () => {
    await rerank(h, '/v1/rerank', {
      query: 'q',
      documents: [{ title: 'T', text: 'body', author: 'x' }],
      rank_fields: ['title', 'text'],
    });
    assert.deepEqual(h.reranker.calls[0]?.documents, ['title: T\ntext: body']);
    const missing = await h.post('/v1/rerank', { query: 'q', documents: [{ text: 'a' }, { title: 'T' }], rank_fields: ['title'] });
    assert.equal(missing.status, 400);
    assert.equal((await json<{ field: string }>(missing)).field, 'documents.0.title');
  });

  test('a `model` naming a configured version picks it; the header wins over it; the path is not involved', async () => {
    const byModel = await rerank(h, '/v1/rerank', { model: 'canary', query: 'q', documents: ['a'] });
    assert.equal(byModel.body.model, 'canary');
    assert.equal(byModel.response.headers.get('x-rerank-version'), 'canary');
    assert.equal(h.reranker.calls[0]?.headerVersion, 'canary');

    const byHeader = await rerank(h, '/v2/rerank', { model: 'canary', query: 'q', documents: ['a'] }, { 'X-Rerank-Version': 'stable' });
    assert.equal(byHeader.body.model, 'stable');
    assert.equal(h.reranker.calls[1]?.headerVersion, 'stable');
  });

  test('unknown top-level fields are ignored; max_chunks_per_doc and priority are accepted', async () => {
    const { body } = await rerank(h, '/v1/rerank', {
      query: 'q',
      documents: ['a', 'bb'],
      max_chunks_per_doc: 10,
      priority: 1,
      some_future_field: { nested: true },
    });
    assert.equal(body.results.length, 2);
  });

  test('errors on /v1 and /v2 also carry `detail`, which Jina clients read', async () => {
    const response = await h.post('/v1/rerank', { query: '', documents: ['a'] });
    assert.equal(response.status, 400);
    const body = await json<{ error: string; detail: string; field: string }>(response);
    assert.equal(body.field, 'query');
    assert.equal(body.detail, body.error);
  });
});
