import path from 'node:path';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import type { LastGoodStore } from './last-good.ts';
import { configFileParser, type LoadedConfig } from './load.ts';
import type { RerankConfig } from './schema.ts';
import type { StartedOnLastGood } from './start-config.ts';
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
  /** Where the last applied config is kept on disk (absent without a store), or why keeping it failed. */
  lastGood?: { file?: string; savedAt?: string; error?: string };
  /** The process started on the last good copy because the file was broken; until the file yields a valid config. */
  startedOnLastGood?: { copy: string; at: string; issues: string[] };
}

export interface ConfigReloaderOptions extends WatchSettings {
  file: string;
  initial: LoadedConfig;
  /** Text of the initial file, so the watcher does not deliver it again. */
  initialText: string;
  target: ConfigTarget;
  metrics: ServerMetrics;
  logger: Logger;
  /** Keeps each applied config's text on disk, so a restart on a broken file still serves. */
  lastGood?: LastGoodStore;
  /** `initial` is the last good copy, not the file's content (the file was rejected at start). */
  startedOnLastGood?: StartedOnLastGood;
}

/**
 * The server's config file, hot-reloaded (a WatchedFile): a valid new content is applied (the engine
 * swaps it atomically), an invalid one is rejected with its bad keys named in the log and in
 * `reranker_config_reloads_total{result="error"}`, and the last good config keeps serving untouched.
 * An unreadable file is only logged: the server started from a valid one, which stays in force.
 * With a LastGoodStore, each applied config's text is kept on disk; a server started on that copy
 * (the file was broken) reports the file's error until the file yields a valid config.
 */
export class ConfigReloader {
  readonly #options: ConfigReloaderOptions;
  readonly #file: WatchedFile<RerankConfig>;
  readonly #source: string;
  #lastGood: ConfigStatus['lastGood'];
  /** The error kinds of keeping the last good copy already logged (each once until a save works again). */
  readonly #saveErrorsLogged = new Set<string>();
  #startedOnLastGood: ConfigStatus['startedOnLastGood'];

  constructor(options: ConfigReloaderOptions) {
    const { file, initial, initialText, target, metrics, logger, mode, pollIntervalMs, debounceMs, now, startedOnLastGood } = options;
    this.#options = options;
    this.#source = path.resolve(file);
    metrics.configLastReloadSuccess.set(1);
    if (startedOnLastGood) {
      this.#startedOnLastGood = { copy: startedOnLastGood.copy, at: (now?.() ?? new Date()).toISOString(), issues: startedOnLastGood.issues };
      this.#lastGood = { file: startedOnLastGood.copy };
    }
    const reloadMetrics = serverReloadMetrics(metrics);
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
      apply: ({ value, hash }, text) => {
        void target.apply({ config: value, hash, source: this.#source }).catch((error: unknown) => logger.error({ err: error, hash }, 'applying versions failed'));
        this.#keep(text, hash);
      },
      metrics: {
        ...reloadMetrics,
        reloaded: (result) => {
          // The file yielded a valid config (new or the same as the copy's): it, not the copy, is in force now.
          if (result !== 'error') this.#startedOnLastGood = undefined;
          reloadMetrics.reloaded(result);
        },
      },
      logger,
      initial: {
        parsed: { value: initial.config, hash: initial.hash },
        text: initialText,
        ...(startedOnLastGood ? { rejected: { issues: startedOnLastGood.issues, ...(startedOnLastGood.fileText === undefined ? {} : { fileText: startedOnLastGood.fileText }) } } : {}),
      },
      onUnreadable: (error) => logger.warn({ err: error, file }, 'config file unreadable; keeping the config in force'),
    });
    if (!startedOnLastGood) this.#keep(initialText, initial.hash);
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
    if (this.#lastGood) status.lastGood = this.#lastGood;
    if (this.#startedOnLastGood) status.startedOnLastGood = this.#startedOnLastGood;
    return status;
  }

  /** What /info tells while the file is broken and the copy serves; empty otherwise. */
  notices(): string[] {
    const started = this.#startedOnLastGood;
    if (!started) return [];
    return [
      `config file ${this.#source} is invalid (${started.issues.join('; ')}); serving the last good config ${this.#inForce().hash} from ${started.copy} until the file holds a valid one`,
    ];
  }

  /** Keep an applied config on disk; a failure is logged once per kind and counted, and serving goes on. */
  #keep(text: string, hash: string): void {
    const { lastGood, logger, metrics } = this.#options;
    if (!lastGood) return;
    try {
      const file = lastGood.save(text);
      this.#lastGood = { file, savedAt: (this.#options.now?.() ?? new Date()).toISOString() };
      if (this.#saveErrorsLogged.size > 0) logger.info({ file, hash }, 'last good config kept again');
      this.#saveErrorsLogged.clear();
    } catch (error) {
      const kind = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      metrics.configLastGoodSaveFailures.inc();
      this.#lastGood = { error: `${(error as Error).message}` };
      if (this.#saveErrorsLogged.has(kind)) return;
      this.#saveErrorsLogged.add(kind);
      logger.error({ err: error, hash, beside: lastGood.beside, stateDir: lastGood.inStateDir }, 'cannot keep the last good config on disk: a restart on a broken config file will fail');
    }
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
