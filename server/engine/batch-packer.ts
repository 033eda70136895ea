/**
 * Choosing the next inference batch: pure functions over plain data.
 *
 * A batch grows from an anchor pair (the queue's order decides which: the oldest waiting request's longest
 * pair first come, the oldest pair in the mixed order; see batch-order.ts). Around it go the pending pairs
 * whose lengths are closest to its own, so the batch holds similar lengths and little of it is padding.
 * Every pair in a batch is padded to the longest, so a batch costs `count × longest` token slots; that
 * product stays within `maxBatchTokens` (TEI's max-batch-tokens), except for a lone pair longer than the
 * budget, which still runs, alone. A batch may be topped up from another length-sorted list (a younger
 * request's pairs) under the same limits.
 */

export interface PackLimits {
  /** Padded token slots (count × longest) one batch may hold. */
  maxBatchTokens: number;
  /** Pairs one batch may hold. */
  maxBatchSize: number;
  /**
   * Largest share of a batch's slots that may be padding (`serving.maxPaddingRatio`, default DEFAULT_MAX_PADDING_RATIO). A pair whose
   * addition would pass it is left for a later batch nearer its own length: on CPU a padded slot costs as
   * much as a real token, so mixing a 40-token pair into a batch of 400-token pairs costs more than
   * running it later. 1 turns this off.
   */
  maxPaddingRatio?: number;
}

/** What the packer needs to know about a pending pair. */
export interface PendingPair {
  /** Tokens, special tokens included. */
  length: number;
  /** Arrival order: smaller is older. Unique. */
  order: number;
}

/**
 * Measured on CPU (MiniLM-L6-shaped model, 20–400-token documents): the same pairs packed with caps of
 * 0.02–0.05 ran at 21–23 pairs/s, 0.1 at ~19–20, no cap at ~16 — more, smaller batches lose less to
 * padding than they lose to per-run overhead. With CPU runs sliced (run-split.ts), `npm run bench:batch-limits`
 * medians against 0.05: no cap 0.86 on that workload (FP32); 0.15 1.04 on int8 short requests with 4 clients,
 * and on FP32 short requests 1.04 with 1 client but 0.87 with 4, 0.3 and no cap 0.81–0.85. None clears the
 * bench's 5 % bar. A GPU, which wants large batches, may prefer a higher cap.
 */
export const DEFAULT_MAX_PADDING_RATIO = 0.05;

/** A run of consecutive entries `[start, end)` of a length-sorted pending list. */
export interface BatchRange {
  start: number;
  end: number;
}

/** Orders pending pairs by length, then age: the order `packSorted` expects. */
export function compareByLength(a: PendingPair, b: PendingPair): number {
  return a.length - b.length || a.order - b.order;
}

/** What a batch holds so far: enough to tell what one more pair would cost. */
export interface BatchShape {
  /** Pairs in it. */
  count: number;
  /** Tokens of its longest pair: every pair is padded to it. */
  longest: number;
  /** Tokens of its pairs, before padding. */
  tokens: number;
}

/**
 * The next batch from a list sorted by `compareByLength`, anchored at `anchor` (the index of the oldest
 * pair). Because it grows outwards from the anchor one neighbour at a time, the batch is a contiguous run
 * of the sorted list, and its longest pair is its last. O(batch size).
 */
export function packSorted(sorted: readonly PendingPair[], anchor: number, limits: PackLimits): BatchRange {
  const first = sorted[anchor];
  if (first === undefined) throw new RangeError(`anchor ${anchor} outside the ${sorted.length} pending pairs`);
  const shape = { count: 1, longest: first.length, tokens: first.length };
  return growSorted(sorted, { start: anchor, end: anchor + 1 }, shape, first.length, limits);
}

/**
 * Tops up a batch of shape `shape` (updated in place) with pairs of another length-sorted list: the run
 * of it whose lengths are nearest the batch's longest pair, as long as they fit the same limits. The
 * returned range of `sorted` is what joins the batch (possibly empty). O(pairs taken + log n).
 */
export function topUpSorted(sorted: readonly PendingPair[], shape: BatchShape, limits: PackLimits): BatchRange {
  // First entry longer than the batch's longest: shorter ones to its left, longer ones from it on.
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((sorted[mid] as PendingPair).length <= shape.longest) low = mid + 1;
    else high = mid;
  }
  return growSorted(sorted, { start: low, end: low }, shape, shape.longest, limits);
}

/**
 * Grows `range` of `sorted` outwards, the entry whose length is nearest `center` first, while the batch
 * (`shape`, which already counts the range and anything else in the batch; updated in place) stays within
 * the size cap, the token budget and the padding cap. Entries left of the range must not be longer than
 * `center`, entries right of it not shorter.
 */
function growSorted(sorted: readonly PendingPair[], range: BatchRange, shape: BatchShape, center: number, limits: PackLimits): BatchRange {
  const maxCount = Math.max(1, Math.floor(limits.maxBatchSize));
  const budget = limits.maxBatchTokens;
  const paddingRatio = limits.maxPaddingRatio ?? DEFAULT_MAX_PADDING_RATIO;
  let { start, end } = range;
  // Each side closes for good at its first misfit: further out on the left the pairs only get shorter
  // (more padding, the same slots), on the right only longer (more padding and more slots), while the
  // batch only grows.
  let leftOpen = start > 0;
  let rightOpen = end < sorted.length;

  while ((leftOpen || rightOpen) && shape.count < maxCount) {
    const left = leftOpen ? (sorted[start - 1] as PendingPair) : undefined;
    const right = rightOpen ? (sorted[end] as PendingPair) : undefined;
    // The nearer length first; on a tie the shorter, which adds no slots to the pairs already in.
    const takeLeft = left !== undefined && (right === undefined || center - left.length <= right.length - center);
    const candidate = (takeLeft ? left : right) as PendingPair;
    const newLongest = Math.max(shape.longest, candidate.length);
    const slots = (shape.count + 1) * newLongest;
    const padding = slots - (shape.tokens + candidate.length);
    if (slots <= budget && padding <= paddingRatio * slots) {
      shape.count += 1;
      shape.tokens += candidate.length;
      shape.longest = newLongest;
      if (takeLeft) {
        start -= 1;
        leftOpen = start > 0;
      } else {
        end += 1;
        rightOpen = end < sorted.length;
      }
    } else if (takeLeft) {
      leftOpen = false;
    } else {
      rightOpen = false;
    }
  }
  return { start, end };
}

/**
 * The next batch from pending pairs in any order: indices into `pending`, oldest first. For callers that
 * keep no sorted list (and for tests); the queue keeps its list sorted and calls `packSorted`.
 */
export function packBatch(pending: readonly PendingPair[], limits: PackLimits): number[] {
  if (pending.length === 0) return [];
  const indices = pending.map((_, index) => index);
  indices.sort((a, b) => compareByLength(pending[a] as PendingPair, pending[b] as PendingPair));
  const sorted = indices.map((index) => pending[index] as PendingPair);
  let anchor = 0;
  for (let i = 1; i < sorted.length; i += 1) {
    if ((sorted[i] as PendingPair).order < (sorted[anchor] as PendingPair).order) anchor = i;
  }
  const { start, end } = packSorted(sorted, anchor, limits);
  return indices.slice(start, end).sort((a, b) => (pending[a] as PendingPair).order - (pending[b] as PendingPair).order);
}

/** Padding share of a batch of these lengths: padded slots that hold no token, over all slots. */
export function paddingRatio(lengths: readonly number[]): number {
  if (lengths.length === 0) return 0;
  let longest = 0;
  let total = 0;
  for (const length of lengths) {
    total += length;
    if (length > longest) longest = length;
  }
  const slots = longest * lengths.length;
  return slots === 0 ? 0 : (slots - total) / slots;
}
