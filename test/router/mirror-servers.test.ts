import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseExposition } from '../../operator/rollout/exposition.ts';
import { agreementFigures, ROUTER_POD } from '../../operator/rollout/figures.ts';
import { parseConfig } from '../../server/config/load.ts';
import { silentLogger } from '../../server/logger.ts';
import { serve } from '../../server/serve.ts';
import { tinyModel } from '../support/models.ts';
import { configYaml, routerYaml, startRouterHarness, type RouterHarness } from './harness.ts';

/** A version's pods: a real rerank-server serving one version of a generated model. */
async function versionServer(name: string, seed: number): Promise<{ url: string; close(): Promise<void> }> {
  const model = (await tinyModel({ seed })).dir;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-mirror-'));
  const configFile = path.join(dir, 'config.yaml');
  const configText = configYaml({ [name]: { weight: 100 } }, name, { logLevel: 'warn' }, () => model);
  await writeFile(configFile, configText);
  const running = await serve({
    configFile,
    loaded: parseConfig(configText, { source: configFile, baseDir: dir }),
    configText,
    port: 0,
    host: '127.0.0.1',
    logger: silentLogger(),
    watchMode: 'poll',
  });
  return {
    url: running.url,
    close: async () => {
      await running.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const texts = ['a cross-encoder scores pairs', 'vector search recalls', 'bm25 is lexical', 'rerankers reorder', 'the sky is blue', 'tokenizers split words', 'onnx runs graphs', 'kubernetes schedules pods'];

async function agreement(h: RouterHarness, from: string, to: string) {
  const baseline = [{ pod: 'router', version: ROUTER_POD, samples: [] }];
  const now = [{ pod: 'router', version: ROUTER_POD, samples: parseExposition(await (await h.get('/metrics')).text()) }];
  return agreementFigures(baseline, now, from, to);
}

describe('rerank-server router: mirroring between real rerank servers', () => {
  test('the same model agrees fully; a model with other weights ranks differently, and the figures the operator reads say so', async () => {
    const [stable, twin, other] = await Promise.all([versionServer('stable', 42), versionServer('twin', 42), versionServer('other', 7)]);
    const config = configYaml({ stable: { weight: 100 }, twin: {}, other: {} }, 'stable', { logLevel: 'warn' });
    const upstreams = { stable: stable.url, twin: twin.url, other: other.url };
    const h = await startRouterHarness({ config, router: routerYaml(upstreams, undefined, { mirror: { from: 'stable', to: 'twin', fraction: 1, topK: 3 } }) });
    try {
      for (let i = 0; i < 6; i += 1) {
        const rotated = [...texts.slice(i), ...texts.slice(0, i)];
        const tei = await h.post('/rerank', { query: `what reorders results ${i}`, texts: rotated });
        assert.equal(tei.status, 200);
        assert.equal(tei.headers.get('x-rerank-version'), 'stable');
        await tei.arrayBuffer();
        const cohere = await h.post('/v1/rerank', { query: `what reorders results ${i}`, documents: rotated, top_n: 5 });
        assert.equal(cohere.status, 200);
        await cohere.arrayBuffer();
      }
      await h.until(async () => (await agreement(h, 'stable', 'twin')).comparisons === 12, 'twelve comparisons with the twin');
      assert.deepEqual(await agreement(h, 'stable', 'twin'), { comparisons: 12, topKOverlap: 1, kendallTau: 1 });

      await h.write(h.routerFile, routerYaml(upstreams, undefined, { mirror: { from: 'stable', to: 'other', fraction: 1, topK: 3 } }));
      await h.until(async () => ((await (await h.get('/config')).json()) as { routing: { mirror: { to: string } } }).routing.mirror.to === 'other', 'the new mirror');
      for (let i = 0; i < 6; i += 1) {
        const rotated = [...texts.slice(i), ...texts.slice(0, i)];
        await (await h.post('/rerank', { query: `what reorders results ${i}`, texts: rotated })).arrayBuffer();
      }
      await h.until(async () => (await agreement(h, 'stable', 'other')).comparisons === 6, 'six comparisons with the other model');
      const differs = await agreement(h, 'stable', 'other');
      assert.ok(differs.topKOverlap! < 1 && differs.kendallTau! < 0.9, `other weights agree too well: ${JSON.stringify(differs)}`);
      const metrics = await (await h.get('/metrics')).text();
      assert.doesNotMatch(metrics, /reranker_router_mirror_failures_total\{/);
    } finally {
      await h.close();
      await Promise.all([stable.close(), twin.close(), other.close()]);
    }
  });
});
