import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { RerankConfigSchema, ServingConfigSchema } from '../../server/config/schema.ts';
import { json, startServer, type Harness } from './harness.ts';

type ErrorBody = { error: string; error_type: string; field?: string };

/** A body for each API: TEI, Cohere v1 / Jina (string and {text} query), Cohere v2. */
const ROUTES = [
  { path: '/rerank', body: (query: unknown, documents: string[]) => ({ query, texts: documents }), queryField: 'query' },
  { path: '/v1/rerank', body: (query: unknown, documents: string[]) => ({ query, documents }), queryField: 'query' },
  { path: '/v1/rerank', body: (query: unknown, documents: string[]) => ({ query: { text: query }, documents }), queryField: 'query.text' },
  { path: '/v2/rerank', body: (query: unknown, documents: string[]) => ({ query, documents }), queryField: 'query' },
];

describe('texts that show nothing, and texts over maxDocumentBytes', () => {
  let h: Harness;
  before(async () => {
    h = await startServer();
  });
  after(() => h.close());
  beforeEach(() => {
    h.serving = ServingConfigSchema.parse({});
    h.reranker.calls.length = 0;
  });

  const BLANK_QUERIES = {
    'zero-width space, joiners, BOM and word joiner': '\u200b\u200c\u200d\ufeff\u2060',
    'no-break and ideographic spaces': '\u00a0\u3000 \u2007\u202f',
    'line and paragraph separators, tabs and newlines': '\u2028\u2029\t\r\n',
    'controls and a Hangul filler': '\u0000\u0001\u3164',
    'soft hyphen and bidi marks': '\u00ad\u200e\u200f\u202a',
  };
  for (const [name, query] of Object.entries(BLANK_QUERIES)) {
    test(`a query of only ${name} → 400 naming query, in every API`, async () => {
      for (const route of ROUTES) {
        const response = await h.post(route.path, route.body(query, ['a document']));
        assert.equal(response.status, 400, route.path);
        const error = await json<ErrorBody>(response);
        assert.equal(error.error_type, 'validation');
        assert.equal(error.field, route.queryField, `${route.path}: ${error.error}`);
        assert.ok(error.error.startsWith(`${route.queryField}: must not be empty`), error.error);
      }
      assert.equal(h.reranker.calls.length, 0);
    });
  }

  test('a query with one visible character among invisible ones is a query', async () => {
    for (const route of ROUTES) {
      const response = await h.post(route.path, route.body('\u200b\u00a0é\u200b', ['a document']));
      assert.equal(response.status, 200, route.path);
    }
  });

  test('with truncate: false, a document over maxDocumentBytes → 413 naming it, and the core is not called', async () => {
    h.serving = ServingConfigSchema.parse({ maxDocumentBytes: 4096 });
    const documents = ['short', 'a'.repeat(4096), 'b', 'é'.repeat(2049)];
    const response = await h.post('/rerank', { query: 'q', texts: documents, truncate: false });
    assert.equal(response.status, 413);
    const error = await json<ErrorBody>(response);
    assert.deepEqual({ type: error.error_type, field: error.field }, { type: 'payload_too_large', field: 'texts.3' });
    assert.match(error.error, /^texts\.3: 4098 bytes, over the limit of 4096 \(serving\.maxDocumentBytes\)/u);
    const query = await h.post('/rerank', { query: 'q '.repeat(3000), texts: ['a'], truncate: false });
    assert.equal(query.status, 413);
    assert.equal((await json<ErrorBody>(query)).field, 'query');
    assert.equal(h.reranker.calls.length, 0);
  });

  test('otherwise a text over maxDocumentBytes is cut to it at a word end, and the client gets its own text back', async () => {
    h.serving = ServingConfigSchema.parse({ maxDocumentBytes: 4096 });
    const long = 'ünïcode words '.repeat(1000);
    for (const route of ROUTES) {
      h.reranker.calls.length = 0;
      const extra = route.path === '/rerank' ? { return_text: true } : { return_documents: true };
      const response = await h.post(route.path, { ...route.body(long, ['short', long]), ...extra });
      assert.equal(response.status, 200, route.path);
      const [call] = h.reranker.calls;
      assert.ok(call);
      assert.equal(call.documents[0], 'short');
      for (const text of [call.query, call.documents[1] as string]) {
        assert.ok(Buffer.byteLength(text) <= 4096 && Buffer.byteLength(text) > 4000, `${route.path}: ${Buffer.byteLength(text)} bytes`);
        assert.ok(long.startsWith(text) && text.endsWith('words'), route.path);
      }
      const body = await json<unknown>(response);
      const echoed = JSON.stringify(body);
      assert.ok(echoed.includes(JSON.stringify(long)), `${route.path}: the document comes back whole`);
    }
  });

  test('maxDocumentBytes and its snake_case alias are read from the config', () => {
    assert.equal(ServingConfigSchema.parse({}).maxDocumentBytes, 256 * 1024);
    assert.throws(() => ServingConfigSchema.parse({ maxDocumentBytes: 10 }));
    const config = RerankConfigSchema.parse({ default_version: 'v1', versions: { v1: {} }, global_config: { max_document_bytes: 65536 } });
    assert.equal(config.serving.maxDocumentBytes, 65536);
  });
});
