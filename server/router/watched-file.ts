import type { Logger } from '../logger.ts';
import { diffConfig } from '../config/diff.ts';
import { ConfigError } from '../config/load.ts';
import { ConfigWatcher, type WatchMode } from '../config/watcher.ts';
import type { RouterFile, RouterMetrics } from './metrics.ts';

/** A parsed, validated file content and its hash. */
export interface Parsed<T> {
  value: T;
  /** Hash of the validated content (not the text): reformatting a file does not change it. */
  hash: string;
}

export interface WatchedFileStatus {
  source: string;
  /** Absent until a valid content was read. */
  hash?: string;
  appliedAt?: string;
  /** The last rejected or unreadable content, while it is the newest the file had. */
  lastError?: { at: string; issues: string[] };
}

export interface WatchedFileOptions<T> {
  file: string;
  name: RouterFile;
  /** Throws ConfigError naming each bad key. */
  parse: (text: string) => Parsed<T>;
  /** Called after each newly applied content. */
  onApplied: () => void;
  metrics: RouterMetrics;
  logger: Logger;
  mode?: WatchMode;
  pollIntervalMs?: number;
  debounceMs?: number;
  now?: () => Date;
}

/**
 * One of the router's files, hot-reloaded: each new content (ConfigWatcher: directory events and polling,
 * so a kubelet `..data` swap is seen) is validated whole; a valid one replaces the value in force, an
 * invalid or unreadable one is logged, counted in `reranker_router_config_reloads_total{result="error"}`
 * and ignored, so the last good value keeps routing.
 */
export class WatchedFile<T> {
  readonly #options: WatchedFileOptions<T>;
  readonly #watcher: ConfigWatcher;
  #current: (Parsed<T> & { appliedAt: Date }) | undefined;
  #lastError: WatchedFileStatus['lastError'];
  #lastSeen: string | undefined;

  constructor(options: WatchedFileOptions<T>) {
    this.#options = options;
    const watcherOptions: ConstructorParameters<typeof ConfigWatcher>[0] = {
      file: options.file,
      onChange: (text, contentHash) => {
        this.#lastSeen = contentHash;
        this.#lastError = undefined;
        this.apply(text);
      },
      onError: (error) => this.#unreadable(error),
      mode: options.mode ?? 'auto',
    };
    if (options.pollIntervalMs !== undefined) watcherOptions.pollIntervalMs = options.pollIntervalMs;
    if (options.debounceMs !== undefined) watcherOptions.debounceMs = options.debounceMs;
    this.#watcher = new ConfigWatcher(watcherOptions);
  }

  /** Read the file once, then watch it. A missing or invalid file is logged; watching goes on. */
  async start(): Promise<void> {
    await this.#watcher.check();
    this.#watcher.start(this.#lastSeen);
  }

  stop(): void {
    this.#watcher.stop();
  }

  /** Re-read now, even unchanged content (SIGHUP). */
  forceReload(): Promise<void> {
    return this.#watcher.check({ force: true });
  }

  get value(): T | undefined {
    return this.#current?.value;
  }

  status(): WatchedFileStatus {
    const status: WatchedFileStatus = { source: this.#options.file };
    if (this.#current) {
      status.hash = this.#current.hash;
      status.appliedAt = this.#current.appliedAt.toISOString();
    }
    if (this.#lastError) status.lastError = this.#lastError;
    return status;
  }

  /** Validate one content of the file and apply it, or keep what is in force. */
  apply(text: string): 'ok' | 'unchanged' | 'error' {
    const { name, file, metrics, logger } = this.#options;
    let next: Parsed<T>;
    try {
      next = this.#options.parse(text);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.#reject(error.issues);
      return 'error';
    }
    this.#lastError = undefined;
    const previous = this.#current;
    if (previous?.hash === next.hash) {
      metrics.configReloads.inc({ file: name, result: 'unchanged' });
      return 'unchanged';
    }
    this.#current = { ...next, appliedAt: this.#now() };
    if (previous) metrics.configInfo.remove({ file: name, hash: previous.hash });
    metrics.configInfo.set({ file: name, hash: next.hash }, 1);
    metrics.configReloads.inc({ file: name, result: 'ok' });
    if (previous) {
      const changes = diffConfig(previous.value, next.value).map((c) => `${c.path}: ${show(c.from)} → ${show(c.to)}`);
      logger.info({ file, from: previous.hash, to: next.hash, changes }, `${name} applied ${previous.hash} → ${next.hash} (${changes.length} change${changes.length === 1 ? '' : 's'})`);
    } else {
      logger.info({ file, hash: next.hash }, `${name} loaded ${next.hash}`);
    }
    this.#options.onApplied();
    return 'ok';
  }

  /** A read failure is reported once, not at every poll while it lasts. */
  #unreadable(error: Error): void {
    const issue = `(file): ${(error as NodeJS.ErrnoException).code ?? error.message}`;
    if (this.#lastError?.issues.length === 1 && this.#lastError.issues[0] === issue) return;
    this.#reject([issue]);
  }

  #reject(issues: string[]): void {
    const { name, file, metrics, logger } = this.#options;
    this.#lastError = { at: this.#now().toISOString(), issues };
    metrics.configReloads.inc({ file: name, result: 'error' });
    const kept = this.#current ? `keeping ${this.#current.hash}` : 'nothing loaded yet';
    logger.error({ file, issues, keptHash: this.#current?.hash }, `${name} rejected, ${kept}: ${issues.join('; ')}`);
  }

  #now(): Date {
    return this.#options.now?.() ?? new Date();
  }
}

function show(value: unknown): string {
  return value === undefined ? '(absent)' : JSON.stringify(value);
}
