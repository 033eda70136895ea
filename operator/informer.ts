import type { Clock } from './clock.ts';
import { isApiError, type KindRef, type KubeClient, type KubeObject, type ListOptions, type WatchHandle } from './kube.ts';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerOptions extends ListOptions {
  kube: KubeClient;
  kind: KindRef;
  clock: Clock;
  onEvent: (event: InformerEvent, object: KubeObject) => void;
  /** Each failed list or watch, before the retry is scheduled. */
  onError?: (error: unknown) => void;
  /** The first list or watch that works after failures. */
  onRecovered?: () => void;
  /** First wait before re-listing after an error other than 410; doubles per consecutive failure, with jitter. */
  retryMs?: number;
  maxRetryMs?: number;
  /** 0..1 → a factor in [1, 1 + jitter) on each wait, so many informers do not retry in step. Default 0.5. */
  jitter?: number;
  random?: () => number;
  /** How long each watch asks the server to run before it ends it (default: 5–10 min at random). */
  watchTimeoutSeconds?: number;
}

/** Exponential backoff with jitter: base·2^failures, capped, times a random factor in [1, 1 + jitter). */
export function backoffMs(failures: number, options: { baseMs: number; maxMs: number; jitter: number; random: () => number }): number {
  const capped = Math.min(options.maxMs, options.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(capped * (1 + options.jitter * options.random()));
}

const cacheKey = (o: KubeObject) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/**
 * List, then watch from the list's resourceVersion, keeping a cache. When the watch expires (410 Gone)
 * it lists again and reports the difference (adds, updates, and deletes missed while away), then
 * watches anew; other failures re-list after a pause.
 */
export class Informer {
  readonly cache = new Map<string, KubeObject>();
  readonly #options: InformerOptions;
  #handle: WatchHandle | undefined;
  #stopped = false;
  #synced = false;
  #resourceVersion = '';
  #cancelRetry: (() => void) | undefined;
  #failures = 0;
  #lastError: unknown;

  constructor(options: InformerOptions) {
    this.#options = options;
  }

  get synced(): boolean {
    return this.#synced;
  }

  get kind(): KindRef {
    return this.#options.kind;
  }

  /** Consecutive failed lists/watches, and the last one's error; 0 and undefined while it works. */
  get health(): { failures: number; error: string | undefined; cause: unknown } {
    const error = this.#lastError === undefined ? undefined : this.#lastError instanceof Error ? this.#lastError.message : String(this.#lastError);
    return { failures: this.#failures, error, cause: this.#lastError };
  }

  async start(): Promise<void> {
    await this.#listAndWatch();
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelRetry?.();
    this.#handle?.stop();
  }

  async #listAndWatch(): Promise<void> {
    if (this.#stopped) return;
    const { kube, kind, namespace, labelSelector } = this.#options;
    const scope: ListOptions = {};
    if (namespace) scope.namespace = namespace;
    if (labelSelector) scope.labelSelector = labelSelector;
    try {
      const list = await kube.list(kind, scope);
      this.#replace(list.items);
      this.#resourceVersion = list.resourceVersion;
      this.#synced = true;
      await this.#watch(scope);
      this.#recovered();
    } catch (error) {
      this.#retry(error);
    }
  }

  async #watch(scope: ListOptions): Promise<void> {
    if (this.#stopped) return;
    const { kube, kind } = this.#options;
    const timeout = this.#options.watchTimeoutSeconds !== undefined ? { timeoutSeconds: this.#options.watchTimeoutSeconds } : {};
    this.#handle = await kube.watch(kind, { ...scope, ...timeout, resourceVersion: this.#resourceVersion }, {
      onEvent: (type, object) => {
        if (object.metadata.resourceVersion) this.#resourceVersion = object.metadata.resourceVersion;
        if (type === 'BOOKMARK') return;
        const key = cacheKey(object);
        if (type === 'DELETED') {
          this.cache.delete(key);
          this.#options.onEvent('delete', object);
        } else {
          const existed = this.cache.has(key);
          this.cache.set(key, object);
          this.#options.onEvent(existed ? 'update' : 'add', object);
        }
      },
      onDone: (error) => {
        if (this.#stopped) return;
        if (error === undefined) void this.#watch(scope).catch((e: unknown) => this.#retry(e));
        else if (isApiError(error, 410)) void this.#listAndWatch();
        else this.#retry(error);
      },
    });
  }

  #recovered(): void {
    if (this.#failures === 0) return;
    this.#failures = 0;
    this.#lastError = undefined;
    this.#options.onRecovered?.();
  }

  #retry(error: unknown): void {
    if (this.#stopped) return;
    this.#failures += 1;
    this.#lastError = error;
    this.#options.onError?.(error);
    const wait = backoffMs(this.#failures, {
      baseMs: this.#options.retryMs ?? 1000,
      maxMs: this.#options.maxRetryMs ?? 60_000,
      jitter: this.#options.jitter ?? 0.5,
      random: this.#options.random ?? Math.random,
    });
    this.#cancelRetry = this.#options.clock.setTimer(wait, () => void this.#listAndWatch());
  }

  /** A fresh list replaces the cache; what changed while the watch was away is reported as events. */
  #replace(items: KubeObject[]): void {
    const fresh = new Map(items.map((o) => [cacheKey(o), o]));
    for (const [key, old] of this.cache) {
      if (!fresh.has(key)) {
        this.cache.delete(key);
        this.#options.onEvent('delete', old);
      }
    }
    for (const [key, object] of fresh) {
      const old = this.cache.get(key);
      this.cache.set(key, object);
      if (!old) this.#options.onEvent('add', object);
      else if (old.metadata.resourceVersion !== object.metadata.resourceVersion) this.#options.onEvent('update', object);
    }
  }
}
