/**
 * How much longer requests wait than the batch costs say, learnt from the requests themselves: the factor
 * that turns the queue's raw estimate (queued pairs × measured cost per padded token, the places held by
 * requests still tokenizing, what is left of the running batch) into the wait that admission bounds.
 *
 * What the raw estimate leaves out, measured on rerank-server under 2× load (bench/overload.bench.ts):
 * parsing and tokenizing take the cores the model needs while requests wait, batches hand over through a
 * busy event loop, a held place is the recent average request rather than this one, other processes run.
 * Together they made waits 1.2 to 2 times the raw estimate, and the ratio varied from request to request.
 *
 * So each admitted request compares the wait it had, from its admission until its first batch started,
 * with the raw estimate made at that same moment (the one admission used). Both from admission: a
 * comparison made when the request was queued after tokenizing counted the places of requests admitted
 * *after* it, which queue behind it, so the ratio came out low, the factor fell towards 0.5 in bursts and
 * admission let in twice the work it meant to. Only requests that, once tokenized, still found work
 * queued or running teach it (the queue decides): for the others the work ahead had run before their
 * own tokenizing ended, and their wait measured the tokenizer, which a short queue would read as a
 * ratio of several and a long one then pay for in refusals.
 *
 * The factor is an upper estimate of that ratio, not its mean: the smoothed mean plus `DEVIATIONS` smoothed
 * mean deviations (how TCP bounds a round trip for its retransmission timeout). Under overload every
 * admitted request sits near the limit, so a mean would let about half of them wait past it; the bound
 * asks p99 of accepted requests to wait at most `maxQueueWaitMs` and one batch. Erring long costs little:
 * at the limit the queue still holds `maxQueueWaitMs ÷ factor` of work, which keeps the model busy, and a
 * Retry-After from an estimate that falls at least as fast as the queue drains is honest.
 *
 * @example
 * const correction = new WaitCorrection();
 * correction.observe(1.0, 1.5); // raw estimate 1 s at admission, waited 1.5 s
 * correction.factor;            // 1.1 + 4 × 0.1 = 1.5; above 1.5 while it learns, then settling on it as waits stay so
 */

/** Weight of the newest request in the smoothed ratio and in the smoothed deviation. */
const SMOOTHING = 0.2;
/** Smoothed deviations above the smoothed ratio that the factor sits. */
const DEVIATIONS = 4;
/** Bounds of one request's ratio (one stalled request moves the factor, it does not take it over). */
const MIN_RATIO = 0.5;
const MAX_RATIO = 4;
/** Bounds of the factor. */
const MIN_FACTOR = 0.5;
const MAX_FACTOR = 8;
/** Raw estimates shorter than this (seconds) teach nothing: noise dominates such waits. */
export const MIN_CORRECTED_WAIT = 0.05;

export class WaitCorrection {
  #mean = 1;
  #deviation = 0;

  /** What the raw estimate is multiplied by (1 until a wait has been observed). */
  get factor(): number {
    return Math.min(MAX_FACTOR, Math.max(MIN_FACTOR, this.#mean + DEVIATIONS * this.#deviation));
  }

  /** The smoothed ratio of waits to raw estimates, without the deviations. */
  get mean(): number {
    return this.#mean;
  }

  /** A request admitted on a raw estimate of `estimatedSeconds` waited `waitedSeconds` for its first batch. */
  observe(estimatedSeconds: number, waitedSeconds: number): void {
    if (!(estimatedSeconds >= MIN_CORRECTED_WAIT) || !Number.isFinite(waitedSeconds)) return;
    const ratio = Math.min(MAX_RATIO, Math.max(MIN_RATIO, waitedSeconds / estimatedSeconds));
    const error = ratio - this.#mean;
    this.#mean += SMOOTHING * error;
    this.#deviation += SMOOTHING * (Math.abs(error) - this.#deviation);
  }
}
