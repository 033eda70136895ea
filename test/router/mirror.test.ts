import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseExposition, type Sample } from '../../operator/rollout/exposition.ts';
import { configYaml, fakeUpstream, routerYaml, startRouterHarness, type FakeUpstream, type RouterHarness } from './harness.ts';

const body = { query: 'what is a reranker?', texts: ['a', 'b', 'c', 'd', 'e'] };

/** A TEI answer ranking the documents in this order (best first). */
const teiAnswer = (order: number[]) => JSON.stringify(order.map((index, rank) => ({ index, score: 1 - rank / 10 })));
/** A Cohere/Jina answer ranking the documents in this order. */
const cohereAnswer = (order: number[], version: string) =>
  JSON.stringify({ id: 'x', model: version, results: order.map((index, rank) => ({ index, relevance_score: 1 - rank / 10 })), meta: { api_version: { version: '2' } } });

function ranking(upstream: FakeUpstream, order: number[]): void {
  upstream.respond = (echo) => ({ status: 200, body: echo.path.startsWith('/v') ? cohereAnswer(order, echo.version ?? '') : teiAnswer(order) });
}

async function samples(h: RouterHarness): Promise<Sample[]> {
  return parseExposition(await (await h.get('/metrics')).text());
}

const value = (all: Sample[], name: string, labels: Record<string, string> = {}) =>
  all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

const pair = { from: 'stable', to: 'canary' };

async function start(stable: FakeUpstream, canary: FakeUpstream, mirror: Record<string, unknown>, upstreamTimeoutMs = 2000): Promise<RouterHarness> {
  return startRouterHarness({
    config: configYaml({ stable: { weight: 100 }, canary: { weight: 0 } }, 'stable', { logLevel: 'warn' }),
    router: routerYaml({ stable: stable.url, canary: canary.url }, undefined, { healthCheck: { enabled: false }, mirror }),
    upstreamTimeoutMs,
  });
}

describe('rerank-server router: mirroring for ranking agreement over loopback', () => {
  test("the client gets stable's answer unchanged; the canary gets a marked, pinned copy; the rankings are compared per pair", async () => {
    const [stable, canary] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    ranking(stable, [0, 1, 2, 3, 4]);
    // Top 3 {0,1,2} against {0,2,4}: 2 of 3; tau over all five: 7 concordant, 3 discordant of 10 pairs.
    ranking(canary, [0, 2, 4, 1, 3]);
    const h = await start(stable, canary, { ...pair, fraction: 1, topK: 3 });
    try {
      for (let i = 0; i < 4; i += 1) {
        const response = await h.post('/rerank', body, { authorization: 'Bearer k' });
        assert.equal(response.status, 200);
        assert.equal(response.headers.get('x-rerank-version'), 'stable');
        assert.equal(await response.text(), teiAnswer([0, 1, 2, 3, 4]));
      }
      const v2 = await h.post('/v2/rerank', { query: 'q', documents: body.texts });
      assert.equal(await v2.text(), cohereAnswer([0, 1, 2, 3, 4], 'stable'));
      // Pinned requests are the client's choice of version: never mirrored. A client's own X-Rerank-Mirror is not passed
      // on (stable's pods would count the request apart from client traffic).
      await (await h.post('/rerank/stable', body, { 'x-rerank-mirror': '1' })).arrayBuffer();
      await (await h.post('/rerank', body, { 'x-rerank-version': 'stable' })).arrayBuffer();

      await h.until(async () => value(await samples(h), 'reranker_router_agreement_comparisons_total', pair) === 5, 'five comparisons');
      assert.equal(canary.requests.length, 5);
      for (const copy of canary.requests) {
        assert.equal(copy.mirror, '1');
        assert.equal(copy.version, 'canary');
      }
      assert.deepEqual(canary.requests.map((r) => r.path), ['/rerank', '/rerank', '/rerank', '/rerank', '/v2/rerank']);
      assert.equal(canary.requests[0]!.authorization, 'Bearer k', 'the copy carries the client\'s credentials');
      assert.equal(canary.requests[0]!.body, JSON.stringify(body));
      assert.ok(stable.requests.every((r) => r.mirror === undefined));
      assert.equal(canary.requests[0]!.requestId, stable.requests[0]!.requestId, 'the copy has the request id of the original');

      const all = await samples(h);
      assert.equal(value(all, 'reranker_router_mirrored_requests_total', pair), 5);
      assert.equal(value(all, 'reranker_router_agreement_topk_overlap_count', pair), 5);
      assert.ok(Math.abs(value(all, 'reranker_router_agreement_topk_overlap_sum', pair) - (5 * 2) / 3) < 1e-9);
      assert.equal(value(all, 'reranker_router_agreement_kendall_tau_count', pair), 5);
      assert.ok(Math.abs(value(all, 'reranker_router_agreement_kendall_tau_sum', pair) - 5 * 0.4) < 1e-9);
      assert.equal(value(all, 'reranker_router_mirror_failures_total'), 0);
      // Mirrored copies are not the router's requests: the client's seven only.
      assert.equal(value(all, 'reranker_router_requests_total'), 7);
      const config = (await (await h.get('/config')).json()) as { routing: { mirror: Record<string, unknown> } };
      assert.deepEqual(config.routing.mirror, { ...pair, fraction: 1, topK: 3, maxInFlight: 16 });
    } finally {
      await h.close();
      await Promise.all([stable.close(), canary.close()]);
    }
  });

  test('a canary that hangs or fails costs the client nothing: answers come at once, the copies are bounded and counted as failures', async () => {
    const [stable, canary] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    ranking(stable, [0, 1, 2, 3, 4]);
    canary.delayMs = 1500;
    const h = await start(stable, canary, { ...pair, fraction: 1, maxInFlight: 2 }, 800);
    try {
      for (let i = 0; i < 5; i += 1) {
        const response = await h.post('/rerank', body);
        assert.equal(response.status, 200);
        assert.equal(await response.text(), teiAnswer([0, 1, 2, 3, 4]));
      }
      // Every client has its answer while both copies are still waiting on the canary (1.5 s; timeout 800 ms).
      await h.until(() => canary.requests.length === 2, 'the copies reach the canary');
      const during = await samples(h);
      assert.equal(value(during, 'reranker_router_mirrored_requests_total', pair), 2);
      assert.equal(value(during, 'reranker_router_mirror_failures_total', { ...pair, reason: 'timeout' }), 0, 'no copy finished before the clients were answered');
      await h.until(async () => value(await samples(h), 'reranker_router_mirror_failures_total', { ...pair, reason: 'timeout' }) === 2, 'the two copies time out');
      let all = await samples(h);
      assert.equal(value(all, 'reranker_router_mirror_failures_total', { ...pair, reason: 'saturated' }), 3, 'two under way at most; the other three skipped');
      assert.equal(value(all, 'reranker_router_mirrored_requests_total', pair), 2);
      assert.equal(value(all, 'reranker_router_agreement_comparisons_total', pair), 0);
      assert.equal(value(all, 'reranker_router_upstream_errors_total'), 0, "a copy's failure is not the router's upstream error");
      assert.equal(h.logs.filter((line) => String(line.msg).startsWith('mirror stable → canary failed (timeout)')).length, 1, 'logged once per reason');

      canary.delayMs = 0;
      canary.respond = () => ({ status: 500, body: '{"error":"boom","error_type":"backend"}' });
      await (await h.post('/rerank', body)).arrayBuffer();
      await h.until(async () => value(await samples(h), 'reranker_router_mirror_failures_total', pair) === 6, 'the 500 counted');
      canary.respond = () => ({ status: 200, body: '{"error":"not a ranking"}' });
      await (await h.post('/rerank', body)).arrayBuffer();
      await h.until(async () => value(await samples(h), 'reranker_router_mirror_failures_total', pair) === 7, 'the answer that is no ranking counted');
      assert.equal(value(await samples(h), 'reranker_router_mirrored_requests_total', pair), 4);
      all = await samples(h);
      assert.equal(value(all, 'reranker_router_mirror_failures_total', { ...pair, reason: 'status' }), 1);
      assert.equal(value(all, 'reranker_router_mirror_failures_total', { ...pair, reason: 'unparsable' }), 1);
    } finally {
      await h.close();
      await Promise.all([stable.close(), canary.close()]);
    }
  });

  test('a mirror naming a version without an upstream mirrors nothing: /config says why, each would-be copy is counted unavailable', async () => {
    const [stable, canary] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    ranking(stable, [0, 1, 2, 3, 4]);
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 100 }, canary: { weight: 0 } }, 'stable', { logLevel: 'warn' }),
      router: routerYaml({ stable: stable.url }, undefined, { healthCheck: { enabled: false }, mirror: { ...pair, fraction: 1 } }),
    });
    try {
      assert.equal((await h.post('/rerank', body)).status, 200);
      const config = (await (await h.get('/config')).json()) as { routing: { mirror: { problem?: string } } };
      assert.equal(config.routing.mirror.problem, 'mirror names version canary, which has no upstream in router.yaml');
      assert.equal(value(await samples(h), 'reranker_router_mirror_failures_total', { ...pair, reason: 'unavailable' }), 1);
      assert.equal(canary.requests.length, 0);
      // A mirror from a version to itself is refused with the field named.
      await h.write(h.routerFile, routerYaml({ stable: stable.url, canary: canary.url }, undefined, { mirror: { from: 'stable', to: 'stable', fraction: 1 } }));
      await h.until(async () => value(await samples(h), 'reranker_router_config_reloads_total', { file: 'router', result: 'error' }) === 1, 'the bad router.yaml refused');
      const status = (await (await h.get('/config')).json()) as { files: { router: { error?: string } } };
      assert.match(JSON.stringify(status.files.router), /router\.mirror\.to: mirror\.from and mirror\.to must differ/);
    } finally {
      await h.close();
      await Promise.all([stable.close(), canary.close()]);
    }
  });
});
