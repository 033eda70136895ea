import type { RerankConfig } from '../config/schema.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { BatchQueue, type QueueLimits } from './batch-queue.ts';
import { availableVariants, chooseVariantFile, modelFiles, type ModelChoice } from './model-files.ts';
import { probeCpuFeatures, type CpuFeatures } from './cpu-features.ts';
import { chooseVariant, describeVariant, type VariantChoice, type VariantSetting } from './variant-choice.ts';
import { firstLine } from '../errors.ts';
import { type Device, type LoadOnnxModelOptions, type ModelDescription, type PairScorer } from './onnx-model.ts';
import type { HeadConfig } from '../config/head.ts';
import { readModelDirConfig, type EncodedPair, type ModelDirConfig } from './pair-tokenizer.ts';
import type { PairEncoder, PromptTokenizer } from './prompt-encoder.ts';
import { headForVersion, openScoringHead, readModelHints, type HeadInfo, type ScoringHead } from './scoring-head.ts';
import type { TokenizerCache } from './tokenizer-cache.ts';

/** What a session is loaded from: two runtimes with the same spec are interchangeable. */
export interface RuntimeSpec {
  model: string;
  device: Device;
  /** Load the fp16 export when there is one (useFp16, on CUDA). */
  fp16: boolean;
  /** Which export to load (absent: `auto`). */
  variant?: VariantSetting;
  /** The version's configured head (absent: the catalogue's for its model, else a cross-encoder). */
  head?: HeadConfig;
}

export function sameSpec(a: RuntimeSpec, b: RuntimeSpec): boolean {
  return a.model === b.model && a.device === b.device && a.fp16 === b.fp16 && (a.variant ?? 'auto') === (b.variant ?? 'auto') && JSON.stringify(a.head) === JSON.stringify(b.head);
}

export type RuntimeState = 'loading' | 'ready' | 'failed' | 'draining' | 'closed';

/** What the runtimes of one engine share. */
export interface RuntimeContext {
  /** `loadOnnxModel` unless a test stands in for it. */
  loadModel: (options: LoadOnnxModelOptions) => Promise<PairScorer>;
  modelThread: 'worker' | 'main';
  intraOpNumThreads: number | undefined;
  /** The CPU's int8 instructions, for `variant: auto` (probeCpuFeatures unless a test stands in for it). */
  cpuFeatures?: () => CpuFeatures;
  /** Parsed tokenizers, shared by runtimes of the same file. */
  tokenizers: TokenizerCache;
  /** Parsed tokenizers of LLM rerankers' prompts (instances without truncation), shared the same way. */
  promptTokenizers: TokenizerCache<PromptTokenizer>;
  /** Sessions loaded and not yet closed, of every runtime. */
  sessions: Set<PairScorer>;
  /** The config in force (maxLength, warm-up), read when a load starts. */
  config: () => RerankConfig;
  /** Batch limits, read by the queue before every batch. */
  limits: () => QueueLimits;
  metrics: ServerMetrics;
  logger: Logger;
  /** A loaded session's worker died: the runtime is `failed` now. */
  onCrash: (runtime: Runtime) => void;
}

const WARM_UP = { query: 'warm-up query', document: 'a short warm-up document' };

/**
 * One model of a version: tokenizer, ONNX session and batch queue. `loading` → `ready` or `failed`
 * (`load`); a ready one turns `failed` if its worker dies; `close` drains it (`draining`) and frees it
 * (`closed`). A request counts itself in flight on the runtime it picked (`enter`/`leave`), so that a
 * runtime is freed only once nothing runs on it.
 */
export class Runtime {
  readonly version: string;
  readonly spec: RuntimeSpec;
  readonly #context: RuntimeContext;
  #state: RuntimeState = 'loading';
  #error: string | undefined;
  #dirConfig: ModelDirConfig | undefined;
  #description: ModelDescription | undefined;
  #loadedFile: ModelChoice | undefined;
  #variant: VariantChoice | undefined;
  #head: ScoringHead | undefined;
  #model: PairScorer | undefined;
  #queue: BatchQueue | undefined;
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];
  #closed: Promise<void> | undefined;

  constructor(version: string, spec: RuntimeSpec, context: RuntimeContext) {
    this.version = version;
    this.spec = spec;
    this.#context = context;
  }

  get state(): RuntimeState {
    return this.#state;
  }

  /** Why it failed. */
  get error(): string | undefined {
    return this.#error;
  }

  /** The execution provider in use (`cpu` when `cuda` was asked for and is unavailable). */
  get device(): Device {
    return this.#description?.device ?? this.spec.device;
  }

  /** Why `cuda` was asked for and the session runs on CPU. */
  get deviceFallback(): string | undefined {
    return this.#description?.fallbackReason;
  }

  /** The graph the session runs (`model_cpu/`'s on CPU, the fp16 export with useFp16 on CUDA, when there are). */
  get loadedFile(): ModelChoice | undefined {
    return this.#loadedFile;
  }

  /** The export its session runs, and why that one. */
  get variant(): VariantChoice | undefined {
    return this.#variant;
  }

  /** The graph's input names. */
  get inputs(): string[] {
    return this.#description?.inputs ?? [];
  }

  /** The graph takes `token_type_ids`. */
  get takesTypeIds(): boolean {
    return this.#description?.takesTypeIds ?? false;
  }

  /** Its scoring head, with the form of the graph once loaded. */
  get head(): HeadInfo | undefined {
    const head = this.#head?.describe();
    if (head && this.#description?.form !== undefined) head.form = this.#description.form;
    return head;
  }

  /** A generated stand-in model whose scores carry no meaning. */
  get synthetic(): boolean {
    return this.#dirConfig?.synthetic ?? false;
  }

  /** Requests that picked it and are not answered yet (tokenizing, queued or running). */
  get inFlight(): number {
    return this.#inFlight;
  }

  get queuedPairs(): number {
    return this.#queue?.pendingPairs ?? 0;
  }

  /** Tokens per pair: the configured maxLength, capped by the model's position table. */
  maxLength(config: RerankConfig): number {
    const configured = config.serving.maxLength;
    const modelMax = this.#dirConfig?.maxTokens;
    return modelMax === undefined ? configured : Math.min(configured, modelMax);
  }

  /** What a request scores with: its head's encoder and the queue. Only a ready runtime has them. */
  parts(): { encoder: PairEncoder; queue: BatchQueue } {
    const encoder = this.#head?.encoder;
    const queue = this.#queue;
    if (this.#state !== 'ready' || !encoder || !queue) throw new Error(`the runtime of version ${this.version} is ${this.#state}, not ready`);
    return { encoder, queue };
  }

  /** A request picked it: counted in flight until `leave()`. */
  enter(): void {
    this.#inFlight += 1;
  }

  leave(): void {
    this.#inFlight -= 1;
    if (this.#inFlight === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /** Resolves once no request is in flight on it. */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Loads tokenizer and session and warms the session up. Never throws: it ends `ready`, or `failed` with
   * `error` set and what it had taken given back.
   */
  async load(): Promise<void> {
    const context = this.#context;
    const logger = context.logger.child({ version: this.version });
    const started = performance.now();
    const config = context.config();
    try {
      const files = await modelFiles(this.spec.model);
      const dirConfig = await readModelDirConfig(files.config);
      this.#dirConfig = dirConfig;
      const hints = await readModelHints(files.config);
      const { head: resolved, source } = await headForVersion(this.spec.head, files.dir, hints);
      // Held from here, so a failure below gives it back.
      const head = await openScoringHead({
        head: resolved,
        source,
        tokenizerPath: files.tokenizer,
        padId: dirConfig.padTokenId,
        caches: { pairs: context.tokenizers, prompts: context.promptTokenizers },
        hints,
      });
      this.#head = head;
      const setting = this.spec.variant ?? 'auto';
      const available = availableVariants(files);
      const cpu = (context.cpuFeatures ?? probeCpuFeatures)();
      const wanted = chooseVariant({ setting, device: this.spec.device, available, cpu });
      // A CUDA session that falls back to CPU loads what would be chosen there (fp16 is a GPU export).
      const onCpu = this.spec.device === 'cpu' ? wanted : chooseVariant({ setting: setting === 'fp16' ? 'auto' : setting, device: 'cpu', available, cpu });
      const choice = chooseVariantFile(files, { device: this.spec.device, variant: wanted.variant });
      const cpuChoice = chooseVariantFile(files, { device: 'cpu', variant: onCpu.variant });
      const model = await context.loadModel({
        modelPath: choice.model,
        cpuModelPath: cpuChoice.model,
        device: this.spec.device,
        padId: head.encoder.padId,
        head: head.graph,
        logger,
        thread: context.modelThread,
        intraOpNumThreads: context.intraOpNumThreads,
        onCrash: (error) => {
          logger.error({ err: error }, 'model worker died: version failed');
          this.#error = firstLine(error);
          this.#state = 'failed';
          context.onCrash(this);
        },
      });
      context.sessions.add(model);
      this.#model = model;
      this.#description = model.description;
      this.#loadedFile = model.description.device === this.spec.device ? choice : cpuChoice;
      this.#variant = model.description.device === this.spec.device ? wanted : onCpu;

      // Warm-up: the first run pays for ORT's allocations and kernel choices; a client should not.
      const maxLength = this.maxLength(config);
      const [warm] = (await head.encoder.encodePairs(WARM_UP.query, [WARM_UP.document], { maxLength, withTypeIds: this.takesTypeIds })) as [EncodedPair];
      await model.run([warm]);
      if (config.serving.warmup === 'full') await model.run(fullBudgetBatch(warm, maxLength, context.limits()));

      this.#queue = new BatchQueue({ version: this.version, model, limits: context.limits, metrics: context.metrics, logger });
      this.#state = 'ready';
      logger.info(
        {
          model: this.#loadedFile.model,
          device: this.device,
          variant: describeVariant(this.#variant),
          optimizedGraph: model.description.optimized,
          inputs: this.inputs,
          head: this.head,
          logits: model.description.logits,
          maxLength,
          synthetic: this.synthetic,
          seconds: round((performance.now() - started) / 1000),
        },
        'version ready',
      );
      if (model.description.form === 'full-vocabulary') {
        logger.warn(
          { model: this.#loadedFile.model },
          'the graph outputs logits for the whole vocabulary at every position (batch x seq x vocab floats per batch): memory-heavy; ' +
            '`rerank-server models prepare DIR` cuts it to the yes/no logits of the last position',
        );
      }
      if (dirConfig.maxTokens !== undefined && dirConfig.maxTokens < config.serving.maxLength) {
        logger.warn({ maxLength: config.serving.maxLength, modelMaxTokens: dirConfig.maxTokens }, 'maxLength is over what the model takes: pairs are cut to the model limit');
      }
    } catch (error) {
      this.#error = firstLine(error);
      logger.error({ model: this.spec.model, device: this.spec.device, err: error }, 'version failed to load');
      await this.#free();
      this.#state = 'failed';
    }
  }

  /**
   * Takes it out of service (`draining`, unless it failed), waits for the requests in flight on it, then
   * frees its queue, tokenizer and session (`closed`). Runs once: later calls share the first.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#state !== 'failed') this.#state = 'draining';
      await this.idle();
      await this.#free();
      this.#state = 'closed';
    })();
    return this.#closed;
  }

  /** Gives back what it holds; what a failed load took, or all of it on close. */
  async #free(): Promise<void> {
    await this.#queue?.close();
    this.#queue = undefined;
    const head = this.#head;
    const model = this.#model;
    this.#head = undefined;
    this.#model = undefined;
    head?.release();
    if (model) {
      await model.close().catch((error: unknown) => this.#context.logger.warn({ version: this.version, err: error }, 'closing a session failed'));
      this.#context.sessions.delete(model);
    }
  }
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

function round(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
