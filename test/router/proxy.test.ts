import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { configYaml, deadUrl, fakeUpstream, routerYaml, startRouterHarness, type Echo, type FakeUpstream, type RouterHarness } from './harness.ts';

const rerankBody = { query: 'what is a reranker?', texts: ['a cross-encoder', 'a vector index'] };

async function echoOf(response: Response): Promise<Echo> {
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as Echo;
}

describe('rerank-server router: proxying', () => {
  let stable: FakeUpstream;
  let canary: FakeUpstream;
  let h: RouterHarness;

  before(async () => {
    [stable, canary] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    h = await startRouterHarness({
      config: configYaml({ stable: { weight: 80 }, canary: { weight: 20 }, old: { weight: 0 }, off: { enabled: false, weight: 50 }, custom: { endpoint: '/custom/rerank' } }, 'stable', {
        // 2000 access-log lines would cost a third of this suite's time.
        logLevel: 'warn',
      }),
      // No ejections: a busy machine can time out a few of these 2000 requests, and this suite is about proxying (health: health.test.ts).
      router: routerYaml({ stable: stable.url, canary: canary.url, old: stable.url, off: canary.url, custom: canary.url }, undefined, { outlierDetection: { maxEjectionPercent: 0 } }),
      upstreamTimeoutMs: 300,
    });
  });
  after(async () => {
    await h.close();
    await Promise.all([stable.close(), canary.close()]);
  });
  afterEach(() => {
    for (const upstream of [stable, canary]) {
      upstream.requests.length = 0;
      upstream.respond = undefined;
      upstream.delayMs = 0;
    }
  });

  test('a path version goes to its upstream, asked by name; the pod\'s X-Rerank-Version comes back', async () => {
    const response = await h.post('/rerank/canary', rerankBody);
    const echo = await echoOf(response);
    assert.deepEqual([echo.upstream, echo.version, echo.path], ['B', 'canary', '/rerank/canary']);
    assert.equal(response.headers.get('x-rerank-version'), 'canary');
  });

  test('a disabled path version is answered by the default, asked by the default\'s name; an unknown one is a 404 that reaches no upstream', async () => {
    const echo = await echoOf(await h.post('/rerank/off', rerankBody));
    assert.deepEqual([echo.upstream, echo.version, echo.path], ['A', 'stable', '/rerank/stable']);
    const sent = stable.requests.length + canary.requests.length;
    const unknown = await h.post('/rerank/nope', rerankBody);
    assert.equal(unknown.status, 404);
    assert.match(((await unknown.json()) as { error: string }).error, /^no version "nope": the configured versions are /);
    assert.equal(stable.requests.length + canary.requests.length, sent);
  });

  test('the version header pins a version on every rerank API; query strings pass through', async () => {
    for (const path of ['/rerank', '/v1/rerank', '/v2/rerank?x=1']) {
      const echo = await echoOf(await h.post(path, rerankBody, { 'X-Rerank-Version': 'old' }));
      assert.deepEqual([echo.upstream, echo.version, echo.path], ['A', 'old', path], path);
    }
    const echo = await echoOf(await h.post('/rerank', rerankBody, { 'X-Rerank-Version': 'off' }));
    assert.equal(echo.version, 'stable', 'a disabled version named by header falls back to the default');
  });

  test('a Cohere/Jina body\'s `model` naming a version picks it when no header does, as in the server', async () => {
    const body = { model: 'canary', query: 'q', documents: ['d'] };
    assert.equal((await echoOf(await h.post('/v1/rerank', body))).version, 'canary');
    assert.equal((await echoOf(await h.post('/v2/rerank', body, { 'X-Rerank-Version': 'old' }))).version, 'old', 'the header wins');
    const library = { model: 'rerank-english-v3.0', query: 'q', documents: ['d'] };
    const versions = new Set<string | undefined>();
    for (let i = 0; i < 40; i += 1) versions.add((await echoOf(await h.post('/v1/rerank', library))).version);
    assert.deepEqual([...versions].sort(), ['canary', 'stable'], 'a model id that is no version is weighted as usual');
  });

  test('a version\'s own endpoint path is proxied as /rerank/{version}', async () => {
    const echo = await echoOf(await h.post('/custom/rerank', rerankBody));
    assert.deepEqual([echo.upstream, echo.version, echo.path], ['B', 'custom', '/rerank/custom']);
  });

  test('unpinned traffic splits by config.yaml\'s weights: 80/20 within 3 points over 2000 requests', async () => {
    const counts: Record<string, number> = {};
    const total = 2000;
    for (const answer of await h.postMany('/rerank', rerankBody, total)) {
      const { version = '?' } = JSON.parse(answer) as Echo;
      counts[version] = (counts[version] ?? 0) + 1;
    }
    assert.deepEqual(Object.keys(counts).sort(), ['canary', 'stable'], 'weight 0 and disabled versions get nothing');
    const share = (counts.canary ?? 0) / total;
    assert.ok(Math.abs(share - 0.2) <= 0.03, `canary share ${share}`);
  });

  test('a sticky key keeps its requests on one version', async () => {
    for (const key of ['user-1', 'user-2', 'user-3', 'user-4']) {
      const seen = new Set<string | undefined>();
      for (let i = 0; i < 8; i += 1) seen.add((await echoOf(await h.post('/rerank', rerankBody, { 'X-Rerank-Sticky-Key': key }))).version);
      assert.equal(seen.size, 1, `key ${key} saw ${[...seen].join(', ')}`);
    }
  });

  test('body, content type and authorization reach the upstream unchanged', async () => {
    const raw = '{"query":"ünïcode ✓","texts":["a","b"],"raw_scores":true}';
    const echo = await echoOf(await h.post('/rerank', raw, { authorization: 'Bearer s3cret', 'X-Rerank-Version': 'stable' }));
    assert.equal(echo.body, raw);
    assert.equal(echo.contentType, 'application/json');
    assert.equal(echo.authorization, 'Bearer s3cret');
    assert.equal(echo.method, 'POST');
    assert.match(echo.forwardedFor ?? '', /127\.0\.0\.1/);
  });

  test('X-Request-Id: a given one reaches the upstream and comes back; an absent one is made and sent', async () => {
    const given = await h.post('/rerank', rerankBody, { 'X-Request-Id': 'trace-123' });
    assert.equal((await echoOf(given)).requestId, 'trace-123');
    assert.equal(given.headers.get('x-request-id'), 'trace-123');
    const made = await h.post('/rerank', rerankBody);
    const id = made.headers.get('x-request-id');
    assert.match(id ?? '', /^[0-9a-f-]{36}$/);
    assert.equal((await echoOf(made)).requestId, id);
  });

  test('upstream statuses, headers and bodies pass back: 429 with Retry-After, 400, 500', async () => {
    stable.respond = () => ({ status: 429, headers: { 'retry-after': '7' }, body: '{"error":"queue full","error_type":"overloaded"}' });
    const busy = await h.post('/rerank/stable', rerankBody);
    assert.equal(busy.status, 429);
    assert.equal(busy.headers.get('retry-after'), '7');
    assert.equal(busy.headers.get('x-rerank-version'), 'stable');
    assert.deepEqual(await busy.json(), { error: 'queue full', error_type: 'overloaded' });
    for (const status of [400, 500]) {
      stable.respond = () => ({ status, body: `{"status":${status}}` });
      const response = await h.post('/rerank/stable', rerankBody);
      assert.equal(response.status, status);
      assert.deepEqual(await response.json(), { status });
    }
  });

  test('a slow upstream is answered 504 after the timeout, and the router serves on', async () => {
    canary.delayMs = 1500;
    const started = performance.now();
    const response = await h.post('/v1/rerank', rerankBody, { 'X-Rerank-Version': 'canary' });
    const elapsed = performance.now() - started;
    assert.equal(response.status, 504);
    const body = (await response.json()) as Record<string, string>;
    assert.equal(body.error_type, 'upstream_timeout');
    assert.equal(body.detail, body.error, 'Jina clients read `detail` on /v1');
    assert.ok(elapsed >= 280 && elapsed < 1200, `answered after ${elapsed} ms`);
    canary.delayMs = 0;
    assert.equal((await echoOf(await h.post('/rerank/canary', rerankBody))).upstream, 'B');
  });

  test('request size: a body over config.yaml\'s maxBodyBytes is refused 413 without reaching an upstream', async () => {
    const response = await h.post('/rerank', { query: 'q', texts: ['x'.repeat(9 * 1024 * 1024)] });
    assert.equal(response.status, 413);
    assert.equal(stable.requests.length + canary.requests.length, 0);
  });

  test('operations: /healthz, /readyz, /config; GET on a rerank path is 405, an unknown path 404', async () => {
    assert.deepEqual(await (await h.get('/healthz')).json(), { status: 'ok' });
    const ready = await h.get('/readyz');
    assert.equal(ready.status, 200);
    const config = (await (await h.get('/config')).json()) as {
      ready: boolean;
      routing: { defaultVersion: string; versions: Array<{ name: string; upstream: string | null }> };
      files: { config: { hash: string }; router: { hash: string } };
    };
    assert.equal(config.ready, true);
    assert.equal(config.routing.defaultVersion, 'stable');
    assert.equal(config.routing.versions.find((v) => v.name === 'canary')?.upstream, canary.url);
    assert.match(config.files.config.hash, /^[0-9a-f]{16}$/);
    assert.match(config.files.router.hash, /^[0-9a-f]{16}$/);
    const wrongMethod = await h.get('/rerank');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
    assert.equal((await h.get('/nothing')).status, 404);
  });

  test('metrics: request durations by route pattern and status, routed requests by version and status', async () => {
    await echoOf(await h.post('/rerank/canary', rerankBody));
    const text = await (await h.get('/metrics')).text();
    assert.match(text, /http_request_duration_seconds_bucket\{le="0\.001",method="POST",route="\/rerank\/:version",status="200"\}/);
    assert.match(text, /reranker_router_requests_total\{version="canary",status="200"\} \d+/);
    assert.match(text, /reranker_router_requests_total\{version="stable",status="429"\} 1/);
    assert.match(text, /reranker_router_upstream_errors_total\{version="canary",kind="timeout"\} 1/);
    assert.match(text, /reranker_router_config_info\{file="router",hash="[0-9a-f]{16}"\} 1/);
  });
});

describe('rerank-server router: upstream failures', () => {
  // Without active checks, which would take these upstreams out before the request (test/router/health.test.ts).
  const unchecked = { healthCheck: { enabled: false } };

  test('an upstream that refuses connections is answered 502 and counted; others keep serving', async () => {
    const alive = await fakeUpstream('A');
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 100 }, gone: {} }, 'stable'),
      router: routerYaml({ stable: alive.url, gone: await deadUrl() }, undefined, unchecked),
    });
    try {
      const response = await h.post('/rerank/gone', rerankBody);
      assert.equal(response.status, 502);
      const body = (await response.json()) as Record<string, string>;
      assert.equal(body.error_type, 'upstream_unavailable');
      assert.match(body.error ?? '', /gone.*refused/);
      assert.equal(response.headers.get('content-type'), 'application/json; charset=utf-8');
      assert.equal((await echoOf(await h.post('/rerank', rerankBody))).upstream, 'A');
      const text = await (await h.get('/metrics')).text();
      assert.match(text, /reranker_router_upstream_errors_total\{version="gone",kind="refused"\} 1/);
      assert.match(text, /reranker_router_requests_total\{version="gone",status="502"\} 1/);
    } finally {
      await h.close();
      await alive.close();
    }
  });

  test('an upstream that drops the connection before answering is a 502', async () => {
    const rude = http.createServer((req) => req.socket.destroy());
    rude.listen(0, '127.0.0.1');
    await once(rude, 'listening');
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 100 } }, 'stable'),
      router: routerYaml({ stable: `http://127.0.0.1:${(rude.address() as AddressInfo).port}` }, undefined, unchecked),
    });
    try {
      const response = await h.post('/rerank', rerankBody);
      assert.equal(response.status, 502);
      assert.match(await (await h.get('/metrics')).text(), /reranker_router_upstream_errors_total\{version="stable",kind="reset"\} 1/);
    } finally {
      await h.close();
      rude.close();
    }
  });

  test('a reused keep-alive connection the upstream already closed is retried on a fresh one, unseen by the caller', async () => {
    const upstream = await closesAfterFirstRequest();
    const h = await startRouterHarness({ config: configYaml({ stable: { weight: 100 } }, 'stable'), router: routerYaml({ stable: upstream.url }) });
    try {
      for (let i = 0; i < 4; i += 1) assert.equal((await h.post('/rerank', rerankBody)).status, 200, `request ${i}`);
      assert.ok(upstream.dropped() >= 3, `the upstream dropped ${upstream.dropped()} reused connections`);
      assert.doesNotMatch(await (await h.get('/metrics')).text(), /reranker_router_upstream_errors_total\{/);
    } finally {
      await h.close();
      upstream.server.close();
    }
  });
});

/**
 * An upstream that answers the first request on each connection with keep-alive, then drops the
 * connection when a second one arrives on it: what a pod does when its idle timeout fires just as the
 * router reuses the connection.
 */
async function closesAfterFirstRequest() {
  let dropped = 0;
  const server = net.createServer((socket) => {
    let buffered = Buffer.alloc(0);
    let served = 0;
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: *(\d+)/i.exec(buffered.subarray(0, end).toString())?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.subarray(end + 4 + length);
        served += 1;
        if (served > 1) {
          dropped += 1;
          socket.destroy();
          return;
        }
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n{}');
      }
    });
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, dropped: () => dropped };
}

test('with RERANK_API_KEY set, the router guards /config as the server does; rerank requests pass the key on to the pods', async () => {
  const upstream = await fakeUpstream('A');
  const h = await startRouterHarness({
    config: configYaml({ stable: {} }, 'stable', { logLevel: 'warn' }),
    router: routerYaml({ stable: upstream.url }),
    env: { RERANK_API_KEY: 'k' },
  });
  try {
    assert.equal((await h.get('/config')).status, 401);
    assert.equal((await fetch(`${h.url}/config`, { headers: { Authorization: 'Bearer k' } })).status, 200);
    for (const route of ['/healthz', '/readyz', '/metrics']) assert.equal((await h.get(route)).status, 200, route);
    const answer = await h.post('/rerank', { query: 'q', texts: ['a'] }, { Authorization: 'Bearer pod-checks-this' });
    assert.equal(answer.status, 200);
    assert.equal(upstream.requests.at(-1)?.authorization, 'Bearer pod-checks-this');
  } finally {
    await h.close();
    await upstream.close();
  }
});
