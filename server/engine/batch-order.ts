import { compareByLength, packSorted, topUpSorted, type BatchShape, type PackLimits, type PendingPair } from './batch-packer.ts';

/**
 * The order in which waiting pairs go into batches: two stores of pending pairs behind one interface.
 *
 * `first-come` (what the server runs): a batch takes the pairs of the oldest waiting request, length-sorted
 * within it (longest first, so its batches are contiguous runs of its sorted pairs, as a length-sorted
 * loop over that request alone would take them). Only the batch that takes a request's last pairs is
 * topped up, with the next request's pairs of fitting lengths (then the next one's, while each is used
 * up). A request's pairs so run together and early: of four requests sent at once, the first is answered
 * after about a quarter of the work instead of all four together at the end, and no pair waits behind a
 * younger request's.
 *
 * `mixed`: every batch is anchored at the oldest waiting pair and filled with the pairs of any request
 * whose lengths are nearest it. Its batches are denser, but concurrent requests all finish together at
 * the end. Kept to measure first-come against (bench/overload.bench.ts).
 */
export type BatchOrder = 'first-come' | 'mixed';

/** A waiting pair and the request it belongs to. */
export interface QueuedPair<Request> extends PendingPair {
  readonly request: Request;
}

export interface PendingPairs<Request, Entry extends QueuedPair<Request>> {
  /** Pairs waiting. */
  readonly size: number;
  /** Adds one request's pairs; their `order` must be above that of every pair added before. */
  add(request: Request, entries: readonly Entry[]): void;
  /** Removes and returns the next batch; empty only when nothing waits. */
  take(limits: PackLimits): Entry[];
  /** Removes and returns the pairs of `request` still waiting. */
  remove(request: Request): Entry[];
}

export function pendingPairs<Request, Entry extends QueuedPair<Request>>(order: BatchOrder): PendingPairs<Request, Entry> {
  return order === 'mixed' ? new MixedPairs<Request, Entry>() : new FirstComePairs<Request, Entry>();
}

/** See `first-come` above. */
export class FirstComePairs<Request, Entry extends QueuedPair<Request>> implements PendingPairs<Request, Entry> {
  /** Each waiting request's pairs sorted by `compareByLength`; a Map iterates in insertion (arrival) order. */
  readonly #byRequest = new Map<Request, Entry[]>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(request: Request, entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    if (this.#byRequest.has(request)) throw new Error('a request adds its pairs once');
    this.#byRequest.set(request, [...entries].sort(compareByLength));
    this.#size += entries.length;
  }

  take(limits: PackLimits): Entry[] {
    const batch: Entry[] = [];
    let shape: BatchShape | undefined;
    for (const [request, sorted] of this.#byRequest) {
      let range;
      if (shape === undefined) {
        range = packSorted(sorted, sorted.length - 1, limits);
        shape = shapeOf(sorted, range.start, range.end);
      } else {
        range = topUpSorted(sorted, shape, limits);
      }
      for (const entry of sorted.splice(range.start, range.end - range.start)) batch.push(entry);
      // A request with pairs left keeps the younger ones out of this batch: they would only delay it.
      if (sorted.length > 0) break;
      this.#byRequest.delete(request);
    }
    this.#size -= batch.length;
    return batch;
  }

  remove(request: Request): Entry[] {
    const sorted = this.#byRequest.get(request);
    if (sorted === undefined) return [];
    this.#byRequest.delete(request);
    this.#size -= sorted.length;
    return sorted;
  }
}

/** See `mixed` above. */
export class MixedPairs<Request, Entry extends QueuedPair<Request>> implements PendingPairs<Request, Entry> {
  /** Every waiting pair sorted by `compareByLength`: the packer's view. */
  #sorted: Entry[] = [];
  /** Waiting pairs in arrival order from `#head` on (gone ones are skipped lazily): finds the oldest. */
  #arrivals: Entry[] = [];
  #head = 0;
  /** Pairs taken or removed that `#arrivals` may still hold. */
  readonly #gone = new WeakSet<Entry>();

  get size(): number {
    return this.#sorted.length;
  }

  add(_request: Request, entries: readonly Entry[]): void {
    for (const entry of entries) this.#arrivals.push(entry);
    mergeInto(this.#sorted, [...entries].sort(compareByLength));
  }

  take(limits: PackLimits): Entry[] {
    while (this.#head < this.#arrivals.length && this.#gone.has(this.#arrivals[this.#head] as Entry)) this.#head += 1;
    if (this.#head > 1024 && this.#head * 2 > this.#arrivals.length) {
      this.#arrivals = this.#arrivals.slice(this.#head);
      this.#head = 0;
    }
    const oldest = this.#arrivals[this.#head];
    if (oldest === undefined) return [];
    const { start, end } = packSorted(this.#sorted, lowerBound(this.#sorted, oldest), limits);
    const batch = this.#sorted.splice(start, end - start);
    for (const entry of batch) this.#gone.add(entry);
    return batch;
  }

  remove(request: Request): Entry[] {
    const removed: Entry[] = [];
    const kept: Entry[] = [];
    for (const entry of this.#sorted) {
      if (entry.request === request) {
        this.#gone.add(entry);
        removed.push(entry);
      } else kept.push(entry);
    }
    if (removed.length > 0) this.#sorted = kept;
    return removed;
  }
}

/** The shape of `sorted[start, end)`, a run of a length-sorted list (so its last entry is its longest). */
function shapeOf(sorted: readonly PendingPair[], start: number, end: number): BatchShape {
  let tokens = 0;
  for (let i = start; i < end; i += 1) tokens += (sorted[i] as PendingPair).length;
  return { count: end - start, longest: (sorted[end - 1] as PendingPair).length, tokens };
}

/** Index of `entry` in a list sorted by `compareByLength` (it is there). */
function lowerBound(sorted: readonly PendingPair[], entry: PendingPair): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareByLength(sorted[mid] as PendingPair, entry) < 0) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Merges `added` (sorted) into `sorted` in place, from the back: only entries longer than the new ones move. */
function mergeInto<Entry extends PendingPair>(sorted: Entry[], added: readonly Entry[]): void {
  let i = sorted.length - 1;
  let j = added.length - 1;
  for (const entry of added) sorted.push(entry);
  let k = sorted.length - 1;
  while (j >= 0) {
    if (i >= 0 && compareByLength(sorted[i] as Entry, added[j] as Entry) > 0) sorted[k--] = sorted[i--] as Entry;
    else sorted[k--] = added[j--] as Entry;
  }
}
