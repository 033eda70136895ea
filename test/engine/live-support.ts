import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig, type LoadedConfig } from '../../server/config/load.ts';
import type { RerankConfigInput } from '../../server/config/schema.ts';
import { loadOnnxModel, type LoadOnnxModelOptions, type PairScorer } from '../../server/engine/onnx-model.ts';
import type { RerankEngine } from '../../server/engine/engine.ts';
import type { RerankRequest } from '../../server/engine/types.ts';

/** Helpers for the live-reconfiguration tests: configs, request loads that count failures, model loaders. */

export function loadedConfig(config: RerankConfigInput): LoadedConfig {
  return parseConfig(JSON.stringify(config), { source: 'test', baseDir: '/' });
}

export const QUERY = 'what is the history of the city?';
export const DOCUMENTS = ['the river runs through the city', 'water', 'the history of the city and its market', 'energy policy'];

export interface LoadResult {
  ok: number;
  failed: number;
  errors: string[];
  /** Answers per version. */
  versions: Record<string, number>;
}

export interface RequestLoad {
  /** Resolves once every loop has completed at least `count` more requests. */
  progress(count?: number): Promise<void>;
  stop(): Promise<LoadResult>;
}

/**
 * `loops` concurrent request loops against the engine until stopped. Each request is shaped by
 * `shape(i)` (e.g. a header version), so some pin the version under change while others are weighted.
 */
export function requestLoad(engine: RerankEngine, options: { loops?: number; shape?: (i: number) => Partial<RerankRequest> } = {}): RequestLoad {
  const result: LoadResult = { ok: 0, failed: 0, errors: [], versions: {} };
  const loops = options.loops ?? 8;
  const done = new Array<number>(loops).fill(0);
  let stopped = false;
  const runners = Array.from({ length: loops }, async (_, loop) => {
    for (let i = 0; !stopped; i += 1) {
      try {
        const outcome = await engine.rerank({ query: QUERY, documents: DOCUMENTS, ...options.shape?.(i * loops + loop) });
        result.ok += 1;
        result.versions[outcome.version] = (result.versions[outcome.version] ?? 0) + 1;
      } catch (error) {
        result.failed += 1;
        if (result.errors.length < 5) result.errors.push((error as Error).message);
      }
      done[loop] = (done[loop] as number) + 1;
      // Leave the event loop some room: two cores run the models, the loops and the test.
      await sleep(1);
    }
  });
  return {
    async progress(count = 2) {
      const target = done.map((n) => n + count);
      while (!stopped && done.some((n, i) => n < (target[i] as number))) await sleep(2);
    },
    async stop() {
      stopped = true;
      await Promise.all(runners);
      return result;
    },
  };
}

/** A loader whose loads wait until `open()` (for every load after `hold()`), to observe a version mid-load. */
export class GatedLoader {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  /** Models passed by the gate, by path. */
  readonly loads: string[] = [];
  /** Resolves `waiting()` callers when a load reaches the gate. */
  #waiters: (() => void)[] = [];

  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  open(): void {
    this.#open?.();
    this.#gate = undefined;
  }

  waiting(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  readonly load = async (options: LoadOnnxModelOptions): Promise<PairScorer> => {
    if (this.#gate) {
      for (const resolve of this.#waiters.splice(0)) resolve();
      await this.#gate;
    }
    this.loads.push(options.modelPath);
    return loadOnnxModel(options);
  };
}

/**
 * Pretends to have a GPU: the session runs on CPU, but says it runs where it was asked to, so a test can
 * follow a version's moves between providers as a GPU machine would show them.
 */
export async function pretendGpuLoader(options: LoadOnnxModelOptions): Promise<PairScorer> {
  const model = await loadOnnxModel({ ...options, device: 'cpu' });
  const description = { ...model.description, device: options.device };
  return { description, run: (pairs) => model.run(pairs), close: () => model.close() };
}

/** Polls until `condition` holds (or fails after `timeoutMs`). */
export async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** mulberry32: a seeded uniform source in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
