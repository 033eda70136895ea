import { cancelled, RerankError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { compareByLength, packSorted, type PackLimits, type PendingPair } from './batch-packer.ts';
import type { BatchScorer } from './onnx-model.ts';
import type { EncodedPair } from './pair-tokenizer.ts';

/**
 * One version's queue: pairs from many requests wait here and run in shared batches, one batch at a time
 * (ORT's CPU provider already spreads one run over every core; two runs would only fight over them).
 *
 * Every batch is chosen afresh from all pending pairs by the packer (oldest first, similar lengths
 * around it, within the token budget). A caller whose signal fires is answered at once and its pairs
 * leave the queue before they run. The queue is bounded: a request that would overfill it is refused
 * at once with an `overloaded` error carrying a Retry-After estimate.
 */

export interface QueueLimits extends PackLimits {
  /** Pairs that may wait; a request that would pass this is refused. */
  maxQueuedPairs: number;
}

export interface BatchQueueOptions {
  /** Version name: the metrics label and log field. */
  version: string;
  model: BatchScorer;
  /** Read before every batch and every request, so a config reload applies to the next batch. */
  limits: () => QueueLimits;
  metrics?: ServerMetrics;
  logger?: Logger;
  /** Milliseconds; `performance.now` unless a test steps it. */
  now?: () => number;
}

export interface ScoreResult {
  /** One finite logit per pair, in the order given. */
  logits: Float32Array;
  /** From submission until the first of its pairs started running. */
  queueSeconds: number;
  /** From then until the last of its pairs finished (other requests' batches in between included). */
  inferenceSeconds: number;
}

interface Job {
  pairs: readonly EncodedPair[];
  logits: Float32Array;
  /** Pairs not yet scored. */
  remaining: number;
  submittedAt: number;
  firstStart: number;
  lastEnd: number;
  settled: boolean;
  resolve: (result: ScoreResult) => void;
  reject: (error: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface Entry extends PendingPair {
  job: Job;
  /** Position of the pair in its request. */
  index: number;
  /** Left the queue: taken into a batch, or dropped with its request. */
  gone: boolean;
}

const THROUGHPUT_SMOOTHING = 0.3;
const MAX_RETRY_AFTER_SECONDS = 60;

export class BatchQueue {
  readonly version: string;
  readonly #model: BatchScorer;
  readonly #limits: () => QueueLimits;
  readonly #logger: Logger | undefined;
  readonly #now: () => number;
  readonly #metrics:
    | {
        inference: { observe(value: number): void };
        batchSize: { observe(value: number): void };
        batchTokens: { observe(value: number): void };
        padding: { observe(value: number): void };
        queueWait: { observe(value: number): void };
        depth: { inc(value: number): void };
        tokens: { inc(value: number): void };
      }
    | undefined;

  /** Pending entries sorted by (length, order): the packer's view. */
  #sorted: Entry[] = [];
  /** Pending entries in arrival order from `#head` on (gone ones are skipped lazily): finds the oldest. */
  #arrivals: Entry[] = [];
  #head = 0;
  #pending = 0;
  #nextOrder = 0;
  #running = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  /** Recent pairs per second of model time, smoothed; 0 until a batch has run. */
  #throughput = 0;
  /** This queue's share of the version's depth gauge, which it moves by deltas: during a model switch the
   * new queue and the draining one add up, rather than the last one to write winning. */
  #reportedDepth = 0;

  constructor(options: BatchQueueOptions) {
    this.version = options.version;
    this.#model = options.model;
    this.#limits = options.limits;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => performance.now());
    const m = options.metrics;
    const labels = { version: options.version };
    this.#metrics = m && {
      inference: m.inferenceDuration.labels(labels),
      batchSize: m.batchSize.labels(labels),
      batchTokens: m.batchTokens.labels(labels),
      padding: m.paddingRatio.labels(labels),
      queueWait: m.queueDuration.labels(labels),
      depth: m.queueDepth.labels(labels),
      tokens: m.tokens.labels(labels),
    };
  }

  #reportDepth(): void {
    this.#metrics?.depth.inc(this.#pending - this.#reportedDepth);
    this.#reportedDepth = this.#pending;
  }

  /** Pairs waiting to run (not counting the batch running now). */
  get pendingPairs(): number {
    return this.#pending;
  }

  /**
   * Throws unless `pairs` more pairs fit: `payload_too_large` when they never could, `overloaded` (with
   * a Retry-After estimate from recent throughput) when they do not fit now.
   */
  checkRoom(pairs: number): void {
    if (this.#closed) throw new RerankError('unavailable', `version ${this.version} is shutting down`);
    const { maxQueuedPairs } = this.#limits();
    if (pairs > maxQueuedPairs) {
      throw new RerankError('payload_too_large', `${pairs} documents: version ${this.version} queues at most ${maxQueuedPairs} pairs`, {
        field: 'documents',
      });
    }
    if (this.#pending + pairs > maxQueuedPairs) {
      const excess = this.#pending + pairs - maxQueuedPairs;
      const retryAfterSeconds = this.#throughput > 0 ? Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(excess / this.#throughput))) : 1;
      throw new RerankError('overloaded', `version ${this.version} is busy: ${this.#pending} pairs queued (limit ${maxQueuedPairs})`, {
        retryAfterSeconds,
      });
    }
  }

  /** Scores every pair; resolves when the last one has run. */
  score(pairs: readonly EncodedPair[], signal?: AbortSignal): Promise<ScoreResult> {
    if (signal?.aborted) return Promise.reject(cancelled());
    try {
      this.checkRoom(pairs.length);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (pairs.length === 0) return Promise.resolve({ logits: new Float32Array(0), queueSeconds: 0, inferenceSeconds: 0 });

    return new Promise<ScoreResult>((resolve, reject) => {
      const job: Job = {
        pairs,
        logits: new Float32Array(pairs.length),
        remaining: pairs.length,
        submittedAt: this.#now(),
        firstStart: -1,
        lastEnd: -1,
        settled: false,
        resolve,
        reject,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        job.onAbort = () => this.#fail(job, cancelled());
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.#enqueue(job);
      this.#kick();
    });
  }

  /** Resolves once nothing is queued or running. */
  drain(): Promise<void> {
    if (!this.#running && this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Refuses new work and resolves when the work already accepted is done. The model stays the caller's to close. */
  close(): Promise<void> {
    this.#closed = true;
    return this.drain();
  }

  #enqueue(job: Job): void {
    const added: Entry[] = new Array<Entry>(job.pairs.length);
    for (let index = 0; index < job.pairs.length; index += 1) {
      const entry: Entry = { length: (job.pairs[index] as EncodedPair).length, order: this.#nextOrder++, job, index, gone: false };
      added[index] = entry;
      this.#arrivals.push(entry);
    }
    added.sort(compareByLength);
    mergeInto(this.#sorted, added);
    this.#pending += added.length;
    this.#reportDepth();
  }

  /**
   * Starts the loop when idle. It starts on the next turn of the event loop rather than at once, so
   * requests whose tokenization finished in the same turn share the first batch.
   */
  #kick(): void {
    if (this.#running || this.#pending === 0) return;
    this.#running = true;
    setImmediate(() => void this.#loop());
  }

  async #loop(): Promise<void> {
    let batch: Entry[] = [];
    try {
      while (this.#pending > 0) {
        batch = this.#takeBatch();
        if (batch.length > 0) await this.#runBatch(batch);
      }
    } catch (error) {
      // A bug, not a model failure (#runBatch answers those): fail the batch at hand rather than hang its callers.
      this.#logger?.error({ version: this.version, err: error }, 'batch loop failed');
      const failure = new RerankError('model', `batch loop failed: ${(error as Error).message}`, { cause: error });
      for (const entry of batch) this.#fail(entry.job, failure);
    } finally {
      this.#running = false;
      if (this.#pending > 0) this.#kick();
      else for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }

  /** Removes the next batch from the pending lists. */
  #takeBatch(): Entry[] {
    while (this.#head < this.#arrivals.length && (this.#arrivals[this.#head] as Entry).gone) this.#head += 1;
    if (this.#head > 1024 && this.#head * 2 > this.#arrivals.length) {
      this.#arrivals = this.#arrivals.slice(this.#head);
      this.#head = 0;
    }
    const oldest = this.#arrivals[this.#head];
    if (oldest === undefined) return [];
    const anchor = lowerBound(this.#sorted, oldest);
    const { start, end } = packSorted(this.#sorted, anchor, this.#limits());
    const batch = this.#sorted.splice(start, end - start);
    for (const entry of batch) entry.gone = true;
    this.#pending -= batch.length;
    this.#reportDepth();
    return batch;
  }

  async #runBatch(batch: Entry[]): Promise<void> {
    const started = this.#now();
    const pairs: EncodedPair[] = new Array<EncodedPair>(batch.length);
    let tokens = 0;
    let width = 0;
    for (let i = 0; i < batch.length; i += 1) {
      const entry = batch[i] as Entry;
      pairs[i] = entry.job.pairs[entry.index] as EncodedPair;
      tokens += entry.length;
      if (entry.length > width) width = entry.length;
      if (entry.job.firstStart < 0) entry.job.firstStart = started;
    }
    const metrics = this.#metrics;
    if (metrics) {
      for (const entry of batch) metrics.queueWait.observe((started - entry.job.submittedAt) / 1000);
      const slots = batch.length * width;
      metrics.batchSize.observe(batch.length);
      metrics.batchTokens.observe(slots);
      metrics.padding.observe(slots === 0 ? 0 : (slots - tokens) / slots);
      metrics.tokens.inc(tokens);
    }

    let result;
    try {
      result = await this.#model.run(pairs);
      if (result.logits.length !== batch.length) {
        throw new Error(`model returned ${result.logits.length} logits for ${batch.length} pairs`);
      }
    } catch (error) {
      this.#logger?.error({ version: this.version, pairs: batch.length, width, err: error }, 'inference failed');
      const failure = new RerankError('model', `inference failed: ${(error as Error).message}`, { cause: error });
      for (const entry of batch) this.#fail(entry.job, failure);
      return;
    }

    const ended = this.#now();
    metrics?.inference.observe(result.seconds);
    const wallSeconds = (ended - started) / 1000;
    if (wallSeconds > 0) {
      const rate = batch.length / wallSeconds;
      this.#throughput = this.#throughput === 0 ? rate : this.#throughput + THROUGHPUT_SMOOTHING * (rate - this.#throughput);
    }
    if (result.nonFinite > 0) {
      this.#logger?.warn({ version: this.version, count: result.nonFinite, pairs: batch.length }, 'model produced NaN or infinite logits; replaced');
    }

    for (let i = 0; i < batch.length; i += 1) {
      const entry = batch[i] as Entry;
      const job = entry.job;
      if (job.settled) continue;
      job.logits[entry.index] = result.logits[i] as number;
      job.lastEnd = ended;
      job.remaining -= 1;
      if (job.remaining === 0) {
        this.#settle(job);
        job.resolve({
          logits: job.logits,
          queueSeconds: (job.firstStart - job.submittedAt) / 1000,
          inferenceSeconds: (job.lastEnd - job.firstStart) / 1000,
        });
      }
    }
  }

  /** Rejects a request and drops its pairs still waiting. */
  #fail(job: Job, error: Error): void {
    if (job.settled) return;
    this.#settle(job);
    job.reject(error);
    let dropped = 0;
    const kept: Entry[] = [];
    for (const entry of this.#sorted) {
      if (entry.job === job) {
        entry.gone = true;
        dropped += 1;
      } else kept.push(entry);
    }
    if (dropped > 0) {
      this.#sorted = kept;
      this.#pending -= dropped;
      this.#reportDepth();
    }
  }

  #settle(job: Job): void {
    job.settled = true;
    if (job.signal && job.onAbort) job.signal.removeEventListener('abort', job.onAbort);
  }
}


/** Index of `entry` in a list sorted by `compareByLength` (it is there). */
function lowerBound(sorted: readonly Entry[], entry: Entry): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareByLength(sorted[mid] as Entry, entry) < 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Merges `added` (sorted) into `sorted` in place, from the back: only entries longer than the new ones move. */
function mergeInto(sorted: Entry[], added: readonly Entry[]): void {
  let i = sorted.length - 1;
  let j = added.length - 1;
  for (const entry of added) sorted.push(entry);
  let k = sorted.length - 1;
  while (j >= 0) {
    if (i >= 0 && compareByLength(sorted[i] as Entry, added[j] as Entry) > 0) sorted[k--] = sorted[i--] as Entry;
    else sorted[k--] = added[j--] as Entry;
  }
}
