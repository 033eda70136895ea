import { createHash } from 'node:crypto';
import path from 'node:path';
import { load as parseYaml } from 'js-yaml';
import { RouterConfigSchema, type RouterConfig } from '../config/router-schema.ts';
import { ConfigError, configFileParser, formatIssues } from '../config/load.ts';
import type { RerankConfig } from '../config/schema.ts';
import { WatchedFile, type ReloadMetrics, type WatchedFileStatus, type WatchSettings } from '../config/watched-file.ts';
import type { Logger } from '../logger.ts';
import type { RouterFile, RouterMetrics } from './metrics.ts';
import { buildRoutingTable, mirrorProblem, servableVersions, unknownUpstreams, type RoutingTable } from './routing-table.ts';
import type { MirrorSettings } from '../config/router-schema.ts';

/** Parse and validate router.yaml through RouterConfigSchema (the one contract the router and the operator use). */
export function parseRouterConfig(text: string, source: string): { value: RouterConfig; hash: string } {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError(source, [`(yaml): ${(error as Error).message.split('\n')[0]}`]);
  }
  const parsed = RouterConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(source, formatIssues(parsed.error.issues));
  const { headerName, upstreams, healthCheck, outlierDetection, mirror } = parsed.data.router;
  const health = healthCheck || outlierDetection ? [{ healthCheck: healthCheck ?? null, outlierDetection: outlierDetection ?? null }] : [];
  const mirrored = mirror ? [{ mirror }] : [];
  const stable = JSON.stringify([headerName, Object.entries(upstreams).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)), ...health, ...mirrored]);
  return { value: parsed.data, hash: createHash('sha256').update(stable).digest('hex').slice(0, 16) };
}

export interface RoutingFilesOptions extends WatchSettings {
  /** config.yaml: versions, weights, defaultVersion (the server's schema). */
  configFile: string;
  /** router.yaml: headerName, upstreams (RouterConfigSchema). */
  routerFile: string;
  metrics: RouterMetrics;
  logger: Logger;
  /** Called after either file changed what is in force (e.g. to follow serving.logLevel). */
  onApplied?: (config: RerankConfig | undefined) => void;
}

export interface RoutingStatus {
  ready: boolean;
  /** The routing table in force; absent until both files have loaded. */
  routing?: {
    defaultVersion: string;
    headerName: string;
    versions: Array<{ name: string; enabled: boolean; weight: number; upstream: string | null }>;
    /** router.yaml's mirror, and why it cannot run when it cannot. */
    mirror?: MirrorSettings & { problem?: string };
  };
  files: { config: WatchedFileStatus; router: WatchedFileStatus };
}

/**
 * The routing table from the router's two files, each watched and validated on its own: a bad edit of
 * either keeps that file's last good content, and the table is rebuilt from the two last good contents
 * whenever one changes. Requests read `table` once each, so a swap never splits one.
 */
export class RoutingFiles {
  readonly #options: RoutingFilesOptions;
  readonly #config: WatchedFile<RerankConfig>;
  readonly #router: WatchedFile<RouterConfig>;
  #table: RoutingTable | undefined;

  constructor(options: RoutingFilesOptions) {
    this.#options = options;
    const { configFile, routerFile, metrics, logger, mode, pollIntervalMs, debounceMs, now } = options;
    const common = { mode, pollIntervalMs, debounceMs, now, logger, apply: () => this.#rebuild() };
    const routerSource = path.resolve(routerFile);
    this.#config = new WatchedFile<RerankConfig>({
      ...common,
      file: configFile,
      name: 'config',
      metrics: routerReloadMetrics(metrics, 'config'),
      parse: configFileParser(configFile),
    });
    this.#router = new WatchedFile<RouterConfig>({
      ...common,
      file: routerFile,
      name: 'router',
      metrics: routerReloadMetrics(metrics, 'router'),
      parse: (text) => parseRouterConfig(text, routerSource),
    });
  }

  /** Load both files, then watch them. Resolves even when a file is missing or invalid (not ready until it is fixed). */
  async start(): Promise<void> {
    await Promise.all([this.#config.start(), this.#router.start()]);
  }

  stop(): void {
    this.#config.stop();
    this.#router.stop();
  }

  async forceReload(): Promise<void> {
    this.#options.logger.info({ files: [this.#options.configFile, this.#options.routerFile] }, 'reload forced');
    await Promise.all([this.#config.forceReload(), this.#router.forceReload()]);
  }

  get table(): RoutingTable | undefined {
    return this.#table;
  }

  /** router.yaml in force (for the upstream health settings), if loaded. */
  get routerConfig(): RouterConfig | undefined {
    return this.#router.current?.value;
  }

  /** The serving config in force (for the body size limit), if loaded. */
  get config(): RerankConfig | undefined {
    return this.#config.current?.value;
  }

  /** Ready: both files loaded and at least one version can take traffic. */
  isReady(): boolean {
    return this.#table !== undefined && servableVersions(this.#table).length > 0;
  }

  status(): RoutingStatus {
    const status: RoutingStatus = { ready: this.isReady(), files: { config: this.#config.status(), router: this.#router.status() } };
    if (this.#table) {
      status.routing = {
        defaultVersion: this.#table.defaultVersion,
        headerName: this.#table.headerName,
        versions: this.#table.versions.map((v) => ({ name: v.name, enabled: v.enabled, weight: v.weight, upstream: v.upstream ?? null })),
      };
      const problem = mirrorProblem(this.#table);
      if (this.#table.mirror) status.routing.mirror = { ...this.#table.mirror, ...(problem ? { problem } : {}) };
    }
    return status;
  }

  #rebuild(): void {
    const config = this.#config.current?.value;
    const router = this.#router.current?.value;
    if (config && router) {
      this.#table = buildRoutingTable(config, router);
      const servable = servableVersions(this.#table);
      const unknown = unknownUpstreams(config, router);
      const log = this.#options.logger;
      if (unknown.length > 0) log.warn({ versions: unknown }, `router.yaml names versions config.yaml does not: ${unknown.join(', ')} (no traffic)`);
      const problem = mirrorProblem(this.#table);
      if (problem) log.warn({ mirror: this.#table.mirror }, `${problem}: nothing is mirrored`);
      if (servable.length === 0) log.warn('no enabled version has an upstream: not ready, rerank requests answered 503');
      else log.info({ defaultVersion: this.#table.defaultVersion, servable }, 'routing table in force');
    }
    this.#options.onApplied?.(config);
  }
}

/** The router's series, labelled with the file they count. */
function routerReloadMetrics(metrics: RouterMetrics, file: RouterFile): ReloadMetrics {
  return {
    reloaded: (result) => metrics.configReloads.inc({ file, result }),
    inForce: (hash, previous) => {
      if (previous !== undefined) metrics.configInfo.remove({ file, hash: previous });
      metrics.configInfo.set({ file, hash }, 1);
    },
  };
}
