import { upstreamHealthSettings } from '../config/router-schema.ts';
import type { WatchMode } from '../config/watcher.ts';
import { resolveApiKey } from '../http/auth.ts';
import { DEFAULT_TIMEOUTS, listen, type Listening, type ListenOptions } from '../http/listen.ts';
import { ShutdownState } from '../http/shutdown.ts';
import { createRouterApp, routerMirrorer } from './app.ts';
import { HealthChecker } from './health-checker.ts';
import { RouterMetrics } from './metrics.ts';
import { createAgents } from './proxy.ts';
import { RoutingFiles } from './routing-files.ts';
import { tableUpstreams } from './routing-table.ts';
import { trackUpstreamHealth } from './upstream-events.ts';
import { UpstreamHealth } from './upstream-health.ts';

export interface RouterOptions extends Pick<ListenOptions, 'port' | 'host' | 'logger'> {
  /** config.yaml: versions, weights, defaultVersion. Watched and hot-reloaded. */
  configFile: string;
  /** router.yaml: headerName, upstreams. Watched and hot-reloaded. */
  routerFile: string;
  /** Until an upstream's response headers arrive; past it the request is answered 504. */
  upstreamTimeoutMs: number;
  watchMode?: WatchMode;
  pollIntervalMs?: number;
  debounceMs?: number;
  metrics?: RouterMetrics;
  random?: () => number;
  /** Where RERANK_API_KEY (or RERANK_API_KEY_FILE) is read, per request, to guard /config (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** `close()` closes the upstream connections once the requests in flight are answered. */
export interface RunningRouter extends Listening {
  routing: RoutingFiles;
  metrics: RouterMetrics;
  health: UpstreamHealth;
}

/**
 * Load both files, then listen. A missing or invalid file does not stop the start: the router answers
 * /readyz 503 (and rerank requests 503) until a valid one arrives, so a pod started before its ConfigMap
 * was complete recovers by itself.
 */
export async function startRouter(options: RouterOptions): Promise<RunningRouter> {
  const { logger } = options;
  const metrics = options.metrics ?? new RouterMetrics();
  const settings = () => upstreamHealthSettings(routing.routerConfig);
  const health = new UpstreamHealth({ settings, onEvent: trackUpstreamHealth(metrics, logger) });
  metrics.upstreamHealthSource = () => health.status();
  const checker = new HealthChecker({
    health,
    settings: () => settings().healthCheck,
    onCheckFailed: (upstream, kind) => metrics.healthCheckFailures.inc({ upstream, kind }),
  });
  const routing: RoutingFiles = new RoutingFiles({
    configFile: options.configFile,
    routerFile: options.routerFile,
    metrics,
    logger,
    onApplied: (config) => {
      if (config) logger.level = config.serving.logLevel;
      // Every rebuild, router.yaml's health settings included: new upstreams are checked at once.
      const upstreams = routing.table ? tableUpstreams(routing.table) : [];
      health.sync(upstreams);
      checker.sync(upstreams);
    },
    ...(options.watchMode !== undefined ? { mode: options.watchMode } : {}),
    ...(options.pollIntervalMs !== undefined ? { pollIntervalMs: options.pollIntervalMs } : {}),
    ...(options.debounceMs !== undefined ? { debounceMs: options.debounceMs } : {}),
  });
  await routing.start();
  const agents = createAgents();
  const shutdown = new ShutdownState();
  const mirrorer = routerMirrorer({ metrics, logger, health, upstreamTimeoutMs: options.upstreamTimeoutMs }, agents);
  const app = createRouterApp({
    mirrorer,
    routing,
    metrics,
    logger,
    health,
    upstreamTimeoutMs: options.upstreamTimeoutMs,
    agents,
    apiKey: () => resolveApiKey(options.env ?? process.env),
    shutdown,
    ...(options.random ? { random: options.random } : {}),
  });
  const listening = await listen(app, {
    port: options.port,
    host: options.host,
    logger,
    shutdown,
    // config.yaml's serving section, as the pods read it; its defaults until one is loaded.
    timeouts: () => routing.config?.serving ?? DEFAULT_TIMEOUTS,
    connectionErrors: metrics.connectionErrors,
    stop: () => {
      routing.stop();
      checker.stop();
      mirrorer.stop();
    },
    release: () => {
      agents.http.destroy();
      agents.https.destroy();
    },
  });
  logger.info({ url: listening.url, ready: routing.isReady(), configFile: options.configFile, routerFile: options.routerFile }, 'router listening');
  return { ...listening, routing, metrics, health };
}
