import { firstLine } from '../errors.ts';
import { endianness } from 'node:os';
import { Worker } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import type { Logger } from '../logger.ts';
import type { EncodedPair } from './pair-tokenizer.ts';

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
/** `batch1`: logits are `[batch, 1]`; `batch`: `[batch]`. */
export type LogitsLayout = 'batch1' | 'batch';

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

export interface ModelDescription {
  /** Graph input names. */
  inputs: string[];
  /** The graph takes `token_type_ids` (BERT); XLM-R style graphs do not. */
  takesTypeIds: boolean;
  outputName: string;
  logits: LogitsLayout;
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
  /** ORT's defaults (one intra-op thread per core) unless set. */
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
}

/** A loaded model: a `BatchScorer` that says what it is and can be released. */
export interface PairScorer extends BatchScorer {
  readonly description: ModelDescription;
  close(): Promise<void>;
}

/** Pairs of one batch, concatenated: what crosses to the worker (one copy, transferable). */
export interface FlatBatch {
  count: number;
  /** Longest pair: the padded width. */
  width: number;
  lengths: Int32Array;
  ids: Int32Array;
  typeIds?: Uint8Array;
}

export function flattenBatch(pairs: readonly EncodedPair[], withTypeIds: boolean): FlatBatch {
  const count = pairs.length;
  const lengths = new Int32Array(count);
  let total = 0;
  let width = 0;
  for (let i = 0; i < count; i += 1) {
    const length = (pairs[i] as EncodedPair).ids.length;
    lengths[i] = length;
    total += length;
    if (length > width) width = length;
  }
  const ids = new Int32Array(total);
  const typeIds = withTypeIds ? new Uint8Array(total) : undefined;
  let offset = 0;
  for (const pair of pairs) {
    ids.set(pair.ids, offset);
    if (typeIds && pair.typeIds) typeIds.set(pair.typeIds, offset);
    offset += pair.ids.length;
  }
  return typeIds ? { count, width, lengths, ids, typeIds } : { count, width, lengths, ids };
}

const LITTLE_ENDIAN = endianness() === 'LE';
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Replaces NaN and ±Infinity so that they never reach a client: +Inf and −Inf become the largest and
 * smallest float32, NaN the smallest (a broken score ranks last). Returns how many were replaced.
 */
export function makeFinite(logits: Float32Array): number {
  let replaced = 0;
  for (let i = 0; i < logits.length; i += 1) {
    const value = logits[i] as number;
    if (Number.isFinite(value)) continue;
    logits[i] = value === Infinity ? FLOAT32_MAX : -FLOAT32_MAX;
    replaced += 1;
  }
  return replaced;
}

/** Grow-only int64 input buffers, reused across runs. Their high words are never written, so stay 0. */
export class InputBuffers {
  ids = new BigInt64Array(0);
  mask = new BigInt64Array(0);
  types = new BigInt64Array(0);

  ensure(size: number, withTypes: boolean): void {
    if (this.ids.length < size) {
      const capacity = Math.max(size, this.ids.length * 2);
      this.ids = new BigInt64Array(capacity);
      this.mask = new BigInt64Array(capacity);
    }
    if (withTypes && this.types.length < size) this.types = new BigInt64Array(Math.max(size, this.ids.length));
  }
}

/**
 * Writes a flat batch into `[count, width]` int64 tensors, right-padded with `padId` (mask 0). On
 * little-endian machines it writes the low 32-bit word of each int64 through an Int32Array view, which
 * avoids a BigInt per token; ids are never negative, so the high word is 0.
 */
export function fillInputs(batch: FlatBatch, padId: number, buffers: InputBuffers, withTypes: boolean): number {
  const { count, width, lengths, ids } = batch;
  const size = count * width;
  buffers.ensure(size, withTypes);
  const typeIds = withTypes ? batch.typeIds : undefined;
  if (LITTLE_ENDIAN) {
    const ids32 = new Int32Array(buffers.ids.buffer, 0, size * 2);
    const mask32 = new Int32Array(buffers.mask.buffer, 0, size * 2);
    const types32 = withTypes ? new Int32Array(buffers.types.buffer, 0, size * 2) : undefined;
    let source = 0;
    for (let row = 0; row < count; row += 1) {
      const length = lengths[row] as number;
      let k = row * width * 2;
      for (let j = 0; j < length; j += 1, k += 2) {
        ids32[k] = ids[source + j] as number;
        mask32[k] = 1;
        if (types32) types32[k] = typeIds ? (typeIds[source + j] as number) : 0;
      }
      for (let j = length; j < width; j += 1, k += 2) {
        ids32[k] = padId;
        mask32[k] = 0;
        if (types32) types32[k] = 0;
      }
      source += length;
    }
  } else {
    const pad = BigInt(padId);
    let source = 0;
    for (let row = 0; row < count; row += 1) {
      const length = lengths[row] as number;
      let k = row * width;
      for (let j = 0; j < width; j += 1, k += 1) {
        const real = j < length;
        buffers.ids[k] = real ? BigInt(ids[source + j] as number) : pad;
        buffers.mask[k] = real ? 1n : 0n;
        if (withTypes) buffers.types[k] = real && typeIds ? BigInt(typeIds[source + j] as number) : 0n;
      }
      source += length;
    }
  }
  return size;
}

function describeGraph(session: InferenceSession, device: Device, fallbackReason: string | undefined): ModelDescription {
  const inputs = [...session.inputNames];
  for (const required of ['input_ids', 'attention_mask']) {
    if (!inputs.includes(required)) throw new Error(`the graph has no ${required} input (inputs: ${inputs.join(', ')})`);
  }
  const unknown = inputs.filter((name) => !['input_ids', 'attention_mask', 'token_type_ids'].includes(name));
  if (unknown.length > 0) throw new Error(`the graph takes inputs this server cannot feed: ${unknown.join(', ')}`);
  const outputName = session.outputNames.includes('logits') ? 'logits' : session.outputNames[0];
  if (outputName === undefined) throw new Error('the graph has no outputs');
  const meta = session.outputMetadata.find((m) => m.name === outputName);
  let logits: LogitsLayout = 'batch1';
  if (meta?.isTensor) {
    if (meta.type !== 'float32') throw new Error(`output ${outputName} is ${meta.type}; float32 logits expected`);
    const dims = meta.shape;
    if (dims.length === 1) logits = 'batch';
    else if (dims.length !== 2 || (typeof dims[1] === 'number' && dims[1] !== 1)) {
      throw new Error(`output ${outputName} has shape [${dims.join(', ')}]; [batch, 1] or [batch] expected (one relevance logit per pair)`);
    }
  }
  const description: ModelDescription = { inputs, takesTypeIds: inputs.includes('token_type_ids'), outputName, logits, device };
  if (fallbackReason !== undefined) description.fallbackReason = fallbackReason;
  return description;
}

/** One ORT session, run on the thread that holds it: a model worker's, or the main one. Concurrent runs are serialized. */
export class OnnxSession {
  readonly description: ModelDescription;
  readonly #session: InferenceSession;
  readonly #padId: number;
  readonly #buffers = new InputBuffers();
  /** The input buffers are reused, so a run waits for the one before it. */
  #last: Promise<unknown> = Promise.resolve();

  private constructor(session: InferenceSession, description: ModelDescription, padId: number) {
    this.#session = session;
    this.description = description;
    this.#padId = padId;
  }

  static async load(options: OnnxModelOptions): Promise<OnnxSession> {
    const base: InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
    if (options.intraOpNumThreads !== undefined) base.intraOpNumThreads = options.intraOpNumThreads;
    if (options.interOpNumThreads !== undefined) base.interOpNumThreads = options.interOpNumThreads;
    let fallbackReason: string | undefined;
    if (options.device === 'cuda') {
      try {
        const session = await ort.InferenceSession.create(options.modelPath, { ...base, executionProviders: ['cuda', 'cpu'] });
        return OnnxSession.#wrap(session, 'cuda', undefined, options.padId);
      } catch (error) {
        fallbackReason = `CUDA session failed: ${firstLine(error)}`;
      }
    }
    const modelPath = fallbackReason === undefined ? options.modelPath : (options.cpuModelPath ?? options.modelPath);
    let session: InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelPath, { ...base, executionProviders: ['cpu'] });
    } catch (error) {
      throw new Error(`load ONNX model ${modelPath}: ${firstLine(error)}`, { cause: error });
    }
    return OnnxSession.#wrap(session, 'cpu', fallbackReason, options.padId);
  }

  static async #wrap(session: InferenceSession, device: Device, fallbackReason: string | undefined, padId: number): Promise<OnnxSession> {
    try {
      return new OnnxSession(session, describeGraph(session, device, fallbackReason), padId);
    } catch (error) {
      await session.release();
      throw error;
    }
  }

  runFlat(batch: FlatBatch): Promise<BatchRunResult> {
    const run = this.#last.then(() => this.#runNow(batch));
    this.#last = run.catch(() => undefined);
    return run;
  }

  async #runNow(batch: FlatBatch): Promise<BatchRunResult> {
    const { takesTypeIds, outputName } = this.description;
    const size = fillInputs(batch, this.#padId, this.#buffers, takesTypeIds);
    const dims = [batch.count, batch.width];
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', this.#buffers.ids.subarray(0, size), dims),
      attention_mask: new ort.Tensor('int64', this.#buffers.mask.subarray(0, size), dims),
    };
    if (takesTypeIds) feeds.token_type_ids = new ort.Tensor('int64', this.#buffers.types.subarray(0, size), dims);
    const started = performance.now();
    const outputs = await this.#session.run(feeds, [outputName]);
    const seconds = (performance.now() - started) / 1000;
    const output = outputs[outputName] as ort.Tensor;
    const data = output.data;
    if (!(data instanceof Float32Array) || data.length !== batch.count) {
      throw new Error(`output ${outputName} has shape [${output.dims.join(', ')}] for ${batch.count} pairs; one logit per pair expected`);
    }
    const logits = Float32Array.from(data);
    output.dispose();
    return { logits, seconds, nonFinite: makeFinite(logits) };
  }

  run(pairs: readonly EncodedPair[]): Promise<BatchRunResult> {
    return this.runFlat(flattenBatch(pairs, this.description.takesTypeIds));
  }

  release(): Promise<void> {
    return this.#session.release();
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
        intraOpNumThreads: options.intraOpNumThreads,
        interOpNumThreads: options.interOpNumThreads,
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

