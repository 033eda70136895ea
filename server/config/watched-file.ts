import type { Logger } from '../logger.ts';
import { diffConfig } from './diff.ts';
import { ConfigError } from './load.ts';
import { ConfigWatcher, contentHash, type WatchMode } from './watcher.ts';

/** A parsed, validated file content and its hash. */
export interface Parsed<T> {
  value: T;
  /** Hash of the validated content (not the text): reformatting a file does not change it. */
  hash: string;
}

export type ReloadResult = 'ok' | 'unchanged' | 'error';

/** The Prometheus side of a watched file; each user labels its own series (the server's, the router's per file). */
export interface ReloadMetrics {
  /** One reload attempt, by result. */
  reloaded(result: ReloadResult): void;
  /** A new content is in force: its info series replaces the previous one's. */
  inForce(hash: string, previous: string | undefined): void;
}

export interface WatchedFileStatus {
  source: string;
  /** Absent until a valid content was read. */
  hash?: string;
  appliedAt?: string;
  /** The last rejected or unreadable content, while it is the newest the file had. */
  lastError?: { at: string; issues: string[] };
}

/** How a file is watched: directory events and/or polling (ConfigWatcher), and the clock; each has a default. */
export interface WatchSettings {
  mode?: WatchMode;
  pollIntervalMs?: number;
  debounceMs?: number;
  now?: () => Date;
}

export interface WatchedFileOptions<T> extends WatchSettings {
  file: string;
  /** What log lines call the file: `config applied a → b`, `router rejected, keeping a: …`. */
  name: string;
  /** Throws ConfigError naming each bad key. */
  parse: (text: string) => Parsed<T>;
  /** The apply step: called once per newly applied content (with its text), after it is in force and logged. */
  apply: (next: Parsed<T>, text: string) => void;
  metrics: ReloadMetrics;
  logger: Logger;
  /** A content already loaded and in force (`start()` then only watches); without it, `start()` reads the file first. */
  initial?: {
    parsed: Parsed<T>;
    text: string;
    /**
     * The file itself was rejected and `initial` came from elsewhere (a last good copy): its issues are
     * reported as a rejected content, and its text (when it could be read) is not delivered again.
     */
    rejected?: { issues: string[]; fileText?: string };
  };
  /** Instead of counting an unreadable file as a rejected content (reported once while it lasts), hand the error here. */
  onUnreadable?: (error: Error) => void;
}

/**
 * A config file, hot-reloaded: each new content (ConfigWatcher: directory events and polling, so a
 * kubelet `..data` swap is seen) is validated whole; a valid one replaces the value in force, is logged
 * key by key (old → new) with its hash and handed to the apply step; an invalid one is logged with its bad
 * keys, counted as `result="error"` and ignored, so the last good value stays in force.
 *
 * @example
 * const file = new WatchedFile({ file: 'router.yaml', name: 'router', parse, apply: (next) => use(next.value), metrics, logger });
 * await file.start();
 * file.current?.value; // the last good content, or undefined until one was read
 */
export class WatchedFile<T> {
  readonly #options: WatchedFileOptions<T>;
  readonly #watcher: ConfigWatcher;
  #current: InForce<T> | undefined;
  #lastError: WatchedFileStatus['lastError'];
  #lastSeen: string | undefined;

  constructor(options: WatchedFileOptions<T>) {
    this.#options = options;
    if (options.initial) {
      this.#current = { ...options.initial.parsed, appliedAt: this.#now() };
      this.#lastSeen = contentHash(options.initial.text);
      options.metrics.inForce(options.initial.parsed.hash, undefined);
      const { rejected } = options.initial;
      if (rejected) {
        this.#lastSeen = rejected.fileText === undefined ? undefined : contentHash(rejected.fileText);
        this.#reject(rejected.issues);
      }
    }
    const watcherOptions: ConstructorParameters<typeof ConfigWatcher>[0] = {
      file: options.file,
      onChange: (text, contentHash) => {
        this.#lastSeen = contentHash;
        this.#lastError = undefined;
        this.reload(text);
      },
      onError: (error) => (options.onUnreadable ? options.onUnreadable(error) : this.#unreadable(error)),
      mode: options.mode ?? 'auto',
    };
    if (options.pollIntervalMs !== undefined) watcherOptions.pollIntervalMs = options.pollIntervalMs;
    if (options.debounceMs !== undefined) watcherOptions.debounceMs = options.debounceMs;
    this.#watcher = new ConfigWatcher(watcherOptions);
  }

  /** Read the file once unless an initial content was given, then watch it. A missing or invalid file is logged; watching goes on. */
  async start(): Promise<void> {
    if (!this.#options.initial) await this.#watcher.check();
    this.#watcher.start(this.#lastSeen);
  }

  stop(): void {
    this.#watcher.stop();
  }

  /** Re-read now, even unchanged content (SIGHUP). */
  forceReload(): Promise<void> {
    return this.#watcher.check({ force: true });
  }

  /** The content in force, if a valid one was read. */
  get current(): InForce<T> | undefined {
    return this.#current;
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
  reload(text: string): ReloadResult {
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
      metrics.reloaded('unchanged');
      logger.debug({ file, hash: next.hash }, `${name} unchanged`);
      return 'unchanged';
    }
    this.#current = { ...next, appliedAt: this.#now() };
    metrics.inForce(next.hash, previous?.hash);
    metrics.reloaded('ok');
    if (previous) {
      const changes = diffConfig(previous.value, next.value).map((c) => `${c.path}: ${show(c.from)} → ${show(c.to)}`);
      logger.info({ file, from: previous.hash, to: next.hash, changes }, `${name} applied ${previous.hash} → ${next.hash} (${changes.length} change${changes.length === 1 ? '' : 's'})`);
    } else {
      logger.info({ file, hash: next.hash }, `${name} loaded ${next.hash}`);
    }
    this.#options.apply(next, text);
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
    metrics.reloaded('error');
    const kept = this.#current ? `keeping ${this.#current.hash}` : 'nothing loaded yet';
    logger.error({ file, issues, keptHash: this.#current?.hash }, `${name} rejected, ${kept}: ${issues.join('; ')}`);
  }

  #now(): Date {
    return this.#options.now?.() ?? new Date();
  }
}

/** A content in force and when it was applied. */
export type InForce<T> = Parsed<T> & { appliedAt: Date };

function show(value: unknown): string {
  return value === undefined ? '(absent)' : JSON.stringify(value);
}
