import path from 'node:path';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { configFileParser, type LoadedConfig } from './load.ts';
import type { RerankConfig } from './schema.ts';
import { WatchedFile, type ReloadMetrics, type ReloadResult, type WatchSettings } from './watched-file.ts';

/** What the reloader drives: the engine's atomic config swap. */
export interface ConfigTarget {
  apply(loaded: LoadedConfig): Promise<unknown>;
  /** Try again whatever failed under the config in force (a model that failed to load); on SIGHUP of unchanged content. */
  retry?(): Promise<unknown>;
}

export interface ConfigStatus {
  hash: string;
  source: string;
  /** When the config in force was applied (ISO 8601). */
  appliedAt: string;
  config: LoadedConfig['config'];
  /** The last rejected edit, while it is the newest content of the file. */
  lastError?: { at: string; issues: string[] };
}

export interface ConfigReloaderOptions extends WatchSettings {
  file: string;
  initial: LoadedConfig;
  /** Text of the initial file, so the watcher does not deliver it again. */
  initialText: string;
  target: ConfigTarget;
  metrics: ServerMetrics;
  logger: Logger;
}

/**
 * The server's config file, hot-reloaded (a WatchedFile): a valid new content is applied (the engine
 * swaps it atomically), an invalid one is rejected with its bad keys named in the log and in
 * `reranker_config_reloads_total{result="error"}`, and the last good config keeps serving untouched.
 * An unreadable file is only logged: the server started from a valid one, which stays in force.
 */
export class ConfigReloader {
  readonly #options: ConfigReloaderOptions;
  readonly #file: WatchedFile<RerankConfig>;
  readonly #source: string;

  constructor(options: ConfigReloaderOptions) {
    const { file, initial, initialText, target, metrics, logger, mode, pollIntervalMs, debounceMs, now } = options;
    this.#options = options;
    this.#source = path.resolve(file);
    this.#file = new WatchedFile<RerankConfig>({
      file,
      mode,
      pollIntervalMs,
      debounceMs,
      now,
      name: 'config',
      parse: configFileParser(file),
      // The knobs are in force once apply() has swapped them (synchronously); version loads and drains
      // finish in the background and log their own outcome.
      apply: ({ value, hash }) =>
        void target.apply({ config: value, hash, source: this.#source }).catch((error: unknown) => logger.error({ err: error, hash }, 'applying versions failed')),
      metrics: serverReloadMetrics(metrics),
      logger,
      initial: { parsed: { value: initial.config, hash: initial.hash }, text: initialText },
      onUnreadable: (error) => logger.warn({ err: error, file }, 'config file unreadable; keeping the config in force'),
    });
    metrics.configLastReloadSuccess.set(1);
  }

  start(): void {
    void this.#file.start();
  }

  stop(): void {
    this.#file.stop();
  }

  /**
   * Re-read the file now, even if its content did not change (SIGHUP). Unchanged content retries what
   * failed under the config in force, e.g. a version whose model files were missing and are there now.
   */
  async forceReload(): Promise<void> {
    const { logger, file, target } = this.#options;
    logger.info({ file }, 'reload forced');
    const before = this.#inForce().hash;
    await this.#file.forceReload();
    if (this.#inForce().hash !== before || !target.retry) return;
    await target.retry().catch((error: unknown) => logger.error({ err: error, hash: before }, 'retrying failed versions failed'));
  }

  status(): ConfigStatus {
    const { value, hash, appliedAt } = this.#inForce();
    const status: ConfigStatus = { hash, source: this.#source, appliedAt: appliedAt.toISOString(), config: value };
    const { lastError } = this.#file.status();
    if (lastError) status.lastError = lastError;
    return status;
  }

  /** Validate and apply one content of the config file. */
  async reloadText(text: string): Promise<ReloadResult> {
    return this.#file.reload(text);
  }

  /** Started from a valid config, the file always has one in force. */
  #inForce() {
    return this.#file.current!;
  }
}

/** The server's series: reloads by result, the hash in force, and whether the last attempt was applied. */
function serverReloadMetrics(metrics: ServerMetrics): ReloadMetrics {
  return {
    reloaded: (result) => {
      metrics.configReloads.inc({ result });
      metrics.configLastReloadSuccess.set(result === 'error' ? 0 : 1);
    },
    inForce: (hash, previous) => {
      if (previous !== undefined) metrics.configInfo.remove({ hash: previous });
      metrics.configInfo.set({ hash }, 1);
    },
  };
}
