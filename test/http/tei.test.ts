import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import { TeiRerankResponseSchema } from '../../server/http/apis/schemas.ts';
import { FakeReranker } from '../support/fake-reranker.ts';
import { json, startServer, type Harness } from './harness.ts';

type Rank = { index: number; score: number; text?: string };

const sigmoid = (logit: number) => 1 / (1 + Math.exp(-logit));

describe('TEI API: POST /rerank', () => {
  let h: Harness;
  before(async () => {
    h = await startServer({ reranker: new FakeReranker({ versions: ['stable', 'canary'] }) });
  });
  after(() => h.close());
  beforeEach(() => {
    h.serving = ServingConfigSchema.parse({});
    h.reranker.calls.length = 0;
  });

  test('the documented request: [{index, score}] best first, scores in [0, 1], no text', async () => {
    const texts = ['Deep Learning is not...', 'Deep learning is...', 'DL'];
    const response = await h.post('/rerank', { query: 'What is Deep Learning?', texts });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    const ranks = TeiRerankResponseSchema.parse(await json(response));
    assert.deepEqual(
      ranks.map((rank) => rank.index),
      [0, 1, 2],
    );
    for (const rank of ranks) {
      assert.equal(rank.text, undefined);
      assert.equal(rank.score, sigmoid(h.reranker.logitOf(texts[rank.index] ?? '')));
      assert.ok(rank.score >= 0 && rank.score <= 1);
    }
    const call = h.reranker.calls[0];
    assert.equal(call?.query, 'What is Deep Learning?');
    assert.deepEqual(call?.documents, texts);
    assert.equal(call?.truncate, true, 'truncate defaults to true');
  });

  test('answers with the version and TEI timing headers in whole milliseconds', async () => {
    const response = await h.post('/rerank', { query: 'q', texts: ['a'] });
    assert.equal(response.headers.get('x-rerank-version'), 'stable');
    assert.equal(response.headers.get('x-tokenization-time'), '2');
    assert.equal(response.headers.get('x-queue-time'), '3');
    assert.equal(response.headers.get('x-inference-time'), '10');
    assert.match(response.headers.get('x-total-time') ?? '', /^\d+$/);
  });

  test('return_text echoes each text at its index', async () => {
    const texts = ['short', 'a much longer passage about deep learning', 'mid-length text'];
    const ranks = await json<Rank[]>(await h.post('/rerank', { query: 'q', texts, return_text: true }));
    assert.equal(ranks.length, 3);
    for (const rank of ranks) assert.equal(rank.text, texts[rank.index]);
  });

  test('raw_scores returns logits, same order', async () => {
    const texts = ['x', 'a long passage that scores above zero'];
    const ranks = await json<Rank[]>(await h.post('/rerank', { query: 'q', texts, raw_scores: true }));
    assert.deepEqual(
      ranks.map((rank) => [rank.index, rank.score]),
      [
        [1, h.reranker.logitOf(texts[1] ?? '')],
        [0, h.reranker.logitOf(texts[0] ?? '')],
      ],
    );
    assert.ok((ranks[1]?.score ?? 0) < 0, 'a raw logit can be negative');
  });

  test('the LlamaIndex TEI client body (raw_score typo, return_text false) is answered with sigmoid scores', async () => {
    const response = await h.post('/rerank', {
      query: 'q',
      texts: ['aa', 'bbbb'],
      truncate: true,
      raw_score: false,
      return_text: false,
    });
    const ranks = await json<Rank[]>(response);
    assert.equal(response.status, 200);
    assert.deepEqual(
      ranks.map((rank) => rank.index),
      [1, 0],
    );
  });

  test('truncate false reaches the core; Right truncation is accepted, Left is refused naming the field', async () => {
    await h.post('/rerank', { query: 'q', texts: ['a'], truncate: false, truncation_direction: 'Right' });
    assert.equal(h.reranker.calls[0]?.truncate, false);
    const left = await h.post('/rerank', { query: 'q', texts: ['a'], truncation_direction: 'Left' });
    assert.equal(left.status, 400);
    const body = await json<{ field: string; error: string }>(left);
    assert.equal(body.field, 'truncation_direction');
    assert.match(body.error, /Right/);
  });

  test('docs stands for texts (clients of the BGE reranker image): POST /rerank/{version} {query, docs} is answered in the TEI shape', async () => {
    const docs = ['a', 'a longer passage'];
    const response = await h.post('/rerank/canary', { query: 'q', docs });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-rerank-version'), 'canary');
    const ranks = TeiRerankResponseSchema.parse(await json(response));
    assert.deepEqual(ranks.map((rank) => rank.index).sort(), [0, 1]);
    assert.deepEqual(h.reranker.calls[0]?.documents, docs);
    const both = await h.post('/rerank', { query: 'q', docs, texts: docs });
    assert.equal(both.status, 400);
    const body = await json<{ field: string; error: string }>(both);
    assert.equal(body.field, 'docs');
    assert.match(body.error, /texts or as docs, not both/);
  });

  test('null for optional fields means unset (Python clients send it)', async () => {
    const response = await h.post('/rerank', {
      query: 'q',
      texts: ['a', 'bb'],
      truncate: null,
      truncation_direction: null,
      raw_scores: null,
      return_text: null,
      top_k: null,
    });
    assert.equal(response.status, 200);
    assert.equal((await json<Rank[]>(response)).length, 2);
    assert.equal(h.reranker.calls[0]?.truncate, true);
  });

  test('top_k (extension) cuts the list and wins over the configured topK', async () => {
    const texts = ['a', 'bbb', 'bb', 'bbbb'];
    h.serving = ServingConfigSchema.parse({ topK: 3 });
    const configured = await json<Rank[]>(await h.post('/rerank', { query: 'q', texts }));
    assert.deepEqual(
      configured.map((rank) => rank.index),
      [3, 1, 2],
    );
    const requested = await json<Rank[]>(await h.post('/rerank', { query: 'q', texts, top_k: 1 }));
    assert.deepEqual(
      requested.map((rank) => rank.index),
      [3],
    );
  });

  test('the configured threshold drops low normalized scores, also with raw_scores', async () => {
    const texts = ['a', 'a passage long enough to pass', 'b'];
    h.serving = ServingConfigSchema.parse({ threshold: 0.5 });
    const ranks = await json<Rank[]>(await h.post('/rerank', { query: 'q', texts, raw_scores: true }));
    assert.deepEqual(
      ranks.map((rank) => rank.index),
      [1],
    );
  });

  test('config changes apply to the next request', async () => {
    const texts = ['a', 'bb', 'ccc'];
    assert.equal((await json<Rank[]>(await h.post('/rerank', { query: 'q', texts }))).length, 3);
    h.serving = { ...h.serving, topK: 1 };
    assert.equal((await json<Rank[]>(await h.post('/rerank', { query: 'q', texts }))).length, 1);
  });

  test('/rerank/{version} passes the path version; the header passes a header version', async () => {
    const pinned = await h.post('/rerank/canary', { query: 'q', texts: ['a'] });
    assert.equal(pinned.status, 200);
    assert.equal(pinned.headers.get('x-rerank-version'), 'canary');
    assert.equal(h.reranker.calls[0]?.pathVersion, 'canary');
    assert.equal(h.reranker.calls[0]?.headerVersion, undefined);

    const header = await h.post('/rerank', { query: 'q', texts: ['a'] }, { 'X-Rerank-Version': 'canary' });
    assert.equal(header.headers.get('x-rerank-version'), 'canary');
    assert.equal(h.reranker.calls[1]?.pathVersion, undefined);
    assert.equal(h.reranker.calls[1]?.headerVersion, 'canary');

    const both = await h.post('/rerank/stable', { query: 'q', texts: ['a'] }, { 'X-Rerank-Version': 'canary' });
    assert.equal(both.headers.get('x-rerank-version'), 'stable', 'the path wins');
  });

  test('an unknown path version is answered by the default, and the header says so', async () => {
    const response = await h.post('/rerank/nonexistent', { query: 'q', texts: ['a'] });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-rerank-version'), 'stable');
    assert.equal(h.reranker.calls[0]?.pathVersion, 'nonexistent');
  });
});
