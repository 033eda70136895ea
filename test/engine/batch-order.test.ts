import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FirstComePairs, MixedPairs, type PendingPairs, type QueuedPair } from '../../server/engine/batch-order.ts';
import { paddingRatio, type PackLimits } from '../../server/engine/batch-packer.ts';

/** A waiting pair of request `request` (its age: 0 is the oldest). */
type Pair = QueuedPair<number> & { index: number };

/** Requests of these pair lengths, added in the order listed, with rising order numbers. */
function fill(store: PendingPairs<number, Pair>, requests: readonly (readonly number[])[]): void {
  let order = 0;
  requests.forEach((lengths, request) => {
    store.add(
      request,
      lengths.map((length, index) => ({ length, order: order++, request, index })),
    );
  });
}

/** Takes batches until nothing waits. */
function drain(store: PendingPairs<number, Pair>, limits: PackLimits): Pair[][] {
  const batches: Pair[][] = [];
  while (store.size > 0) {
    const batch = store.take(limits);
    assert.ok(batch.length > 0, 'a batch while pairs wait');
    batches.push(batch);
    assert.ok(batches.length < 100_000);
  }
  return batches;
}

/** Deterministic lengths in [min, max]. */
function lengths(count: number, seed: number, min = 30, max = 410): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return min + (state % (max - min + 1));
  });
}

/** Index of the batch in which each request got its last pair. */
function completions(batches: readonly Pair[][], requests: number): number[] {
  const last = new Array<number>(requests).fill(-1);
  batches.forEach((batch, b) => {
    for (const pair of batch) last[pair.request] = b;
  });
  return last;
}

function assertWithinLimits(batches: readonly Pair[][], limits: PackLimits): void {
  for (const batch of batches) {
    assert.ok(batch.length <= limits.maxBatchSize, 'size cap');
    if (batch.length === 1) continue; // a lone pair runs whatever its length
    const lengthsOfBatch = batch.map((p) => p.length);
    assert.ok(batch.length * Math.max(...lengthsOfBatch) <= limits.maxBatchTokens, 'token budget');
    assert.ok(paddingRatio(lengthsOfBatch) <= (limits.maxPaddingRatio ?? 0.05) + 1e-12, 'padding cap');
  }
}

/** Every pair of every request taken exactly once. */
function assertEachOnce(batches: readonly Pair[][], requests: readonly (readonly number[])[]): void {
  const seen = new Set<string>();
  for (const pair of batches.flat()) {
    const key = `${pair.request}/${pair.index}`;
    assert.ok(!seen.has(key), `${key} taken twice`);
    seen.add(key);
  }
  assert.equal(seen.size, requests.reduce((n, r) => n + r.length, 0));
}

/**
 * First come: a batch holds a younger request's pairs only beside the last pairs of every older one in
 * it, so requests finish in arrival order, and each request's batches follow one another.
 */
function assertFirstCome(batches: readonly Pair[][], requests: number): void {
  const done = completions(batches, requests);
  batches.forEach((batch, b) => {
    const inBatch = [...new Set(batch.map((p) => p.request))].sort((x, y) => x - y);
    for (const older of inBatch.slice(0, -1)) assert.equal(done[older], b, `batch ${b} takes request ${inBatch.at(-1)} before request ${older} is done`);
  });
  for (let r = 1; r < requests; r += 1) assert.ok((done[r] as number) >= (done[r - 1] as number), 'answered in arrival order');
  for (let r = 0; r < requests; r += 1) {
    const holding = batches.flatMap((batch, b) => (batch.some((p) => p.request === r) ? [b] : []));
    assert.equal((holding.at(-1) as number) - (holding[0] as number) + 1, holding.length, `request ${r}'s batches are consecutive`);
  }
}

const RAG_LIMITS: PackLimits = { maxBatchTokens: 16_384, maxBatchSize: 32, maxPaddingRatio: 0.05 };

describe('first-come batches', () => {
  const rag = [1, 2, 3, 4].map((seed) => lengths(100, seed));

  it('four RAG requests sent at once: each finishes before the next, and the first after about its own work', () => {
    const store = new FirstComePairs<number, Pair>();
    fill(store, rag);
    const batches = drain(store, RAG_LIMITS);
    assertEachOnce(batches, rag);
    assertWithinLimits(batches, RAG_LIMITS);
    assertFirstCome(batches, rag.length);
    const slots = batches.map((batch) => batch.length * Math.max(...batch.map((p) => p.length)));
    const total = slots.reduce((a, b) => a + b, 0);
    const done = completions(batches, rag.length);
    // Padded work run by the time each request is answered, as a share of all the work.
    const shares = done.map((b) => slots.slice(0, b + 1).reduce((a, s) => a + s, 0) / total);
    shares.forEach((share, r) => assert.ok(share <= (r + 1) / 4 + 0.05, `request ${r} answered after ${share.toFixed(2)} of the work`));
  });

  it('the same requests mixed (the other order) are answered together at the end', () => {
    const store = new MixedPairs<number, Pair>();
    fill(store, rag);
    const batches = drain(store, RAG_LIMITS);
    assertEachOnce(batches, rag);
    assertWithinLimits(batches, RAG_LIMITS);
    const done = completions(batches, rag.length);
    for (const b of done) assert.ok(b >= batches.length * 0.8, `a request answered at batch ${b} of ${batches.length}`);
  });

  it('takes the longest pairs of the oldest request first, in runs of its sorted lengths', () => {
    const store = new FirstComePairs<number, Pair>();
    fill(store, [[10, 40, 11, 41, 12], [40, 41]]);
    const limits = { maxBatchTokens: 1000, maxBatchSize: 8, maxPaddingRatio: 0.1 };
    assert.deepEqual(
      store.take(limits).map((p) => [p.request, p.length]),
      [
        [0, 40],
        [0, 41],
      ],
      'the 40s of request 1, not those of request 2 (it is not done after this batch)',
    );
    assert.deepEqual(
      store.take(limits).map((p) => [p.request, p.length]),
      [
        [0, 10],
        [0, 11],
        [0, 12],
      ],
    );
    assert.deepEqual(
      store.take(limits).map((p) => [p.request, p.length]),
      [
        [1, 40],
        [1, 41],
      ],
    );
    assert.equal(store.size, 0);
  });

  it("tops up the batch that takes a request's last pairs with the next requests' pairs of fitting length", () => {
    const store = new FirstComePairs<number, Pair>();
    fill(store, [[100], [99, 10, 101], [100, 98]]);
    const limits = { maxBatchTokens: 1000, maxBatchSize: 8, maxPaddingRatio: 0.1 };
    assert.deepEqual(
      store.take(limits).map((p) => [p.request, p.length]),
      [
        [0, 100],
        [1, 99],
        [1, 101],
      ],
      'request 2 is not done (its 10 does not fit), so request 3 waits',
    );
    assert.deepEqual(
      store.take(limits).map((p) => [p.request, p.length]),
      [[1, 10]],
      'nothing of request 3 fits beside a 10',
    );
    assert.deepEqual(
      store.take(limits).map((p) => [p.request, p.length]),
      [
        [2, 98],
        [2, 100],
      ],
    );
  });

  it('keeps the size cap and the token budget across requests', () => {
    const store = new FirstComePairs<number, Pair>();
    fill(store, [[50], [50, 50, 50], [50, 50]]);
    assert.equal(store.take({ maxBatchTokens: 10_000, maxBatchSize: 3 }).length, 3);
    assert.equal(store.take({ maxBatchTokens: 100, maxBatchSize: 32 }).length, 2, '2 × 50 ≤ 100 < 3 × 50');
    assert.deepEqual(
      store.take({ maxBatchTokens: 10_000, maxBatchSize: 32 }).map((p) => p.request),
      [2],
    );
  });

  it('runs a pair longer than the budget alone', () => {
    const store = new FirstComePairs<number, Pair>();
    fill(store, [[500, 10], [10]]);
    assert.deepEqual(
      store.take({ maxBatchTokens: 100, maxBatchSize: 8 }).map((p) => p.length),
      [500],
    );
  });

  it('remove drops the waiting pairs of one request only', () => {
    for (const store of [new FirstComePairs<number, Pair>(), new MixedPairs<number, Pair>()]) {
      fill(store, [[10, 20], [10, 30, 40], [50]]);
      assert.deepEqual(
        store
          .remove(1)
          .map((p) => p.length)
          .sort((a, b) => a - b),
        [10, 30, 40],
      );
      assert.equal(store.size, 3);
      assert.deepEqual(store.remove(1), []);
      const left = drain(store, { maxBatchTokens: 1000, maxBatchSize: 8, maxPaddingRatio: 1 }).flat();
      assert.deepEqual(left.map((p) => p.request).sort(), [0, 0, 2]);
    }
  });

  it('properties: every pair once, within the limits, first come first served', () => {
    const requestsArb = fc.array(fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 60 }), { minLength: 1, maxLength: 8 });
    const limitsArb = fc.record({
      maxBatchTokens: fc.integer({ min: 1, max: 20_000 }),
      maxBatchSize: fc.integer({ min: 1, max: 64 }),
      maxPaddingRatio: fc.double({ min: 0, max: 1, noNaN: true }),
    });
    fc.assert(
      fc.property(requestsArb, limitsArb, (requests, limits) => {
        const store = new FirstComePairs<number, Pair>();
        fill(store, requests);
        const batches = drain(store, limits);
        assertEachOnce(batches, requests);
        assertWithinLimits(batches, limits);
        assertFirstCome(batches, requests.length);
      }),
      { numRuns: 200 },
    );
  });
});
