import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export type WatchMode = 'auto' | 'events' | 'poll';

export interface ConfigWatcherOptions {
  file: string;
  /** Called with the new file text once per distinct content; calls never overlap. */
  onChange: (text: string, contentHash: string) => Promise<void> | void;
  /** Called when the file cannot be read (e.g. deleted mid-swap); the watcher keeps going. */
  onError?: (error: Error) => void;
  /**
   * `events`: directory events only; `poll`: content-hash polling only; `auto`: both — events for speed,
   * polling as the safety net for volumes that deliver no events (network and some overlay filesystems).
   */
  mode?: WatchMode;
  /** Events within this window collapse into one read. */
  debounceMs?: number;
  pollIntervalMs?: number;
}

/**
 * Watches a config file the way Kubernetes updates it. A mounted ConfigMap is a directory whose files
 * are symlinks through `..data`, which kubelet swaps atomically to a new timestamped directory; editors
 * save by writing a temp file and renaming it over the old one. Both replace the file's inode, so a
 * watch on the file itself goes deaf after the first update. This watches the directory instead and
 * compares content hashes, so every distinct content is delivered exactly once, however many events
 * (or polls) announce it.
 */
export class ConfigWatcher {
  private readonly options: Required<Omit<ConfigWatcherOptions, 'onError'>> & Pick<ConfigWatcherOptions, 'onError'>;
  private lastHash: string | undefined;
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private pending = false;
  private stopped = false;

  constructor(options: ConfigWatcherOptions) {
    this.options = { mode: 'auto', debounceMs: 10, pollIntervalMs: 2000, ...options };
  }

  /** Begin watching. `initialHash` is the hash of the content already applied, so it is not delivered again. */
  start(initialHash?: string): void {
    this.lastHash = initialHash;
    const { mode } = this.options;
    if (mode !== 'poll') this.watchDirectory();
    if (mode !== 'events') {
      this.pollTimer = setInterval(() => this.schedule(0), this.options.pollIntervalMs);
      this.pollTimer.unref();
    }
  }

  /** Read now, bypassing the debounce; with `force`, deliver even unchanged content (SIGHUP). */
  check(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) this.lastHash = undefined;
    return this.enqueue();
  }

  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
  }

  private watchDirectory(): void {
    const dir = path.dirname(path.resolve(this.options.file));
    try {
      this.watcher = watch(dir, { persistent: false }, () => this.schedule(this.options.debounceMs));
      this.watcher.on('error', (error) => {
        // The directory itself went away or was replaced: watch it again shortly.
        this.options.onError?.(error);
        this.watcher?.close();
        if (!this.stopped) setTimeout(() => !this.stopped && this.watchDirectory(), this.options.debounceMs).unref();
      });
    } catch (error) {
      this.options.onError?.(error as Error);
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => void this.enqueue(), delayMs);
    this.debounceTimer.unref();
  }

  /** Serialize reads: one in flight, at most one more queued behind it. */
  private enqueue(): Promise<void> {
    if (this.pending) return this.running;
    this.pending = true;
    this.running = this.running.then(async () => {
      this.pending = false;
      await this.readAndDeliver();
    });
    return this.running;
  }

  private async readAndDeliver(): Promise<void> {
    if (this.stopped) return;
    let text: string;
    try {
      // Synchronous on purpose: the file is small, and an async read waits in libuv's thread pool behind
      // tokenization (the tokenizer binding runs there), which under load delays a reload by tens of ms.
      text = readFileSync(this.options.file, 'utf8');
    } catch (error) {
      this.options.onError?.(error as Error);
      return;
    }
    const hash = contentHash(text);
    if (hash === this.lastHash) return;
    this.lastHash = hash;
    try {
      await this.options.onChange(text, hash);
    } catch (error) {
      this.options.onError?.(error as Error);
    }
  }
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
