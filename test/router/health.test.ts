import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { configYaml, deadUrl, fakeUpstream, routerYaml, startRouterHarness, type FakeUpstream, type RouterHarness } from './harness.ts';

const rerankBody = { query: 'what is a reranker?', texts: ['a cross-encoder', 'a vector index'] };

interface ReadyBody {
  status: string;
  reason?: string;
  upstreams: Array<{ upstream: string; versions: string[]; healthy: boolean; available: boolean; active: string; checkFailure?: string; ejectedUntil?: string; ejectionReason?: string }>;
}

async function readiness(h: RouterHarness): Promise<{ status: number; body: ReadyBody }> {
  const response = await h.get('/readyz');
  return { status: response.status, body: (await response.json()) as ReadyBody };
}

/** Requests each upstream received (health checks are not recorded there). */
const sent = (...upstreams: FakeUpstream[]) => upstreams.reduce((sum, upstream) => sum + upstream.requests.length, 0);

describe('rerank-server router: upstream health over loopback', () => {
  test('an upstream that hangs is ejected after the failures in a row: unpinned traffic moves to the one that answers, pinned traffic is refused at once', async () => {
    const [hung, good] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    // Its /readyz still answers: only real requests can tell that it hangs.
    hung.delayMs = 5000;
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 50 }, canary: { weight: 50 } }, 'stable', { logLevel: 'warn' }),
      router: routerYaml({ stable: hung.url, canary: good.url }, undefined, {
        healthCheck: { intervalMs: 50, timeoutMs: 200 },
        outlierDetection: { consecutiveFailures: 3, baseEjectionTimeMs: 60_000, maxEjectionPercent: 50 },
      }),
      upstreamTimeoutMs: 500,
    });
    try {
      await h.until(async () => (await readiness(h)).status === 200, 'the first checks');
      const statuses: number[] = [];
      while (hung.requests.length < 3) {
        const response = await h.post('/rerank', rerankBody);
        await response.arrayBuffer();
        statuses.push(response.status);
        assert.ok(statuses.length < 60, `the hung upstream got only ${hung.requests.length} requests in ${statuses.length}`);
      }
      assert.ok(statuses.every((status) => status === 200 || status === 504), `statuses ${statuses.join()}`);
      assert.ok(statuses.filter((status) => status === 504).length >= 3, 'A timed out three times');

      const afterEjection = await h.postMany('/rerank', rerankBody, 30, 5);
      assert.deepEqual([...new Set(afterEjection.map((body) => (JSON.parse(body) as { upstream: string; version: string }).version))], ['canary']);
      assert.equal(hung.requests.length, 3, 'nothing more reached the ejected upstream');

      const pinned = await h.post('/rerank/stable', rerankBody);
      assert.equal(pinned.status, 503);
      const error = (await pinned.json()) as { error: string; error_type: string };
      assert.match(error.error, new RegExp(`^version stable: upstream ${hung.url} is ejected for (59|60) s more after failures in a row \\(last: no answer within 500 ms\\); the request was not sent$`));
      assert.ok(Number(pinned.headers.get('retry-after')) >= 59, `Retry-After ${pinned.headers.get('retry-after')}`);
      assert.equal(hung.requests.length, 3, 'the pinned request was not sent');

      const ready = await readiness(h);
      assert.equal(ready.status, 200, 'B is healthy');
      const a = ready.body.upstreams.find((u) => u.upstream === hung.url);
      assert.deepEqual([a?.versions, a?.active, a?.available, a?.ejectionReason], [['stable'], 'healthy', false, 'no answer within 500 ms']);
      const metrics = await (await h.get('/metrics')).text();
      assert.match(metrics, new RegExp(`reranker_router_upstream_ejections_total\\{upstream="${hung.url}"\\} 1`));
      assert.match(metrics, new RegExp(`reranker_router_upstream_healthy\\{upstream="${hung.url}"\\} 0`));
      assert.match(metrics, new RegExp(`reranker_router_upstream_healthy\\{upstream="${good.url}"\\} 1`));
      assert.ok(h.logs.some((line) => line.level === 40 && String(line.msg).startsWith(`upstream ${hung.url} ejected for 60 s after 3 failures in a row`)));
    } finally {
      await h.close();
      await Promise.all([hung.close(), good.close()]);
    }
  });

  test('every upstream failing its checks: /readyz 503 naming each one and why, requests refused at once; ready again when one recovers', async () => {
    const [stable, canary] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    const gone = await deadUrl();
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 80 }, canary: { weight: 20 }, old: {} }, 'stable', { logLevel: 'warn' }),
      router: routerYaml({ stable: stable.url, canary: canary.url, old: gone }, undefined, {
        healthCheck: { intervalMs: 30, timeoutMs: 100, unhealthyThreshold: 2, healthyThreshold: 2 },
      }),
    });
    try {
      await h.until(async () => (await readiness(h)).status === 200, 'the first checks');
      stable.ready = false;
      canary.ready = 'hang';
      await h.until(async () => (await readiness(h)).status === 503, 'readiness to fail', 5000);
      const { body } = await readiness(h);
      assert.equal(body.status, 'not_ready');
      const why = Object.fromEntries(body.upstreams.map((u) => [u.versions.join(), u.checkFailure]));
      assert.deepEqual(why, {
        stable: 'GET /readyz answered 503: {"status":"not_ready"}',
        canary: 'GET /readyz: no answer within 100 ms',
        old: 'GET /readyz: connection refused (ECONNREFUSED)',
      });
      assert.ok(body.reason?.startsWith('no upstream is healthy: '), body.reason);
      assert.ok(body.reason?.includes(`${stable.url} (stable): failing its health checks (GET /readyz answered 503`), body.reason);

      for (const [path, headers, message] of [
        ['/rerank', {}, /^no weighted version has an upstream taking requests; version (stable|canary): upstream .* is failing its health checks/],
        ['/rerank', { 'X-Rerank-Version': 'canary' }, /^version canary: upstream .* is failing its health checks \(GET \/readyz: no answer within 100 ms\); the request was not sent$/],
        ['/rerank/old', {}, /^version old: upstream .* is failing its health checks \(GET \/readyz: connection refused/],
      ] as const) {
        const response = await h.post(path, rerankBody, headers);
        assert.equal(response.status, 503, path);
        assert.match(((await response.json()) as { error: string }).error, message);
      }
      assert.equal(sent(stable, canary), 0, 'no request reached an upstream');
      const metrics = await (await h.get('/metrics')).text();
      assert.match(metrics, new RegExp(`reranker_router_health_check_failures_total\\{upstream="${stable.url}",kind="status"\\} [2-9]`));
      assert.match(metrics, new RegExp(`reranker_router_health_check_failures_total\\{upstream="${canary.url}",kind="timeout"\\} [2-9]`));
      assert.match(metrics, new RegExp(`reranker_router_health_check_failures_total\\{upstream="${gone}",kind="refused"\\} \\d+`));
      assert.match(metrics, /reranker_router_requests_total\{version="canary",status="503"\} [12]/);

      // Recovery: two passes in a row bring the canary back, and all unpinned traffic goes there until the stable one is back too.
      canary.ready = true;
      await h.until(async () => (await readiness(h)).status === 200, 'readiness to recover', 5000);
      const answers = await h.postMany('/rerank', rerankBody, 20, 5);
      assert.deepEqual([...new Set(answers.map((text) => (JSON.parse(text) as { version: string }).version))], ['canary']);
      stable.ready = true;
      await h.until(async () => (await readiness(h)).body.upstreams.find((u) => u.upstream === stable.url)?.healthy === true, 'the stable upstream', 5000);
      const split = await h.postMany('/rerank', rerankBody, 40, 5);
      assert.deepEqual([...new Set(split.map((text) => (JSON.parse(text) as { version: string }).version))].sort(), ['canary', 'stable']);
      assert.ok(h.logs.some((line) => line.level === 40 && String(line.msg).startsWith(`upstream ${stable.url} failing its health checks: GET /readyz answered 503`)));
    } finally {
      await h.close();
      await Promise.all([stable.close(), canary.close()]);
    }
  });
});
