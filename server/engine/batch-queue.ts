import { cancelled, RerankError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { BatchCost, BUCKETS, bucketOf } from './batch-cost.ts';
import { pendingPairs, type BatchOrder, type PendingPairs, type QueuedPair } from './batch-order.ts';
import { MIN_CORRECTED_WAIT, WaitCorrection } from './wait-correction.ts';
import type { PackLimits } from './batch-packer.ts';
import type { BatchScorer } from './onnx-model.ts';
import type { EncodedPair } from './pair-tokenizer.ts';

/**
 * One version's queue: pairs from many requests wait here and run in shared batches, one batch at a time
 * (ORT's CPU provider already spreads one run over every core; two runs would only fight over them).
 *
 * Batches are filled first come, first served (see batch-order.ts): the oldest waiting request's pairs,
 * length-sorted within it, so a request's pairs finish together and early. A caller whose signal fires is
 * answered at once and its pairs leave the queue before they run.
 *
 * Admission is bounded in pairs and in time. The queue measures what a padded token costs (each batch's
 * run time ÷ its padded token slots, smoothed, by batch width: see batch-cost.ts) and so knows how long
 * the work queued now will take; the requests admitted and still tokenizing hold their places in it.
 * That raw estimate times a factor learnt from the waits requests actually had since their admission
 * (an upper estimate, see wait-correction.ts) is the expected wait. A request that would wait longer than
 * `maxQueueWaitMs` from its admission until its first batch, or whose own deadline falls before then, is
 * refused at once; one whose deadline passes while it waits is answered then, and its pairs still waiting
 * are dropped. Refusals carry a Retry-After: the time until the queue has drained below the limit again.
 */

export interface QueueLimits extends PackLimits {
  /** Pairs that may wait; a request that would pass this is refused. */
  maxQueuedPairs: number;
  /** Longest expected wait before a request's first batch that admits it, in milliseconds; 0 or absent: no limit. */
  maxQueueWaitMs?: number;
}

export interface BatchQueueOptions {
  /** Version name: the metrics label and log field. */
  version: string;
  model: BatchScorer;
  /** Read before every batch and every request, so a config reload applies to the next batch. */
  limits: () => QueueLimits;
  /** Which waiting pairs go into the next batch (default first-come; `mixed` is kept to compare with). */
  order?: BatchOrder;
  metrics?: ServerMetrics;
  logger?: Logger;
  /** Milliseconds; `performance.now` unless a test steps it. Deadlines are times on this clock. */
  now?: () => number;
  /** Calls `callback` after `ms` milliseconds of `now`; returns a cancel. An unref'd setTimeout unless a test steps time. */
  setTimer?: (callback: () => void, ms: number) => () => void;
}

export interface ScoreOptions {
  /** Aborted when the caller goes away: it is answered `cancelled` and its waiting pairs are dropped. */
  signal?: AbortSignal | undefined;
  /** When the caller can no longer use the answer, on the `now` clock: then it is answered `deadline`. */
  deadline?: number | undefined;
  /** The request's place taken by `reserve` before tokenizing: released as its pairs are queued. */
  reservation?: Reservation | undefined;
}

/** Work admitted and not queued yet (being tokenized); `release` (idempotent) takes it out of the estimate. */
export interface Reservation {
  release(): void;
}

/** What the queue keeps of an admission, to learn from the wait that follows it. */
interface Admission {
  /** When it was admitted, on the `now` clock. */
  at: number;
  /** The raw estimate (before the correction) that admitted it, and the expected wait (after), in seconds. */
  rawWait: number;
  wait: number;
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
  /** When it was admitted (reserved before tokenizing, else queued) and the raw wait estimated then. */
  admission: Admission;
  /**
   * Whether work was still queued or running when it was queued: then its first batch started when the work
   * ahead of it had run, and its wait since admission measures that. Otherwise the work ahead had run
   * before its own tokenizing ended, and its wait says how long tokenizing took, not the queue.
   */
  queuedBehind: boolean;
  firstStart: number;
  lastEnd: number;
  settled: boolean;
  resolve: (result: ScoreResult) => void;
  reject: (error: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  cancelTimer: (() => void) | undefined;
}

interface Entry extends QueuedPair<Job> {
  /** Position of the pair in its request. */
  index: number;
}

/**
 * A batch's time counts as what the queue waited for it: from its start to the start of the next batch
 * when one followed at once (the hand-over between batches included), else to its end; but at most this
 * many times the model's own run time, so a main thread stalled by something else (tokenizing a huge
 * request) does not pass for a slow model and inflate every estimate after it.
 */
const MAX_WALL_PER_MODEL_TIME = 2;

interface RunBatch {
  width: number;
  slots: number;
  tokens: number;
  started: number;
  ended: number;
  modelSeconds: number;
}
/** Weight of the newest request in the expected seconds per pair that a reservation holds. */
const RESERVATION_SMOOTHING = 0.3;
const MAX_RETRY_AFTER_SECONDS = 60;

function unrefTimer(callback: () => void, ms: number): () => void {
  const timer = setTimeout(callback, Math.max(0, ms));
  timer.unref();
  return () => clearTimeout(timer);
}

export class BatchQueue {
  readonly version: string;
  readonly #model: BatchScorer;
  readonly #limits: () => QueueLimits;
  readonly #logger: Logger | undefined;
  readonly #now: () => number;
  readonly #setTimer: (callback: () => void, ms: number) => () => void;
  readonly #metrics:
    | {
        inference: { observe(value: number): void };
        batchSize: { observe(value: number): void };
        batchTokens: { observe(value: number): void };
        padding: { observe(value: number): void };
        queueWait: { observe(value: number): void };
        depth: { inc(value: number): void };
        tokens: { inc(value: number): void };
        expectedWait: { set(value: number): void };
        waitRatio: { observe(value: number): void };
        refusals: ServerMetrics['queueRefusals'];
        deadlineDrops: { inc(value?: number): void };
        deadlineDroppedPairs: { inc(value: number): void };
      }
    | undefined;

  readonly #pending: PendingPairs<Job, Entry>;
  /** Tokens of the waiting pairs (before padding), by the width bucket of their length. */
  readonly #pendingTokens = new Float64Array(BUCKETS);
  readonly #cost = new BatchCost();
  /** Requests admitted by `reserve` and still tokenizing: their pairs, and their expected seconds. */
  #reservedPairs = 0;
  #reservedSeconds = 0;
  /** Expected seconds per pair of recent requests, smoothed: what a reservation holds per document. */
  #secondsPerPair = 0;
  /**
   * When (on the `now` clock, ms) the work of the requests lately refused by time is expected to have run,
   * were they to come back when told: each refusal's Retry-After starts where the previous ones' booked
   * work ends, so that clients refused together come back one after another rather than all at the first
   * moment the queue has room, when only the first of them would find it. Bookings reach at most one
   * queue length (maxQueueWaitMs) past the moment the queue is back at its limit: refused clients that
   * never come back must not push every later one to the cap.
   */
  #promisedUntil = 0;
  /** How much longer requests wait than the raw estimate says, as an upper estimate (see wait-correction.ts). */
  readonly #correction = new WaitCorrection();
  /** The admission of each reservation still held, for its request to learn from once queued. */
  readonly #admissions = new WeakMap<Reservation, Admission>();
  #nextOrder = 0;
  #running = false;
  /** Expected seconds of the batch running now (0: none), and when it started: for the wait estimate. */
  #runningSeconds = 0;
  #runningSince = 0;
  /** The last batch that ran, not yet counted in the cost: it is, once the next one starts or the loop stops. */
  #lastBatch: RunBatch | undefined;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  /** This queue's share of the version's depth gauge, which it moves by deltas: during a model switch the
   * new queue and the draining one add up, rather than the last one to write winning. */
  #reportedDepth = 0;

  constructor(options: BatchQueueOptions) {
    this.version = options.version;
    this.#model = options.model;
    this.#limits = options.limits;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => performance.now());
    this.#setTimer = options.setTimer ?? unrefTimer;
    this.#pending = pendingPairs<Job, Entry>(options.order ?? 'first-come');
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
      expectedWait: m.queueExpectedWait.labels(labels),
      waitRatio: m.queueWaitRatio.labels(labels),
      refusals: m.queueRefusals,
      deadlineDrops: m.deadlineDrops.labels(labels),
      deadlineDroppedPairs: m.deadlineDroppedPairs.labels(labels),
    };
  }

  #report(): void {
    const pending = this.#pending.size;
    this.#metrics?.depth.inc(pending - this.#reportedDepth);
    this.#reportedDepth = pending;
    // A draining queue takes no new requests: the estimate is the serving one's to show.
    if (!this.#closed) this.#metrics?.expectedWait.set(this.expectedWaitSeconds());
  }

  /** Pairs waiting to run (not counting the batch running now). */
  get pendingPairs(): number {
    return this.#pending.size;
  }

  /**
   * Seconds a request arriving now would wait before its first batch runs: the waiting pairs' tokens,
   * padded as recent batches of their width were, at the measured cost per padded token of that width,
   * plus the requests admitted and still tokenizing (they queue ahead of it), plus what is left of the
   * running batch. 0 until a batch has run (nothing measured yet).
   */
  expectedWaitSeconds(): number {
    return this.#rawWaitSeconds() * this.#correction.factor;
  }

  /**
   * The Retry-After of a request of `pairs` refused by time, the queue being `overMs` of work over its
   * limit `limitMs`: no sooner than the queue is back at the limit, after the requests refused before it
   * (within one queue length of that), whose expected work it then books.
   */
  #promiseRetry(pairs: number, overMs: number, limitMs: number): number {
    const now = this.#now();
    const drained = now + Math.max(0, overMs);
    const from = Math.max(drained, Math.min(this.#promisedUntil, drained + limitMs));
    this.#promisedUntil = from + pairs * this.#secondsPerPair * this.#correction.factor * 1000;
    return retryAfter((from - now) / 1000);
  }

  /** The estimate from the batch costs alone, before the correction learnt from actual waits. */
  #rawWaitSeconds(): number {
    let seconds = this.#queuedSeconds() + this.#reservedSeconds;
    if (this.#runningSeconds > 0) seconds += Math.max(0, this.#runningSeconds - (this.#now() - this.#runningSince) / 1000);
    return seconds;
  }

  /** Expected seconds of the waiting pairs alone (0 until a batch has run). */
  #queuedSeconds(): number {
    if (!this.#cost.measured) return 0;
    let seconds = 0;
    for (let bucket = 0; bucket < BUCKETS; bucket += 1) {
      const tokens = this.#pendingTokens[bucket] as number;
      if (tokens > 0) seconds += this.#cost.secondsForTokens(bucket, tokens);
    }
    return seconds;
  }

  /**
   * Throws unless `pairs` more pairs are admitted now: `payload_too_large` when they never could,
   * `overloaded` (with a Retry-After) when the queue holds too many pairs or too much time of work,
   * `deadline` when the expected wait already ends after `deadline` (a time on the `now` clock).
   */
  checkRoom(pairs: number, deadline?: number): void {
    this.#check(pairs, deadline, true);
  }

  /** `checkRoom`; with `byTime` false, only the pair limit and the deadline (a request admitted by `reserve`). */
  #check(pairs: number, deadline: number | undefined, byTime: boolean): void {
    if (this.#closed) throw new RerankError('unavailable', `version ${this.version} is shutting down`);
    const { maxQueuedPairs, maxQueueWaitMs = 0 } = this.#limits();
    if (pairs > maxQueuedPairs) {
      throw new RerankError('payload_too_large', `${pairs} documents: version ${this.version} queues at most ${maxQueuedPairs} pairs`, {
        field: 'documents',
      });
    }
    const pending = this.#pending.size + this.#reservedPairs;
    if (pending + pairs > maxQueuedPairs) {
      const excess = pending + pairs - maxQueuedPairs;
      this.#refused('queue_full');
      throw new RerankError('overloaded', `version ${this.version} is busy: ${pending} pairs queued (limit ${maxQueuedPairs})`, {
        // The time to run as many of the waiting pairs as there are pairs too many.
        retryAfterSeconds: retryAfter(pending > 0 ? ((this.#queuedSeconds() + this.#reservedSeconds) * Math.min(excess, pending)) / pending : 0),
      });
    }
    const waitSeconds = this.expectedWaitSeconds();
    if (byTime && maxQueueWaitMs > 0 && waitSeconds * 1000 > maxQueueWaitMs) {
      this.#refused('wait');
      throw new RerankError(
        'overloaded',
        `version ${this.version} is busy: expected wait ${seconds(waitSeconds)} s is over maxQueueWaitMs (${maxQueueWaitMs} ms)`,
        { retryAfterSeconds: this.#promiseRetry(pairs, waitSeconds * 1000 - maxQueueWaitMs, maxQueueWaitMs) },
      );
    }
    if (deadline !== undefined) {
      const leftMs = deadline - this.#now();
      if (waitSeconds * 1000 >= leftMs) {
        this.#refused('deadline');
        throw new RerankError(
          'deadline',
          `deadline exceeded: version ${this.version} expects a wait of ${seconds(waitSeconds)} s and the request's deadline is in ${Math.max(0, Math.round(leftMs))} ms`,
        );
      }
    }
  }

  /**
   * `checkRoom`, and on admission holds the request's expected work in the estimate until its pairs are
   * queued (`score` with the reservation) or it is released (tokenizing failed). Without it, requests
   * arriving together would all pass the check before any of them is queued, be tokenized, and most be
   * refused only then: tokenizing work that is thrown away, on the cores the model needs.
   */
  reserve(pairs: number, deadline?: number): Reservation {
    this.checkRoom(pairs, deadline);
    const admission = this.#admission();
    const seconds = pairs * this.#secondsPerPair;
    this.#reservedPairs += pairs;
    this.#reservedSeconds += seconds;
    this.#report();
    let held = true;
    const reservation = {
      release: () => {
        if (!held) return;
        held = false;
        this.#reservedPairs -= pairs;
        this.#reservedSeconds = this.#reservedPairs === 0 ? 0 : this.#reservedSeconds - seconds;
        this.#report();
      },
    };
    this.#admissions.set(reservation, admission);
    return reservation;
  }

  /** A request admitted now: when, and the waits expected. */
  #admission(): Admission {
    const rawWait = this.#rawWaitSeconds();
    return { at: this.#now(), rawWait, wait: rawWait * this.#correction.factor };
  }

  #refused(reason: 'queue_full' | 'wait' | 'deadline'): void {
    this.#metrics?.refusals.inc({ version: this.version, reason });
  }

  /**
   * Scores every pair; resolves when the last one has run. A request with a reservation was admitted by
   * expected wait before it was tokenized and is not refused by it now: only the pair limit and its
   * deadline still apply.
   */
  score(pairs: readonly EncodedPair[], options: ScoreOptions = {}): Promise<ScoreResult> {
    const { signal, deadline, reservation } = options;
    reservation?.release();
    if (signal?.aborted) return Promise.reject(cancelled());
    try {
      this.#check(pairs.length, deadline, reservation === undefined);
    } catch (error) {
      return Promise.reject(error as Error);
    }
    if (pairs.length === 0) return Promise.resolve({ logits: new Float32Array(0), queueSeconds: 0, inferenceSeconds: 0 });

    const submittedAt = this.#now();
    // Admitted before tokenizing: its wait counts from then, against the estimate that admitted it.
    const admission = (reservation && this.#admissions.get(reservation)) ?? this.#admission();
    return new Promise<ScoreResult>((resolve, reject) => {
      const job: Job = {
        pairs,
        logits: new Float32Array(pairs.length),
        remaining: pairs.length,
        submittedAt,
        admission,
        queuedBehind: this.#running || this.#pending.size > 0,
        firstStart: -1,
        lastEnd: -1,
        settled: false,
        resolve,
        reject,
        signal,
        onAbort: undefined,
        cancelTimer: undefined,
      };
      if (signal) {
        job.onAbort = () => this.#fail(job, cancelled());
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      if (deadline !== undefined) {
        job.cancelTimer = this.#setTimer(() => this.#expire(job), deadline - job.submittedAt);
      }
      this.#enqueue(job);
      this.#kick();
    });
  }

  /** Resolves once nothing is queued or running. */
  drain(): Promise<void> {
    if (!this.#running && this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Refuses new work and resolves when the work already accepted is done. The model stays the caller's to close. */
  close(): Promise<void> {
    this.#closed = true;
    return this.drain();
  }

  #enqueue(job: Job): void {
    const entries: Entry[] = new Array<Entry>(job.pairs.length);
    let seconds = 0;
    for (let index = 0; index < job.pairs.length; index += 1) {
      const length = (job.pairs[index] as EncodedPair).length;
      entries[index] = { length, order: this.#nextOrder++, request: job, index };
      this.#addTokens(length, length);
      seconds += this.#cost.secondsForTokens(bucketOf(length), length);
    }
    const perPair = seconds / job.pairs.length;
    this.#secondsPerPair = this.#secondsPerPair === 0 ? perPair : this.#secondsPerPair + RESERVATION_SMOOTHING * (perPair - this.#secondsPerPair);
    this.#pending.add(job, entries);
    this.#report();
  }

  /**
   * Starts the loop when idle. It starts on the next turn of the event loop rather than at once, so
   * requests whose tokenization finished in the same turn share the first batch.
   */
  #kick(): void {
    if (this.#running || this.#pending.size === 0) return;
    this.#running = true;
    setImmediate(() => void this.#loop());
  }

  async #loop(): Promise<void> {
    let batch: Entry[] = [];
    try {
      while (this.#pending.size > 0) {
        batch = this.#takeBatch();
        if (batch.length > 0) await this.#runBatch(batch);
      }
    } catch (error) {
      // A bug, not a model failure (#runBatch answers those): fail the batch at hand rather than hang its callers.
      this.#logger?.error({ version: this.version, err: error }, 'batch loop failed');
      const failure = new RerankError('model', `batch loop failed: ${(error as Error).message}`, { cause: error });
      for (const entry of batch) this.#fail(entry.request, failure);
    } finally {
      this.#running = false;
      this.#runningSeconds = 0;
      this.#learn(undefined);
      if (this.#pending.size > 0) this.#kick();
      else for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }

  /** Removes the next batch from the waiting pairs. */
  #takeBatch(): Entry[] {
    const batch = this.#pending.take(this.#limits());
    this.#forget(batch);
    return batch;
  }

  /** Takes pairs that left the queue out of the waiting tokens. */
  #forget(entries: readonly Entry[]): void {
    for (const entry of entries) this.#addTokens(entry.length, -entry.length);
  }

  #addTokens(length: number, delta: number): void {
    const bucket = bucketOf(length);
    this.#pendingTokens[bucket] = (this.#pendingTokens[bucket] as number) + delta;
  }

  async #runBatch(batch: Entry[]): Promise<void> {
    const started = this.#now();
    const pairs: EncodedPair[] = new Array<EncodedPair>(batch.length);
    let tokens = 0;
    let width = 0;
    for (let i = 0; i < batch.length; i += 1) {
      const entry = batch[i] as Entry;
      pairs[i] = entry.request.pairs[entry.index] as EncodedPair;
      tokens += entry.length;
      if (entry.length > width) width = entry.length;
      if (entry.request.firstStart < 0) {
        entry.request.firstStart = started;
        this.#correct(entry.request);
      }
    }
    const slots = batch.length * width;
    this.#learn(started);
    this.#runningSeconds = this.#cost.secondsForTokens(bucketOf(width), tokens);
    this.#runningSince = started;
    this.#report();
    const metrics = this.#metrics;
    if (metrics) {
      for (const entry of batch) metrics.queueWait.observe((started - entry.request.submittedAt) / 1000);
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
      this.#runningSeconds = 0;
      this.#logger?.error({ version: this.version, pairs: batch.length, width, err: error }, 'inference failed');
      const failure = new RerankError('model', `inference failed: ${(error as Error).message}`, { cause: error });
      for (const entry of batch) this.#fail(entry.request, failure);
      return;
    }

    const ended = this.#now();
    metrics?.inference.observe(result.seconds);
    this.#lastBatch = { width, slots, tokens, started, ended, modelSeconds: result.seconds };
    this.#runningSeconds = 0;
    this.#report();
    if (result.nonFinite > 0) {
      this.#logger?.warn({ version: this.version, count: result.nonFinite, pairs: batch.length }, 'model produced NaN or infinite logits; replaced');
    }

    for (let i = 0; i < batch.length; i += 1) {
      const entry = batch[i] as Entry;
      const job = entry.request;
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

  /** Folds how long a request waited since its admission, against the raw estimate then, into the correction. */
  #correct(job: Job): void {
    if (!job.queuedBehind) return;
    const { at, rawWait, wait } = job.admission;
    const waited = (job.firstStart - at) / 1000;
    this.#correction.observe(rawWait, waited);
    if (wait >= MIN_CORRECTED_WAIT) this.#metrics?.waitRatio.observe(waited / wait);
  }

  /** Counts the last batch in the cost, up to `nextStarted` (the batch that follows it at once) or its end. */
  #learn(nextStarted: number | undefined): void {
    const last = this.#lastBatch;
    if (last === undefined) return;
    this.#lastBatch = undefined;
    const waited = ((nextStarted ?? last.ended) - last.started) / 1000;
    this.#cost.observe({ width: last.width, slots: last.slots, tokens: last.tokens, seconds: Math.min(waited, last.modelSeconds * MAX_WALL_PER_MODEL_TIME) });
  }

  /** The caller's deadline passed before its last pair ran: answer it, and drop its pairs still waiting. */
  #expire(job: Job): void {
    if (job.settled) return;
    const dropped = this.#fail(
      job,
      new RerankError('deadline', `deadline exceeded: ${job.remaining} of ${job.pairs.length} documents of the request were not scored in time on version ${this.version}`),
    );
    this.#metrics?.deadlineDrops.inc();
    this.#metrics?.deadlineDroppedPairs.inc(dropped);
  }

  /** Rejects a request and drops its pairs still waiting; returns how many were dropped. */
  #fail(job: Job, error: Error): number {
    if (job.settled) return 0;
    this.#settle(job);
    job.reject(error);
    const dropped = this.#pending.remove(job);
    this.#forget(dropped);
    if (dropped.length > 0) this.#report();
    return dropped.length;
  }

  #settle(job: Job): void {
    job.settled = true;
    if (job.signal && job.onAbort) job.signal.removeEventListener('abort', job.onAbort);
    job.cancelTimer?.();
  }
}

/** Whole seconds for a Retry-After header: at least 1, at most MAX_RETRY_AFTER_SECONDS. */
function retryAfter(seconds: number): number {
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(seconds)));
}

function seconds(value: number): string {
  return value.toFixed(1);
}
