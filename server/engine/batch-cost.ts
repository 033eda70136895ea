/**
 * What the queued work will cost, learnt from the batches that ran: seconds per padded token slot, and
 * padded slots per real token, each by batch width. By width because a slot of a wide batch costs more
 * than one of a narrow batch (attention grows with the square of the width: on a MiniLM-shaped model a
 * slot of a 400-token batch costs several times one of a 40-token batch), so one average over all
 * batches misjudges a queue whose mix differs from the last few batches, and first-come batches run a
 * request's widest pairs first.
 *
 * Each bucket keeps exponentially weighted sums (the newest batch of that width weighs `SMOOTHING`), so
 * its cost is a ratio of sums: a wide batch counts for its slots, not as one sample among many narrow ones.
 *
 * @example
 * const cost = new BatchCost();
 * cost.observe({ width: 200, slots: 6400, tokens: 6200, seconds: 0.25 });
 * cost.secondsForTokens(bucketOf(180), 4000); // ≈ 4000 × (6400 / 6200) × (0.25 / 6400)
 */

/** Upper bounds (inclusive) of the width buckets; a last bucket holds everything wider. */
const BUCKET_EDGES = [32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096];

export const BUCKETS = BUCKET_EDGES.length + 1;

/** Weight of the newest batch in its bucket's sums. */
const SMOOTHING = 0.3;

/** The width bucket of a pair (or batch) of `length` tokens. */
export function bucketOf(length: number): number {
  let bucket = 0;
  while (bucket < BUCKET_EDGES.length && length > (BUCKET_EDGES[bucket] as number)) bucket += 1;
  return bucket;
}

export interface BatchRun {
  /** Tokens of the longest pair: every pair is padded to it. */
  width: number;
  /** Padded token slots: pairs × width. */
  slots: number;
  /** Real tokens, before padding. */
  tokens: number;
  seconds: number;
}

export class BatchCost {
  readonly #seconds = new Float64Array(BUCKETS);
  readonly #slots = new Float64Array(BUCKETS);
  readonly #tokens = new Float64Array(BUCKETS);
  /** The same sums over every width: for a width no batch has had yet. */
  #allSeconds = 0;
  #allSlots = 0;
  #allTokens = 0;

  /** True once a batch has been measured. */
  get measured(): boolean {
    return this.#allSlots > 0;
  }

  observe(run: BatchRun): void {
    if (!(run.seconds > 0) || run.slots <= 0 || run.tokens <= 0) return;
    const b = bucketOf(run.width);
    const keep = (this.#slots[b] as number) > 0 ? 1 - SMOOTHING : 0;
    this.#seconds[b] = (this.#seconds[b] as number) * keep + run.seconds;
    this.#slots[b] = (this.#slots[b] as number) * keep + run.slots;
    this.#tokens[b] = (this.#tokens[b] as number) * keep + run.tokens;
    const keepAll = this.#allSlots > 0 ? 1 - SMOOTHING : 0;
    this.#allSeconds = this.#allSeconds * keepAll + run.seconds;
    this.#allSlots = this.#allSlots * keepAll + run.slots;
    this.#allTokens = this.#allTokens * keepAll + run.tokens;
  }

  /** Seconds per padded slot in batches of this width bucket (0 before any batch). */
  secondsPerSlot(bucket: number): number {
    const slots = this.#slots[bucket] as number;
    if (slots > 0) return (this.#seconds[bucket] as number) / slots;
    return this.#allSlots > 0 ? this.#allSeconds / this.#allSlots : 0;
  }

  /** Padded slots per real token in batches of this width bucket (1 before any batch). */
  slotsPerToken(bucket: number): number {
    const tokens = this.#tokens[bucket] as number;
    if (tokens > 0) return (this.#slots[bucket] as number) / tokens;
    return this.#allTokens > 0 ? this.#allSlots / this.#allTokens : 1;
  }

  /** Seconds to run `tokens` real tokens of pairs in this width bucket, padded as such batches were. */
  secondsForTokens(bucket: number, tokens: number): number {
    return tokens * this.slotsPerToken(bucket) * this.secondsPerSlot(bucket);
  }
}
