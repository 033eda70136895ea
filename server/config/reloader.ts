import path from 'node:path';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { diffConfig } from './diff.ts';
import { ConfigError, parseConfig, type LoadedConfig } from './load.ts';
import { ConfigWatcher, contentHash, type WatchMode } from './watcher.ts';

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

export interface ConfigReloaderOptions {
  file: string;
  initial: LoadedConfig;
  /** Text of the initial file, so the watcher does not deliver it again. */
  initialText: string;
  target: ConfigTarget;
  metrics: ServerMetrics;
  logger: Logger;
  mode?: WatchMode;
  pollIntervalMs?: number;
  debounceMs?: number;
  now?: () => Date;
}

export type ReloadResult = 'ok' | 'unchanged' | 'error';

/**
 * Hot reload: every new content of the config file is parsed and validated whole; a valid one is applied
 * (the engine swaps it atomically), an invalid one is rejected with its bad keys named in the log and in
 * `reranker_config_reloads_total{result="error"}`, and the last good config keeps serving untouched.
 * Each applied change is logged key by key (old → new) with the new hash.
 */
export class ConfigReloader {
  readonly #options: ConfigReloaderOptions;
  readonly #watcher: ConfigWatcher;
  #current: LoadedConfig;
  #appliedAt: Date;
  #lastError: ConfigStatus['lastError'];

  constructor(options: ConfigReloaderOptions) {
    this.#options = options;
    this.#current = options.initial;
    this.#appliedAt = this.#now();
    const watcherOptions: ConstructorParameters<typeof ConfigWatcher>[0] = {
      file: options.file,
      onChange: async (text) => {
        await this.reloadText(text);
      },
      onError: (error) => options.logger.warn({ err: error, file: options.file }, 'config file unreadable; keeping the config in force'),
      mode: options.mode ?? 'auto',
    };
    if (options.pollIntervalMs !== undefined) watcherOptions.pollIntervalMs = options.pollIntervalMs;
    if (options.debounceMs !== undefined) watcherOptions.debounceMs = options.debounceMs;
    this.#watcher = new ConfigWatcher(watcherOptions);
    options.metrics.configInfo.set({ hash: options.initial.hash }, 1);
    options.metrics.configLastReloadSuccess.set(1);
  }

  start(): void {
    this.#watcher.start(contentHash(this.#options.initialText));
  }

  stop(): void {
    this.#watcher.stop();
  }

  /**
   * Re-read the file now, even if its content did not change (SIGHUP). Unchanged content retries what
   * failed under the config in force, e.g. a version whose model files were missing and are there now.
   */
  async forceReload(): Promise<void> {
    const { logger, file, target } = this.#options;
    logger.info({ file }, 'reload forced');
    const before = this.#current.hash;
    await this.#watcher.check({ force: true });
    if (this.#current.hash !== before || !target.retry) return;
    await target.retry().catch((error: unknown) => logger.error({ err: error, hash: before }, 'retrying failed versions failed'));
  }

  status(): ConfigStatus {
    const status: ConfigStatus = {
      hash: this.#current.hash,
      source: this.#current.source,
      appliedAt: this.#appliedAt.toISOString(),
      config: this.#current.config,
    };
    if (this.#lastError) status.lastError = this.#lastError;
    return status;
  }

  /** Validate and apply one content of the config file. */
  async reloadText(text: string): Promise<ReloadResult> {
    const { logger, metrics, file } = this.#options;
    let next: LoadedConfig;
    try {
      next = parseConfig(text, { source: path.resolve(file), baseDir: path.dirname(path.resolve(file)) });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.#lastError = { at: this.#now().toISOString(), issues: error.issues };
      metrics.configReloads.inc({ result: 'error' });
      metrics.configLastReloadSuccess.set(0);
      logger.error({ file, issues: error.issues, keptHash: this.#current.hash }, `config rejected, keeping ${this.#current.hash}: ${error.issues.join('; ')}`);
      return 'error';
    }
    this.#lastError = undefined;
    metrics.configLastReloadSuccess.set(1);
    if (next.hash === this.#current.hash) {
      metrics.configReloads.inc({ result: 'unchanged' });
      logger.debug({ hash: next.hash }, 'config unchanged');
      return 'unchanged';
    }
    const previous = this.#current;
    const changes = diffConfig(previous.config, next.config);
    this.#current = next;
    this.#appliedAt = this.#now();
    metrics.configInfo.remove({ hash: previous.hash });
    metrics.configInfo.set({ hash: next.hash }, 1);
    metrics.configReloads.inc({ result: 'ok' });
    logger.info(
      { from: previous.hash, to: next.hash, changes: changes.map((c) => `${c.path}: ${show(c.from)} → ${show(c.to)}`) },
      `config applied ${previous.hash} → ${next.hash} (${changes.length} change${changes.length === 1 ? '' : 's'})`,
    );
    // The knobs are in force once apply() has swapped them (synchronously); version loads and drains
    // finish in the background and log their own outcome.
    this.#options.target.apply(next).catch((error: unknown) => logger.error({ err: error, hash: next.hash }, 'applying versions failed'));
    return 'ok';
  }

  #now(): Date {
    return this.#options.now?.() ?? new Date();
  }
}

function show(value: unknown): string {
  return value === undefined ? '(absent)' : JSON.stringify(value);
}
