import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { configYaml, fakeUpstream, routerYaml, startRouterHarness, type RouterHarness } from './harness.ts';

/**
 * X-Request-Timeout-Ms through the router over loopback: checked as the pods check it, passed on less the
 * router's own time, and a pod's 504 keeping that deadline is not an upstream failure.
 */

const rerankBody = JSON.stringify({ query: 'what is a reranker?', texts: ['a cross-encoder', 'a vector index'] });

/** A POST whose body is sent `bodyDelayMs` after its headers (a slow client: the router's clock runs meanwhile). */
function slowPost(url: string, headers: Record<string, string>, bodyDelayMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(rerankBody)), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.flushHeaders();
    setTimeout(() => req.end(rerankBody), bodyDelayMs);
  });
}

async function ejections(h: RouterHarness, upstream: string): Promise<number> {
  const text = await (await h.get('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`reranker_router_upstream_ejections_total{upstream="${upstream}"}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('rerank-server router: X-Request-Timeout-Ms', () => {
  test('a bad value is a 400 naming the header and nothing is sent; a good one is passed on less the time spent in the router; one that passes there is a 504 unsent', async () => {
    const upstream = await fakeUpstream('A');
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 100 } }, 'stable', { logLevel: 'warn' }),
      router: routerYaml({ stable: upstream.url }, undefined, { healthCheck: { enabled: false } }),
    });
    try {
      for (const bad of ['abc', '0', '-5', '1.5', '86400001']) {
        const response = await h.post('/rerank', rerankBody, { 'X-Request-Timeout-Ms': bad });
        assert.equal(response.status, 400, `X-Request-Timeout-Ms: ${bad}`);
        const error = (await response.json()) as { error: string; field?: string };
        assert.equal(error.field, 'X-Request-Timeout-Ms');
        assert.match(error.error, /^X-Request-Timeout-Ms: must be a whole number of milliseconds from 1 to 86400000/);
      }
      assert.equal(upstream.requests.length, 0, 'no bad deadline reached the pod');

      const plain = await h.post('/rerank', rerankBody);
      assert.equal(plain.status, 200);
      assert.equal(upstream.requests.at(-1)?.timeoutMs, undefined, 'no deadline, none passed on');

      // The body comes 300 ms after the headers: the pod is given what is left, not the whole 5 s.
      const slow = await slowPost(h.url, { 'X-Request-Timeout-Ms': '5000' }, 300);
      assert.equal(slow.status, 200);
      const passed = Number(upstream.requests.at(-1)?.timeoutMs);
      assert.ok(Number.isInteger(passed) && passed <= 4750 && passed > 3000, `passed on ${upstream.requests.at(-1)?.timeoutMs}`);

      const sent = upstream.requests.length;
      const late = await slowPost(h.url, { 'X-Request-Timeout-Ms': '100' }, 300);
      assert.equal(late.status, 504);
      assert.match((JSON.parse(late.body) as { error: string }).error, /^deadline exceeded: the X-Request-Timeout-Ms deadline passed in the router before the request was sent to version stable$/);
      assert.equal(upstream.requests.length, sent, 'the late request was not sent');
    } finally {
      await h.close();
      await upstream.close();
    }
  });

  test("a pod's 504 to a request with a deadline does not eject it; 504s without one still do", async () => {
    const [keeping, other] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    // A pod answering as rerank-server does when the client's deadline passes in its queue.
    keeping.respond = () => ({ status: 504, body: JSON.stringify({ error: 'deadline exceeded: 2 of 2 documents of the request were not scored in time', error_type: 'deadline' }) });
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 50 }, canary: { weight: 50 } }, 'stable', { logLevel: 'warn' }),
      router: routerYaml({ stable: keeping.url, canary: other.url }, undefined, {
        healthCheck: { enabled: false },
        outlierDetection: { consecutiveFailures: 3, baseEjectionTimeMs: 60_000, maxEjectionPercent: 50 },
      }),
    });
    try {
      for (let i = 0; i < 6; i += 1) {
        const response = await h.post('/rerank/stable', rerankBody, { 'X-Request-Timeout-Ms': '2000' });
        assert.equal(response.status, 504, 'the pod’s answer is passed on');
        assert.equal(((await response.json()) as { error_type: string }).error_type, 'deadline');
      }
      assert.equal(keeping.requests.length, 6, 'every one reached the pod: never ejected');
      assert.equal(await ejections(h, keeping.url), 0);

      // The same answers without a deadline are the pod failing: ejected after 3 in a row.
      for (let i = 0; i < 3; i += 1) await (await h.post('/rerank/stable', rerankBody)).arrayBuffer();
      await sleep(10);
      assert.equal(await ejections(h, keeping.url), 1);
      const refused = await h.post('/rerank/stable', rerankBody, { 'X-Request-Timeout-Ms': '2000' });
      assert.equal(refused.status, 503, 'ejected: refused without being sent');
      await refused.arrayBuffer();
      assert.equal(keeping.requests.length, 9);
    } finally {
      await h.close();
      await Promise.all([keeping.close(), other.close()]);
    }
  });
});
