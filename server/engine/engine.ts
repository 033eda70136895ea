import { access } from 'node:fs/promises';
import path from 'node:path';
import type { LoadedConfig } from '../config/load.ts';
import type { RerankConfig, VersionConfig } from '../config/schema.ts';
import { RerankError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { DEFAULT_MAX_PADDING_RATIO } from './batch-packer.ts';
import { BatchQueue, type QueueLimits } from './batch-queue.ts';
import { firstLine, loadOnnxModel, type Device, type PairScorer } from './onnx-model.ts';
import { PairTokenizer, readModelDirConfig, type EncodedPair } from './pair-tokenizer.ts';
import type { EngineInfo, RerankOutcome, RerankRequest, Reranker, VersionInfo, VersionState } from './types.ts';
import { chooseVersion } from './version-choice.ts';

/**
 * The serving core: every enabled version's tokenizer, ONNX session and batch queue, and the choice of
 * version per request. Knows nothing of HTTP.
 *
 * The config is read through `config` on every request and by every queue before every batch, so a
 * reload that swaps it changes limits and weights for the next request and the next batch.
 */

export interface RerankEngineOptions {
  loaded: LoadedConfig;
  metrics: ServerMetrics;
  logger: Logger;
  /** Uniform in [0, 1), for the weighted version draw; `Math.random` unless a test seeds it. */
  random?: () => number;
  /** Where ONNX sessions run: a worker thread each (default), or the main thread. */
  modelThread?: 'worker' | 'main';
  /** Threads of each ORT session; ORT's default (one per core) when absent. */
  intraOpNumThreads?: number;
  /** Largest share of a batch that may be padding (see PackLimits). */
  maxPaddingRatio?: number;
}

interface VersionRuntime {
  name: string;
  config: VersionConfig;
  state: VersionState;
  error?: string;
  device: Device;
  deviceFallback?: string;
  inputs: string[];
  synthetic: boolean;
  /** Longest pair the model's position table takes. */
  modelMaxTokens?: number;
  tokenizer?: PairTokenizer;
  model?: PairScorer;
  queue?: BatchQueue;
  takesTypeIds: boolean;
}

const WARM_UP = { query: 'warm-up query', document: 'a short warm-up document' };

export class RerankEngine implements Reranker {
  /** Resolves when every enabled version is ready or failed. */
  readonly loaded: Promise<void>;
  #loaded: LoadedConfig;
  readonly #metrics: ServerMetrics;
  readonly #logger: Logger;
  readonly #random: () => number;
  readonly #options: RerankEngineOptions;
  readonly #versions = new Map<string, VersionRuntime>();
  /** Requests accepted and not yet answered: shutdown waits for them. */
  readonly #inFlight = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;

  private constructor(options: RerankEngineOptions) {
    this.#options = options;
    this.#loaded = options.loaded;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#random = options.random ?? Math.random;
    const loads: Promise<void>[] = [];
    for (const [name, config] of Object.entries(options.loaded.config.versions)) {
      const runtime: VersionRuntime = {
        name,
        config,
        state: config.enabled ? 'loading' : 'disabled',
        device: config.device,
        inputs: [],
        synthetic: false,
        takesTypeIds: false,
      };
      this.#versions.set(name, runtime);
      this.#publishState(runtime, undefined);
      if (config.enabled) loads.push(this.#load(runtime));
    }
    this.loaded = Promise.all(loads).then(() => undefined);
  }

  /** Loads and warms up every enabled version; resolves when each is ready or failed. */
  static async create(options: RerankEngineOptions): Promise<RerankEngine> {
    const engine = RerankEngine.start(options);
    await engine.loaded;
    return engine;
  }

  /** Starts loading and returns at once: `isReady()` turns true when loading is done (see `loaded`). */
  static start(options: RerankEngineOptions): RerankEngine {
    return new RerankEngine(options);
  }

  /** The config in force. */
  get config(): RerankConfig {
    return this.#loaded.config;
  }

  get configHash(): string {
    return this.#loaded.hash;
  }

  rerank(request: RerankRequest): Promise<RerankOutcome> {
    if (this.#closing) return Promise.reject(new RerankError('unavailable', 'the server is shutting down'));
    const answer = this.#rerank(request);
    this.#inFlight.add(answer);
    const forget = () => this.#inFlight.delete(answer);
    answer.then(forget, forget);
    return answer;
  }

  async #rerank(request: RerankRequest): Promise<RerankOutcome> {
    const config = this.#loaded.config;
    const { maxDocuments } = config.serving;
    if (typeof request.query !== 'string') throw new RerankError('validation', 'query: must be a string', { field: 'query' });
    if (!Array.isArray(request.documents) || request.documents.length === 0) {
      throw new RerankError('validation', 'documents: must hold at least one document', { field: 'documents' });
    }
    if (request.documents.length > maxDocuments) {
      throw new RerankError('payload_too_large', `documents: ${request.documents.length} documents, more than the limit of ${maxDocuments}`, {
        field: 'documents',
      });
    }
    if (request.signal?.aborted) throw cancelled();

    const choice = chooseVersion({
      versions: [...this.#versions.values()].map((v) => ({ name: v.name, enabled: v.config.enabled, ready: v.state === 'ready', weight: v.config.weight })),
      defaultVersion: config.defaultVersion,
      pathVersion: request.pathVersion,
      headerVersion: request.headerVersion,
      random: this.#random,
    });
    const runtime = this.#versions.get(choice.version);
    if (!runtime || runtime.state !== 'ready' || !runtime.tokenizer || !runtime.queue) {
      const why = runtime ? (runtime.error ?? runtime.state) : 'not configured';
      throw new RerankError('unavailable', `version ${choice.version} cannot serve (${why})`);
    }
    const { tokenizer, queue } = runtime;
    // Refuse before tokenizing when the queue is already too full: the work would be thrown away.
    queue.checkRoom(request.documents.length);

    const tokenizeStarted = performance.now();
    const pairs = await tokenizer.encodePairs(request.query, request.documents, {
      maxLength: this.#maxLength(runtime),
      truncate: request.truncate ?? true,
      withTypeIds: runtime.takesTypeIds,
    });
    const tokenizeSeconds = (performance.now() - tokenizeStarted) / 1000;
    this.#metrics.tokenizationDuration.observe({ version: runtime.name }, tokenizeSeconds);
    if (request.signal?.aborted) throw cancelled();

    const scored = await queue.score(pairs, request.signal);
    const logits = Array.from(scored.logits);
    const outcome: RerankOutcome = {
      version: runtime.name,
      logits,
      scores: logits.map(sigmoid),
      tokens: countTokens(pairs),
      timings: { tokenizeSeconds, queueSeconds: scored.queueSeconds, inferenceSeconds: scored.inferenceSeconds },
    };
    if (choice.fallbackFrom !== undefined) outcome.fallbackFrom = choice.fallbackFrom;
    return outcome;
  }

  info(): EngineInfo {
    const { config, hash } = this.#loaded;
    const serving = config.serving;
    return {
      defaultVersion: config.defaultVersion,
      configHash: hash,
      versions: [...this.#versions.values()].map((runtime) => this.#versionInfo(runtime)),
      limits: {
        maxLength: serving.maxLength,
        maxBatchTokens: serving.maxBatchTokens,
        maxBatchSize: serving.maxBatchSize,
        maxQueuedPairs: serving.maxQueuedPairs,
        maxDocuments: serving.maxDocuments,
        maxBodyBytes: serving.maxBodyBytes,
      },
    };
  }

  /** Nothing is still loading, and the default version serves. */
  isReady(): boolean {
    if (this.#closing) return false;
    for (const runtime of this.#versions.values()) if (runtime.state === 'loading') return false;
    return this.#versions.get(this.#loaded.config.defaultVersion)?.state === 'ready';
  }

  /** Refuses new requests, finishes the accepted ones, then releases every session. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.loaded;
      await Promise.allSettled([...this.#inFlight]);
      await Promise.all([...this.#versions.values()].map((runtime) => this.#unload(runtime)));
    })();
    return this.#closing;
  }

  #maxLength(runtime: VersionRuntime): number {
    const configured = this.#loaded.config.serving.maxLength;
    return runtime.modelMaxTokens === undefined ? configured : Math.min(configured, runtime.modelMaxTokens);
  }

  #limits(): QueueLimits {
    const serving = this.#loaded.config.serving;
    return {
      maxBatchTokens: serving.maxBatchTokens,
      maxBatchSize: serving.maxBatchSize,
      maxQueuedPairs: serving.maxQueuedPairs,
      maxPaddingRatio: this.#options.maxPaddingRatio ?? DEFAULT_MAX_PADDING_RATIO,
    };
  }

  async #load(runtime: VersionRuntime): Promise<void> {
    const logger = this.#logger.child({ version: runtime.name });
    const started = performance.now();
    try {
      const files = await modelFiles(runtime.config.model);
      const dirConfig = await readModelDirConfig(files.config);
      runtime.synthetic = dirConfig.synthetic;
      runtime.modelMaxTokens = dirConfig.maxTokens;
      const tokenizer = PairTokenizer.load({ tokenizerPath: files.tokenizer, padId: dirConfig.padTokenId });
      const model = await loadOnnxModel({
        modelPath: files.model,
        device: runtime.config.device,
        padId: tokenizer.padId,
        logger,
        thread: this.#options.modelThread ?? 'worker',
        intraOpNumThreads: this.#options.intraOpNumThreads,
        onCrash: (error) => {
          logger.error({ err: error }, 'model worker died: version failed');
          runtime.error = firstLine(error);
          this.#setState(runtime, 'failed');
        },
      });
      runtime.model = model;
      runtime.device = model.description.device;
      if (model.description.fallbackReason !== undefined) runtime.deviceFallback = model.description.fallbackReason;
      runtime.inputs = model.description.inputs;
      runtime.takesTypeIds = model.description.takesTypeIds;

      // Warm-up: the first run pays for ORT's allocations and kernel choices; a client should not.
      const maxLength = this.#maxLength(runtime);
      const warm = await tokenizer.encodePair(WARM_UP.query, WARM_UP.document, { maxLength, withTypeIds: runtime.takesTypeIds });
      await model.run([warm]);
      if (this.#loaded.config.serving.warmup === 'full') await model.run(fullBudgetBatch(warm, maxLength, this.#limits()));

      runtime.tokenizer = tokenizer;
      runtime.queue = new BatchQueue({
        version: runtime.name,
        model,
        limits: () => this.#limits(),
        metrics: this.#metrics,
        logger,
      });
      if (this.#closing) return;
      this.#setState(runtime, 'ready');
      logger.info(
        {
          model: files.model,
          device: runtime.device,
          inputs: runtime.inputs,
          logits: model.description.logits,
          maxLength,
          synthetic: runtime.synthetic,
          seconds: round((performance.now() - started) / 1000),
        },
        'version ready',
      );
      if (runtime.modelMaxTokens !== undefined && runtime.modelMaxTokens < this.#loaded.config.serving.maxLength) {
        logger.warn({ maxLength: this.#loaded.config.serving.maxLength, modelMaxTokens: runtime.modelMaxTokens }, 'maxLength is over what the model takes: pairs are cut to the model limit');
      }
    } catch (error) {
      runtime.error = firstLine(error);
      logger.error({ model: runtime.config.model, err: error }, 'version failed to load');
      if (runtime.model) await runtime.model.close().catch(() => undefined);
      runtime.model = undefined;
      this.#setState(runtime, 'failed');
    }
  }

  async #unload(runtime: VersionRuntime): Promise<void> {
    if (runtime.state === 'ready') this.#setState(runtime, 'draining');
    await runtime.queue?.close();
    await runtime.model?.close();
    runtime.queue = undefined;
    runtime.model = undefined;
  }

  #setState(runtime: VersionRuntime, state: VersionState): void {
    const previous = { state: runtime.state, device: runtime.device };
    runtime.state = state;
    this.#publishState(runtime, previous);
  }

  #publishState(runtime: VersionRuntime, previous: { state: VersionState; device: Device } | undefined): void {
    const gauge = this.#metrics.versionInfo;
    if (previous) gauge.remove({ version: runtime.name, device: previous.device, state: previous.state });
    gauge.set({ version: runtime.name, device: runtime.device, state: runtime.state }, 1);
  }

  #versionInfo(runtime: VersionRuntime): VersionInfo {
    const info: VersionInfo = {
      name: runtime.name,
      state: runtime.state,
      enabled: runtime.config.enabled,
      description: runtime.config.description,
      device: runtime.device,
      weight: runtime.config.weight,
      modelPath: runtime.config.model,
      inputs: runtime.inputs,
      synthetic: runtime.synthetic,
    };
    if (runtime.error !== undefined) info.error = runtime.error;
    if (runtime.state === 'ready') info.maxLength = this.#maxLength(runtime);
    if (runtime.deviceFallback !== undefined) info.deviceFallback = runtime.deviceFallback;
    return info;
  }
}

/**
 * The files of a model directory: model.onnx (or onnx/model.onnx, as Hugging Face repos lay it out),
 * tokenizer.json and config.json. `model` may also name the .onnx file itself.
 */
async function modelFiles(model: string): Promise<{ model: string; tokenizer: string; config: string }> {
  const dir = model.endsWith('.onnx') ? path.dirname(model) : model;
  const candidates = model.endsWith('.onnx') ? [model] : [path.join(dir, 'model.onnx'), path.join(dir, 'onnx', 'model.onnx')];
  let modelPath: string | undefined;
  for (const candidate of candidates) {
    if (await exists(candidate)) {
      modelPath = candidate;
      break;
    }
  }
  if (modelPath === undefined) throw new Error(`no model.onnx in ${dir}`);
  const tokenizer = path.join(dir, 'tokenizer.json');
  if (!(await exists(tokenizer))) throw new Error(`no tokenizer.json in ${dir}`);
  return { model: modelPath, tokenizer, config: path.join(dir, 'config.json') };
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

function sigmoid(logit: number): number {
  return 1 / (1 + Math.exp(-logit));
}

function countTokens(pairs: readonly EncodedPair[]): number {
  let tokens = 0;
  for (const pair of pairs) tokens += pair.length;
  return tokens;
}

function cancelled(): RerankError {
  return new RerankError('cancelled', 'the caller went away before its documents were scored');
}

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}

/** The largest batch the limits allow: as many pairs of `maxLength` tokens as fit the token budget. */
function fullBudgetBatch(sample: EncodedPair, maxLength: number, limits: QueueLimits): EncodedPair[] {
  const width = Math.min(maxLength, limits.maxBatchTokens);
  const count = Math.max(1, Math.min(limits.maxBatchSize, Math.floor(limits.maxBatchTokens / width)));
  const ids = new Int32Array(width);
  for (let i = 0; i < width; i += 1) ids[i] = sample.ids[i % sample.length] as number;
  const pair: EncodedPair = sample.typeIds ? { ids, typeIds: new Uint8Array(width), length: width } : { ids, length: width };
  return Array.from({ length: count }, () => pair);
}
