import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../server/config/load.ts';
import { silentLogger } from '../../server/logger.ts';
import { serve } from '../../server/serve.ts';
import { tinyModel } from '../support/models.ts';
import { configYaml, fakeUpstream, routerYaml, seededRandom, startRouterHarness } from '../router/harness.ts';
import type { RoutingImplementation, RoutingSetup, RoutingTarget } from './suite.ts';

/** The rerank server: the engine chooses the version in-process and a tiny generated model answers. */
export const inProcessServer: RoutingImplementation = {
  name: 'the server, in-process',
  async start(setup: RoutingSetup): Promise<RoutingTarget> {
    const model = (await tinyModel()).dir;
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-routing-'));
    const configFile = path.join(dir, 'config.yaml');
    const configText = configYaml(setup.versions, setup.defaultVersion, { logLevel: 'warn' }, () => model);
    await writeFile(configFile, configText);
    const running = await serve({
      configFile,
      loaded: parseConfig(configText, { source: configFile, baseDir: dir }),
      configText,
      port: 0,
      host: '127.0.0.1',
      logger: silentLogger(),
      watchMode: 'poll',
      random: seededRandom(setup.seed),
    });
    return {
      url: running.url,
      close: async () => {
        await running.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
};

/**
 * The built-in router in front of one fake upstream per version. An upstream answers only requests the
 * router sent it for its own version (X-Rerank-Version names it), and names that version back, as a
 * version's pods do; a request that reached the wrong one fails.
 */
export const proxyRouter: RoutingImplementation = {
  name: 'the router, proxying',
  async start(setup: RoutingSetup): Promise<RoutingTarget> {
    const upstreams = await Promise.all(
      Object.keys(setup.versions).map(async (name) => {
        const upstream = await fakeUpstream(name);
        upstream.respond = (echo) =>
          echo.version === name ? { status: 200, body: JSON.stringify(echo) } : { status: 500, body: `upstream of ${name} got a request for ${echo.version}` };
        return upstream;
      }),
    );
    const router = await startRouterHarness({
      config: configYaml(setup.versions, setup.defaultVersion, { logLevel: 'warn' }),
      router: routerYaml(Object.fromEntries(upstreams.map((upstream) => [upstream.name, upstream.url]))),
      seed: setup.seed,
    });
    // Ready for traffic: the first health checks passed.
    await router.until(async () => (await router.get('/readyz')).status === 200, 'the router to be ready');
    return {
      url: router.url,
      close: async () => {
        await router.close();
        await Promise.all(upstreams.map((upstream) => upstream.close()));
      },
    };
  },
};
