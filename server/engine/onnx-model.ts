import { firstLine } from '../errors.ts';
import { Worker } from 'node:worker_threads';
import type ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import type { Logger } from '../logger.ts';
import { flattenBatch, makeFinite, type FlatBatch } from './batch-inputs.ts';
import { createGraphHead, type GraphForm, type GraphHead, type GraphHeadSpec } from './graph-head.ts';
import { readOnnxMetadata } from './onnx-metadata.ts';
import { createOptimizedSession, type OptimizedModel } from './optimized-model.ts';
import type { EncodedPair } from './pair-tokenizer.ts';
import { cpuRunTokensSetting, fitsRun, planRuns, sliceFlatBatch } from './run-split.ts';

export { fillInputs, flattenBatch, InputBuffers, makeFinite, type FlatBatch } from './batch-inputs.ts';
export type { LogitsLayout } from './graph-head.ts';

/**
 * The ONNX backend: one onnxruntime session scoring padded batches of (query, document) pairs.
 *
 * `session.run` in onnxruntime-node is synchronous on the calling thread (the binding only defers it with
 * setImmediate), and a batch can take seconds on CPU. So by default the session lives in a worker thread
 * (`WorkerThreadModel`) and the event loop stays free for HTTP, tokenization and packing while a batch
 * runs; `MainThreadModel` runs it on the main thread instead. Each runs one `OnnxSession`, the ORT
 * session itself.
 */

export type Device = 'cpu' | 'cuda';

export interface BatchRunResult {
  /** One finite logit per pair, in the order given. */
  logits: Float32Array;
  /** Time inside `session.run`. */
  seconds: number;
  /** Logits that came out NaN or ±Infinity and were replaced by finite values. */
  nonFinite: number;
}

/** What the batch queue needs from a backend; the ONNX model and the tests' fakes implement it. */
export interface BatchScorer {
  /** Scores the pairs as one batch. The queue never overlaps calls; the ONNX models also serialize them. */
  run(pairs: readonly EncodedPair[]): Promise<BatchRunResult>;
}

/** The graph as its scoring head found it (inputs, output, form), and where it runs. */
export interface ModelDescription extends GraphForm {
  /** Whether the session read a saved optimised graph, saved one, or neither (and why). */
  optimized?: OptimizedModel;
  /** The execution provider actually in use. */
  device: Device;
  /** Why `cuda` was asked for and CPU is in use. */
  fallbackReason?: string;
}

export interface OnnxModelOptions {
  modelPath: string;
  device: Device;
  /** What a CPU session loads when `cuda` is wanted and unavailable (a CPU export); `modelPath` when absent. */
  cpuModelPath?: string;
  /** Token id that fills padded positions. */
  padId: number;
  /** How the graph is fed and read: a cross-encoder unless set. */
  head?: GraphHeadSpec;
  /** ORT's defaults (one intra-op thread per core) unless set. */
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  /**
   * Padded tokens of one onnxruntime run on CPU: a larger batch runs in slices of its pairs (run-split.ts).
   * Default: RERANK_CPU_RUN_TOKENS, else CPU_RUN_TOKENS; `Infinity`: one run per batch. A CUDA session runs a batch whole.
   */
  cpuRunTokens?: number;
}

/** A loaded model: a `BatchScorer` that says what it is and can be released. */
export interface PairScorer extends BatchScorer {
  readonly description: ModelDescription;
  close(): Promise<void>;
}

/** Records on a loaded session whether its optimised graph was saved or reused (see optimized-model.ts). */
function withOptimized(session: OnnxSession, optimized: OptimizedModel): OnnxSession {
  session.description.optimized = optimized;
  return session;
}

/** One ORT session, run on the thread that holds it: a model worker's, or the main one. Concurrent runs are serialized. */
export class OnnxSession {
  readonly description: ModelDescription;
  readonly #session: InferenceSession;
  readonly #head: GraphHead;
  /** Padded tokens of one run; a larger batch runs in slices. Infinite on CUDA. */
  readonly #runTokens: number;
  /** The head's input buffers are reused, so a run waits for the one before it. */
  #last: Promise<unknown> = Promise.resolve();

  private constructor(session: InferenceSession, head: GraphHead, description: ModelDescription, runTokens: number) {
    this.#session = session;
    this.#head = head;
    this.description = description;
    this.#runTokens = runTokens;
  }

  static async load(options: OnnxModelOptions): Promise<OnnxSession> {
    const base: InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
    if (options.intraOpNumThreads !== undefined) base.intraOpNumThreads = options.intraOpNumThreads;
    if (options.interOpNumThreads !== undefined) base.interOpNumThreads = options.interOpNumThreads;
    let fallbackReason: string | undefined;
    if (options.device === 'cuda') {
      try {
        const { session, optimized } = await createOptimizedSession(options.modelPath, { ...base, executionProviders: ['cuda', 'cpu'] }, 'cuda');
        return withOptimized(await OnnxSession.#wrap(session, options.modelPath, 'cuda', undefined, options), optimized);
      } catch (error) {
        if (error instanceof GraphMismatch) throw error.cause;
        fallbackReason = `CUDA session failed: ${firstLine(error)}`;
      }
    }
    const modelPath = fallbackReason === undefined ? options.modelPath : (options.cpuModelPath ?? options.modelPath);
    let session: InferenceSession;
    let optimized: OptimizedModel;
    try {
      ({ session, optimized } = await createOptimizedSession(modelPath, { ...base, executionProviders: ['cpu'] }, 'cpu'));
    } catch (error) {
      throw new Error(`load ONNX model ${modelPath}: ${firstLine(error)}`, { cause: error });
    }
    try {
      return withOptimized(await OnnxSession.#wrap(session, modelPath, 'cpu', fallbackReason, options), optimized);
    } catch (error) {
      throw error instanceof GraphMismatch ? error.cause : error;
    }
  }

  /** The session with its head; a graph the head cannot read is released and a GraphMismatch (not a CUDA failure). */
  static async #wrap(session: InferenceSession, modelPath: string, device: Device, fallbackReason: string | undefined, options: OnnxModelOptions): Promise<OnnxSession> {
    try {
      const spec = options.head ?? { type: 'cross-encoder' };
      const metadata = spec.type === 'cross-encoder' ? {} : await readOnnxMetadata(modelPath);
      const head = createGraphHead(session, spec, { padId: options.padId, metadata });
      const description: ModelDescription = { ...head.form, device };
      if (fallbackReason !== undefined) description.fallbackReason = fallbackReason;
      const runTokens = device === 'cpu' ? (options.cpuRunTokens ?? cpuRunTokensSetting()) : Infinity;
      return new OnnxSession(session, head, description, runTokens);
    } catch (error) {
      await session.release();
      throw new GraphMismatch(error);
    }
  }

  runFlat(batch: FlatBatch): Promise<BatchRunResult> {
    const run = this.#last.then(() => this.#runNow(batch));
    this.#last = run.catch(() => undefined);
    return run;
  }

  /** The batch as one run, or, past the run size, as runs of slices of its pairs, their logits put back in batch order. */
  async #runNow(batch: FlatBatch): Promise<BatchRunResult> {
    if (batch.count < 2 || fitsRun(batch.count, batch.width, this.#runTokens)) return this.#runOne(batch);
    const logits = new Float32Array(batch.count);
    let seconds = 0;
    let nonFinite = 0;
    for (const indexes of planRuns(batch.lengths, this.#runTokens)) {
      const part = await this.#runOne(sliceFlatBatch(batch, indexes));
      indexes.forEach((index, i) => (logits[index] = part.logits[i] as number));
      seconds += part.seconds;
      nonFinite += part.nonFinite;
    }
    return { logits, seconds, nonFinite };
  }

  async #runOne(batch: FlatBatch): Promise<BatchRunResult> {
    const { outputName } = this.description;
    const feeds = this.#head.feeds(batch);
    const started = performance.now();
    const outputs = await this.#session.run(feeds, [outputName]);
    const seconds = (performance.now() - started) / 1000;
    const output = outputs[outputName] as ort.Tensor;
    try {
      const logits = this.#head.logits(output, batch);
      return { logits, seconds, nonFinite: makeFinite(logits) };
    } finally {
      output.dispose();
    }
  }

  run(pairs: readonly EncodedPair[]): Promise<BatchRunResult> {
    return this.runFlat(flattenBatch(pairs, this.description.takesTypeIds));
  }

  release(): Promise<void> {
    return this.#session.release();
  }
}

/** The graph loaded but is not what the head reads: no use retrying it on another provider. */
class GraphMismatch extends Error {
  declare readonly cause: unknown;
  constructor(cause: unknown) {
    super(firstLine(cause), { cause });
  }
}

// Messages between WorkerThreadModel and onnx-worker.ts.
export type WorkerRequest = { type: 'run'; id: number; batch: FlatBatch } | { type: 'close' };
export type WorkerReply =
  | { type: 'loaded'; description: ModelDescription }
  | { type: 'load-failed'; message: string }
  | { type: 'result'; id: number; result: BatchRunResult }
  | { type: 'error'; id: number; message: string };

export interface LoadOnnxModelOptions extends OnnxModelOptions {
  logger: Logger;
  /** `worker` (default): the session runs in its own thread. `main`: on the calling thread, blocking it while a batch runs. */
  thread?: 'worker' | 'main';
  /** Called if the worker thread dies other than by `close()`; every later run then fails. */
  onCrash?: (error: Error) => void;
}

/** Load a model; with `cuda` wanted and unavailable, it logs why and serves on CPU (see `description.device`). */
export async function loadOnnxModel(options: LoadOnnxModelOptions): Promise<PairScorer> {
  const model = options.thread === 'main' ? await MainThreadModel.load(options) : await WorkerThreadModel.load(options, options.onCrash);
  const { description } = model;
  if (description.fallbackReason !== undefined) {
    options.logger.warn({ model: options.modelPath, reason: description.fallbackReason }, 'cuda unavailable: serving on CPU');
  }
  return model;
}

/** An ONNX session on the main thread: each batch blocks the event loop while it runs. */
class MainThreadModel implements PairScorer {
  readonly #session: OnnxSession;
  constructor(session: OnnxSession) {
    this.#session = session;
  }
  static async load(options: OnnxModelOptions): Promise<MainThreadModel> {
    return new MainThreadModel(await OnnxSession.load(options));
  }
  get description(): ModelDescription {
    return this.#session.description;
  }
  run(pairs: readonly EncodedPair[]): Promise<BatchRunResult> {
    return this.#session.run(pairs);
  }
  close(): Promise<void> {
    return this.#session.release();
  }
}

interface PendingRun {
  resolve: (result: BatchRunResult) => void;
  reject: (error: Error) => void;
}

/** An ONNX session in a worker thread of its own (onnx-worker.ts). */
export class WorkerThreadModel implements PairScorer {
  readonly description: ModelDescription;
  readonly #worker: Worker;
  readonly #pending = new Map<number, PendingRun>();
  #nextId = 0;
  #dead: Error | undefined;
  #exited: Promise<void>;
  readonly #onCrash: ((error: Error) => void) | undefined;

  private constructor(worker: Worker, description: ModelDescription, onCrash: ((error: Error) => void) | undefined) {
    this.#worker = worker;
    this.description = description;
    this.#onCrash = onCrash;
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (reply: WorkerReply) => this.#onReply(reply));
    worker.on('error', (error) => this.#fail(new Error(`model worker crashed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => this.#fail(new Error(`model worker exited (code ${code})`)));
  }

  static async load(options: OnnxModelOptions, onCrash?: (error: Error) => void): Promise<WorkerThreadModel> {
    const worker = new Worker(new URL(import.meta.url.endsWith('.ts') ? './onnx-worker.ts' : './onnx-worker.js', import.meta.url), {
      workerData: {
        modelPath: options.modelPath,
        device: options.device,
        padId: options.padId,
        ...(options.cpuModelPath !== undefined ? { cpuModelPath: options.cpuModelPath } : {}),
        ...(options.head !== undefined ? { head: options.head } : {}),
        intraOpNumThreads: options.intraOpNumThreads,
        interOpNumThreads: options.interOpNumThreads,
        ...(options.cpuRunTokens !== undefined ? { cpuRunTokens: options.cpuRunTokens } : {}),
      } satisfies OnnxModelOptions,
    });
    const description = await new Promise<ModelDescription>((resolve, reject) => {
      const onMessage = (reply: WorkerReply) => {
        cleanup();
        if (reply.type === 'loaded') resolve(reply.description);
        else reject(new Error(reply.type === 'load-failed' ? reply.message : `unexpected ${reply.type} from model worker`));
      };
      const onError = (error: Error) => {
        cleanup();
        reject(new Error(`load ONNX model ${options.modelPath}: worker failed: ${error.message}`, { cause: error }));
      };
      const onExit = (code: number) => {
        cleanup();
        reject(new Error(`load ONNX model ${options.modelPath}: worker exited (code ${code})`));
      };
      const cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    }).catch(async (error: unknown) => {
      await worker.terminate();
      throw error;
    });
    return new WorkerThreadModel(worker, description, onCrash);
  }

  run(pairs: readonly EncodedPair[]): Promise<BatchRunResult> {
    if (this.#dead) return Promise.reject(this.#dead);
    const batch = flattenBatch(pairs, this.description.takesTypeIds);
    const id = this.#nextId++;
    const transfer: ArrayBuffer[] = [batch.lengths.buffer as ArrayBuffer, batch.ids.buffer as ArrayBuffer];
    if (batch.typeIds) transfer.push(batch.typeIds.buffer as ArrayBuffer);
    return new Promise<BatchRunResult>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ type: 'run', id, batch } satisfies WorkerRequest, transfer);
    });
  }

  async close(): Promise<void> {
    if (!this.#dead) {
      this.#dead = new Error('model closed');
      this.#worker.postMessage({ type: 'close' } satisfies WorkerRequest);
      const timer = setTimeout(() => void this.#worker.terminate(), 5000);
      await this.#exited;
      clearTimeout(timer);
    }
    await this.#exited;
  }

  #onReply(reply: WorkerReply): void {
    if (reply.type !== 'result' && reply.type !== 'error') return;
    const pending = this.#pending.get(reply.id);
    if (!pending) return;
    this.#pending.delete(reply.id);
    if (reply.type === 'result') pending.resolve(reply.result);
    else pending.reject(new Error(reply.message));
  }

  #fail(error: Error): void {
    if (this.#dead === undefined) {
      this.#dead = error;
      this.#onCrash?.(error);
    }
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}

