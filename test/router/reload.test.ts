import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RoutingStatus } from '../../server/router/routing-files.ts';
import { configYaml, fakeUpstream, routerYaml, startRouterHarness, type Echo, type RouterHarness } from './harness.ts';

const rerankBody = { query: 'q', texts: ['a', 'b'] };

async function versionsOf(h: RouterHarness, count: number): Promise<Set<string>> {
  const answers = await h.postMany('/rerank', rerankBody, count, 20);
  return new Set(answers.map((answer) => `${(JSON.parse(answer) as Echo).upstream}:${(JSON.parse(answer) as Echo).version}`));
}

async function status(h: RouterHarness): Promise<RoutingStatus> {
  return (await (await h.get('/config')).json()) as RoutingStatus;
}

describe('rerank-server router: hot reload of config.yaml and router.yaml', () => {
  test('new weights and new upstreams take effect without a restart; an invalid edit of either keeps the last good one', async () => {
    const [a, b, c] = await Promise.all([fakeUpstream('A'), fakeUpstream('B'), fakeUpstream('C')]);
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 100 }, canary: { weight: 0 } }, 'stable'),
      router: routerYaml({ stable: a.url, canary: b.url }),
    });
    try {
      assert.deepEqual(await versionsOf(h, 40), new Set(['A:stable']));

      // Weights: all unpinned traffic moves to the canary.
      await h.write(h.configFile, configYaml({ stable: { weight: 0 }, canary: { weight: 100 } }, 'stable'));
      await h.until(async () => (await status(h)).routing?.versions.find((v) => v.name === 'canary')?.weight === 100, 'the new weights');
      assert.deepEqual(await versionsOf(h, 40), new Set(['B:canary']));

      // Upstreams: the canary's Service moves to C.
      await h.write(h.routerFile, routerYaml({ stable: a.url, canary: c.url }));
      await h.until(async () => (await status(h)).routing?.versions.find((v) => v.name === 'canary')?.upstream === c.url, 'the new upstream');
      assert.deepEqual(await versionsOf(h, 40), new Set(['C:canary']));

      // Invalid edits: rejected, logged, counted, and the table in force stays.
      const before = await status(h);
      await h.write(h.configFile, 'defaultVersion: [unclosed\n');
      await h.write(h.routerFile, routerYaml({ stable: 'ftp://nope' }));
      await h.until(async () => {
        const now = await status(h);
        return now.files.config.lastError !== undefined && now.files.router.lastError !== undefined;
      }, 'both rejections');
      const after = await status(h);
      assert.deepEqual(after.routing, before.routing);
      assert.equal(after.files.config.hash, before.files.config.hash);
      assert.equal(after.files.router.hash, before.files.router.hash);
      assert.match(after.files.router.lastError?.issues.join() ?? '', /router\.upstreams\.stable/);
      assert.deepEqual(await versionsOf(h, 20), new Set(['C:canary']));
      assert.equal((await h.get('/readyz')).status, 200);
      const metrics = await (await h.get('/metrics')).text();
      assert.match(metrics, /reranker_router_config_reloads_total\{file="config",result="error"\} 1/);
      assert.match(metrics, /reranker_router_config_reloads_total\{file="router",result="error"\} 1/);
      assert.ok(h.logs.some((line) => line.level === 50 && String(line.msg).startsWith('router rejected, keeping')));

      // A later valid edit applies and clears the error.
      await h.write(h.configFile, configYaml({ stable: { weight: 100 }, canary: { weight: 0 } }, 'stable'));
      await h.until(async () => (await status(h)).files.config.lastError === undefined, 'the fixed config.yaml');
      assert.deepEqual(await versionsOf(h, 20), new Set(['A:stable']));
    } finally {
      await h.close();
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });

  test('a version that loses its upstream gets no weighted traffic; pinned to it, the default answers', async () => {
    const [a, b] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 50 }, canary: { weight: 50 } }, 'stable'),
      router: routerYaml({ stable: a.url, canary: b.url }),
    });
    try {
      assert.deepEqual(await versionsOf(h, 60), new Set(['A:stable', 'B:canary']));
      await h.write(h.routerFile, routerYaml({ stable: a.url }));
      await h.until(async () => (await status(h)).routing?.versions.find((v) => v.name === 'canary')?.upstream === null, 'canary without upstream');
      assert.deepEqual(await versionsOf(h, 40), new Set(['A:stable']));
      const pinned = (await (await h.post('/rerank', rerankBody, { 'X-Rerank-Version': 'canary' })).json()) as Echo;
      assert.equal(pinned.version, 'stable');
    } finally {
      await h.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('the header name comes from router.yaml', async () => {
    const [a, b] = await Promise.all([fakeUpstream('A'), fakeUpstream('B')]);
    const h = await startRouterHarness({
      config: configYaml({ stable: { weight: 100 }, canary: {} }, 'stable'),
      router: routerYaml({ stable: a.url, canary: b.url }, 'X-Canary'),
    });
    try {
      const viaOwn = (await (await h.post('/rerank', rerankBody, { 'X-Canary': 'canary' })).json()) as Echo;
      assert.deepEqual([viaOwn.upstream, viaOwn.version], ['B', 'canary'], 'the configured header pins; upstreams still get X-Rerank-Version');
      const viaDefault = (await (await h.post('/rerank', rerankBody, { 'X-Rerank-Version': 'canary' })).json()) as Echo;
      assert.equal(viaDefault.version, 'stable', 'X-Rerank-Version from a client is not the pinning header here');
    } finally {
      await h.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  test('started without router.yaml: not ready, rerank answered 503; ready once the file appears', async () => {
    const a = await fakeUpstream('A');
    const h = await startRouterHarness({ config: configYaml({ stable: { weight: 100 } }, 'stable') });
    try {
      assert.equal((await h.get('/healthz')).status, 200);
      assert.equal((await h.get('/readyz')).status, 503);
      const refused = await h.post('/rerank', rerankBody);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.deepEqual((await status(h)).files.router.lastError?.issues, ['(file): ENOENT']);

      await h.write(h.routerFile, routerYaml({ stable: a.url }));
      await h.until(async () => (await h.get('/readyz')).status === 200, 'readiness');
      assert.equal(((await (await h.post('/rerank', rerankBody)).json()) as Echo).upstream, 'A');
      const errors = /reranker_router_config_reloads_total\{file="router",result="error"\} (\d+)/.exec(await (await h.get('/metrics')).text());
      assert.equal(errors?.[1], '1', 'a missing file is reported once, not at every poll');
    } finally {
      await h.close();
      await a.close();
    }
  });
});
