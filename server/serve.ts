import { createApp } from './http/app.ts';
import { resolveApiKey } from './http/auth.ts';
import { listen, type Listening, type ListenOptions } from './http/listen.ts';
import { ShutdownState } from './http/shutdown.ts';
import { versionEndpoints } from './http/version-request.ts';
import { RerankEngine } from './engine/engine.ts';
import type { LastGoodStore } from './config/last-good.ts';
import type { LoadedConfig } from './config/load.ts';
import { ConfigReloader } from './config/reloader.ts';
import type { StartedOnLastGood } from './config/start-config.ts';
import type { WatchMode } from './config/watcher.ts';
import { NvidiaSmiProbe } from './gpu/probe.ts';
import { ServerMetrics } from './metrics.ts';

export interface ServeOptions extends Pick<ListenOptions, 'port' | 'host' | 'logger'> {
  /** The config file: watched and hot-reloaded. */
  configFile: string;
  loaded: LoadedConfig;
  /** The file's text as loaded (the copy's, when started on the last good copy). */
  configText: string;
  /** Keeps each applied config on disk (`<file>.last-good`), so a restart on a broken file still serves. */
  lastGood?: LastGoodStore;
  /** The file was broken at start and `loaded` is its last good copy. */
  startedOnLastGood?: StartedOnLastGood;
  env?: NodeJS.ProcessEnv;
  /** How the config file is watched (default `auto`: directory events, with polling as the safety net). */
  watchMode?: WatchMode;
  pollIntervalMs?: number;
  /** Uniform in [0, 1) for the weighted version draw; `Math.random` unless a test seeds it. */
  random?: () => number;
}

/** `close()` releases the models once the requests in flight are answered. */
export interface RunningServer extends Listening {
  engine: RerankEngine;
  reloader: ConfigReloader;
}

/** Load the models, then listen. Resolves once the port is bound and the enabled versions are loaded. */
export async function serve(options: ServeOptions): Promise<RunningServer> {
  const { logger } = options;
  const metrics = new ServerMetrics();
  // The monitor reads the GPU only while some version is configured `cuda`, so a reload can add one.
  const engine = await RerankEngine.create({
    loaded: options.loaded,
    metrics,
    logger,
    gpuProbe: new NvidiaSmiProbe(),
    ...(options.random ? { random: options.random } : {}),
  });
  for (const notice of syntheticNotices(engine)) logger.warn(notice);
  const reloader = new ConfigReloader({
    file: options.configFile,
    initial: options.loaded,
    initialText: options.configText,
    metrics,
    logger,
    mode: options.watchMode ?? 'auto',
    ...(options.pollIntervalMs !== undefined ? { pollIntervalMs: options.pollIntervalMs } : {}),
    ...(options.lastGood ? { lastGood: options.lastGood } : {}),
    ...(options.startedOnLastGood ? { startedOnLastGood: options.startedOnLastGood } : {}),
    target: {
      apply: (loaded) => {
        logger.level = loaded.config.serving.logLevel;
        return engine.apply(loaded);
      },
      retry: async () => {
        const report = await engine.retryFailed();
        logger.info({ configHash: report.configHash, versions: report.versions.filter((v) => v.action !== 'unchanged') }, 'failed versions retried');
      },
    },
  });
  reloader.start();
  const env = options.env ?? process.env;
  const shutdown = new ShutdownState();
  const app = createApp({
    reranker: engine,
    metrics,
    logger,
    serving: () => engine.config.serving,
    apiKey: () => resolveApiKey(env),
    info: () => ({ notices: [...reloader.notices(), ...syntheticNotices(engine)], pid: process.pid, liveSessions: engine.liveSessions(), tokenizers: engine.tokenizers() }),
    configStatus: () => reloader.status(),
    endpoints: () => versionEndpoints(engine.config),
    shutdown,
  });
  const listening = await listen(app, {
    port: options.port,
    host: options.host,
    logger,
    shutdown,
    timeouts: () => engine.config.serving,
    connectionErrors: metrics.connectionErrors,
    stop: () => reloader.stop(),
    release: () => engine.close(),
  });
  logger.info({ url: listening.url, configHash: options.loaded.hash, source: options.loaded.source }, 'listening');
  return { ...listening, engine, reloader };
}

export const SYNTHETIC_NOTICE =
  'serving a generated stand-in model with RANDOM weights: scores are not meaningful. ' +
  'Point the config at a directory holding model.onnx and tokenizer.json of a real ONNX export ' +
  '(e.g. `optimum-cli export onnx --model BAAI/bge-reranker-v2-m3 --task text-classification DIR`).';

/** A generated stand-in model must never pass for a real reranker: say so loudly, in the log and in /info. */
function syntheticNotices(engine: RerankEngine): string[] {
  return engine
    .info()
    .versions.filter((version) => version.synthetic && version.enabled)
    .map((version) => `version "${version.name}": ${SYNTHETIC_NOTICE}`);
}
