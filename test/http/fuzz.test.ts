import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { CohereRerankResponseSchema, TeiRerankResponseSchema } from '../../server/http/apis/schemas.ts';
import { startServer, type Harness } from './harness.ts';

/**
 * Whatever arrives, every rerank route answers 200 with a well-formed body or a 4xx JSON error that says
 * what is wrong: never a 5xx, never a hang.
 */

const anything = fc.jsonValue({ maxDepth: 3 });
const text = fc.oneof(
  { weight: 6, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 1000, maxLength: 3000 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\u0000', '\ud800', '👩‍👩‍👧', '{"a":', '</script>') },
);
/** Mostly the valid shape, sometimes a wrong type or null: bodies near the valid ones. */
const mostly = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 40, arbitrary: valid }, { weight: 1, arbitrary: anything }, { weight: 1, arbitrary: fc.constant(null) });
const count = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 25 }) },
  { weight: 1, arbitrary: fc.integer({ min: -3, max: 0 }) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constant(Number.MAX_SAFE_INTEGER) },
);
const list = <T>(item: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 6, arbitrary: fc.array(item, { maxLength: 24 }) }, { weight: 1, arbitrary: fc.array(mostly(item), { maxLength: 24 }) });

const teiBody = fc.record(
  {
    query: mostly(text),
    texts: mostly(list(text)),
    truncate: mostly(fc.boolean()),
    truncation_direction: mostly(fc.oneof({ weight: 6, arbitrary: fc.constantFrom('Right', 'right') }, { weight: 1, arbitrary: fc.constantFrom('Left', 'left', 'RIGHT') })),
    raw_scores: mostly(fc.boolean()),
    return_text: mostly(fc.boolean()),
    top_k: mostly(count),
    extra: anything,
  },
  { requiredKeys: ['query', 'texts'] },
);

const cohereDocument = fc.oneof(
  { weight: 20, arbitrary: text },
  { weight: 10, arbitrary: fc.record({ text: mostly(text), title: mostly(text) }, { requiredKeys: ['text'] }) },
  { weight: 1, arbitrary: fc.oneof(anything, fc.record({ image: text })) },
);
const cohereBody = fc.record(
  {
    model: mostly(fc.constantFrom('v1', 'v2', 'rerank-v3.5', 'jina-reranker-v2-base-multilingual', 'constructor', '__proto__')),
    query: mostly(fc.oneof({ weight: 5, arbitrary: text }, { weight: 1, arbitrary: fc.record({ text }) })),
    documents: mostly(list(cohereDocument)),
    top_n: mostly(count),
    return_documents: mostly(fc.boolean()),
    rank_fields: mostly(
      fc.oneof({ weight: 6, arbitrary: fc.constantFrom(['text'], ['title', 'text']) }, { weight: 1, arbitrary: fc.constantFrom([], [''], ['__proto__']) }),
    ),
    max_chunks_per_doc: mostly(count),
    max_tokens_per_doc: mostly(count),
  },
  { requiredKeys: ['query', 'documents'] },
);

const teiRoute = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('/rerank', '/rerank/v2') },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20 }).map((version) => `/rerank/${encodeURIComponent(version)}`) },
);
const cohereRoute = fc.constantFrom('/v1/rerank', '/v2/rerank');
const anyRoute = fc.oneof(teiRoute, cohereRoute);

/** Route and what goes on the wire: JSON near the route's shape, any JSON, or arbitrary text. */
const request = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(teiRoute, teiBody.map((b) => JSON.stringify(b))) },
  { weight: 4, arbitrary: fc.tuple(cohereRoute, cohereBody.map((b) => JSON.stringify(b))) },
  { weight: 1, arbitrary: fc.tuple(anyRoute, anything.map((v) => JSON.stringify(v))) },
  { weight: 1, arbitrary: fc.tuple(anyRoute, fc.string({ maxLength: 200 })) },
  { weight: 1, arbitrary: fc.tuple(anyRoute, teiBody.chain((b) => fc.nat().map((cut) => JSON.stringify(b).slice(0, cut % 200)))) },
);

const versionHeader = fc.option(fc.stringMatching(/^[\x21-\x7e]{1,20}$/), { nil: undefined });

let h: Harness;
before(async () => {
  h = await startServer({ serving: { maxBodyBytes: 16 * 1024, maxDocuments: 8 } });
});
after(() => h.close());

test('fuzz: ≥ 1000 generated bodies on every rerank route, never a 5xx or a hang', async (t) => {
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(request, versionHeader, async ([path, body], version) => {
      const response = await fetch(`${h.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(version ? { 'X-Rerank-Version': version } : {}) },
        body,
        signal: AbortSignal.timeout(5000),
      });
      const raw = await response.text();
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      assert.ok(response.status < 500, `${response.status} for ${path}: ${raw.slice(0, 300)}`);
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
      const parsed: unknown = JSON.parse(raw);
      if (response.status === 200) {
        const schema = path.startsWith('/rerank') ? TeiRerankResponseSchema : CohereRerankResponseSchema;
        const shaped = schema.safeParse(parsed);
        assert.ok(shaped.success, `malformed 200 for ${path} ${body.slice(0, 300)}: ${raw.slice(0, 300)}: ${shaped.error?.message}`);
        const scores = Array.isArray(shaped.data)
          ? shaped.data.map((r) => r.score)
          : shaped.data.results.map((r) => r.relevance_score);
        for (let i = 1; i < scores.length; i++) assert.ok((scores[i - 1] ?? 0) >= (scores[i] ?? 0), 'best first');
      } else {
        assert.ok(response.status >= 400, `status ${response.status}`);
        const error = parsed as { error?: unknown; error_type?: unknown };
        assert.equal(typeof error.error, 'string');
        assert.ok((error.error as string).length > 0);
        assert.equal(typeof error.error_type, 'string');
      }
    }),
    { numRuns: 1200 },
  );
  t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  assert.ok((statuses.get(200) ?? 0) > 50, `enough valid bodies got through: ${JSON.stringify([...statuses])}`);
  assert.ok((statuses.get(400) ?? 0) > 50, `enough invalid bodies were refused: ${JSON.stringify([...statuses])}`);
  assert.equal(h.logs.filter((line) => line.msg === 'request failed').length, 0);
  assert.equal((await h.get('/healthz')).status, 200);
});
