import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { RerankError } from '../../server/errors.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { BatchQueue, type BatchQueueOptions, type QueueLimits } from '../../server/engine/batch-queue.ts';
import type { BatchRunResult, BatchScorer } from '../../server/engine/onnx-model.ts';
import type { EncodedPair } from '../../server/engine/pair-tokenizer.ts';

/** A pair whose first id encodes who sent it, so the fake's logit tells pairs apart. */
function pair(tag: number, length: number): EncodedPair {
  const ids = new Int32Array(length);
  ids[0] = tag;
  return { ids, length };
}

/**
 * Stands in for the ONNX model: the logit of a pair is its tag, each run waits until the test releases it
 * (or resolves at once with `auto`), and every batch is recorded.
 */
class FakeModel implements BatchScorer {
  readonly batches: EncodedPair[][] = [];
  auto = false;
  /** The run time each batch reports. */
  seconds = 0.001;
  failNext: Error | undefined;
  #gates: (() => void)[] = [];
  #running = 0;
  maxConcurrent = 0;

  async run(pairs: readonly EncodedPair[]): Promise<BatchRunResult> {
    this.batches.push([...pairs]);
    this.#running += 1;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.#running);
    try {
      if (!this.auto) await new Promise<void>((resolve) => this.#gates.push(resolve));
      else await nextTurn();
      const failure = this.failNext;
      if (failure) {
        this.failNext = undefined;
        throw failure;
      }
      return { logits: Float32Array.from(pairs, (p) => p.ids[0] as number), seconds: this.seconds, nonFinite: 0 };
    } finally {
      this.#running -= 1;
    }
  }

  /** Lets the oldest waiting run finish; waits until the model has been asked for one. */
  async release(): Promise<void> {
    while (this.#gates.length === 0) await nextTurn();
    (this.#gates.shift() as () => void)();
    await nextTurn();
  }

  lengths(batch: number): number[] {
    return (this.batches[batch] ?? []).map((p) => p.length);
  }
}

function setup(limits: Partial<QueueLimits> = {}, options: Partial<BatchQueueOptions> = {}) {
  const model = new FakeModel();
  const current: QueueLimits = { maxBatchTokens: 1000, maxBatchSize: 8, maxQueuedPairs: 100, maxPaddingRatio: 1, ...limits };
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const queue = new BatchQueue({ version: 'v1', model, limits: () => current, metrics, ...options });
  return { model, queue, limits: current, metrics };
}

const isKind = (kind: RerankError['kind']) => (error: unknown) => error instanceof RerankError && error.kind === kind;

describe('BatchQueue', () => {
  it('scores every pair and returns logits in request order', async () => {
    const { model, queue } = setup();
    model.auto = true;
    const result = await queue.score([pair(3, 5), pair(1, 9), pair(2, 7)]);
    assert.deepEqual([...result.logits], [3, 1, 2]);
    assert.ok(result.queueSeconds >= 0 && result.inferenceSeconds >= 0);
  });

  it('packs pairs of several concurrent requests into shared batches', async () => {
    const { model, queue } = setup({ maxBatchSize: 8 });
    model.auto = true;
    const requests = [0, 1, 2, 3].map((r) => queue.score([pair(r * 10 + 1, 20), pair(r * 10 + 2, 20)]));
    const results = await Promise.all(requests);
    results.forEach((result, r) => assert.deepEqual([...result.logits], [r * 10 + 1, r * 10 + 2]));
    assert.equal(model.batches.length, 1, 'all 8 pairs in one run');
  });

  it('respects the token budget and the batch size, and reads them for every batch', async () => {
    const { model, queue, limits } = setup({ maxBatchTokens: 100, maxBatchSize: 3 });
    const done = queue.score(Array.from({ length: 10 }, (_, i) => pair(i, 30)));
    await nextTurn();
    assert.equal(model.batches[0]?.length, 3, 'size cap');
    limits.maxBatchSize = 10;
    await model.release();
    assert.equal(model.batches[1]?.length, 3, 'token budget: 3 × 30 ≤ 100 < 4 × 30');
    limits.maxBatchTokens = 1000;
    await model.release();
    assert.equal(model.batches[2]?.length, 4, 'the rest, under the new budget');
    await model.release();
    await done;
    for (const batch of model.batches.slice(0, 2)) assert.ok(batch.length * Math.max(...batch.map((p) => p.length)) <= 100);
  });

  it('runs a pair longer than the budget alone', async () => {
    const { model, queue } = setup({ maxBatchTokens: 100 });
    model.auto = true;
    const result = await queue.score([pair(1, 500), pair(2, 10)]);
    assert.deepEqual([...result.logits], [1, 2]);
    assert.deepEqual(model.lengths(0), [500]);
  });

  it('runs one batch at a time', async () => {
    const { model, queue } = setup({ maxBatchSize: 1 });
    model.auto = true;
    await Promise.all([queue.score([pair(1, 5), pair(2, 5)]), queue.score([pair(3, 5)])]);
    assert.equal(model.batches.length, 3);
    assert.equal(model.maxConcurrent, 1);
  });

  it('skips the pairs of a caller that went away, and answers it cancelled at once', async () => {
    const { model, queue } = setup({ maxBatchSize: 2 });
    const first = queue.score([pair(1, 10), pair(2, 10)]);
    await nextTurn(); // the first batch is running
    const controller = new AbortController();
    const leaving = queue.score([pair(7, 10), pair(8, 10), pair(9, 10)], { signal: controller.signal });
    const staying = queue.score([pair(4, 10)]);
    controller.abort();
    await assert.rejects(leaving, isKind('cancelled'));
    assert.equal(queue.pendingPairs, 1);
    await model.release();
    await model.release();
    assert.deepEqual([...(await first).logits], [1, 2]);
    assert.deepEqual([...(await staying).logits], [4]);
    const ran = model.batches.flat().map((p) => p.ids[0]);
    assert.ok(!ran.includes(7) && !ran.includes(8) && !ran.includes(9), `ran ${ran.join(',')}`);
  });

  it('refuses a request whose signal already fired', async () => {
    const { queue, model } = setup();
    await assert.rejects(queue.score([pair(1, 5)], { signal: AbortSignal.abort() }), isKind('cancelled'));
    assert.equal(model.batches.length, 0);
  });

  it('refuses work beyond maxQueuedPairs as overloaded with a Retry-After, and accepts it once there is room', async () => {
    const { model, queue } = setup({ maxQueuedPairs: 4, maxBatchSize: 2 });
    const running = queue.score([pair(1, 5), pair(2, 5)]);
    await nextTurn(); // those two are running: the queue is empty again
    const queued = queue.score([pair(3, 5), pair(4, 5), pair(5, 5)]);
    await assert.rejects(queue.score([pair(6, 5), pair(7, 5)]), (error: unknown) => {
      assert.ok(isKind('overloaded')(error));
      assert.ok((error as RerankError).retryAfterSeconds !== undefined && (error as RerankError).retryAfterSeconds! >= 1);
      return true;
    });
    const fits = queue.score([pair(8, 5)]);
    model.auto = true;
    await model.release();
    await Promise.all([running, queued, fits]);
  });

  it('estimates Retry-After from recent throughput', async () => {
    const model = new FakeModel();
    model.seconds = 1;
    let clock = 0;
    const limits: QueueLimits = { maxBatchTokens: 1000, maxBatchSize: 2, maxQueuedPairs: 10, maxPaddingRatio: 1 };
    const queue = new BatchQueue({ version: 'v1', model, limits: () => limits, now: () => clock });
    const backlog = queue.score(Array.from({ length: 10 }, (_, i) => pair(i, 5)));
    await nextTurn();
    clock += 1000; // 2 pairs per second
    await model.release();
    // The next 2 are running, 6 wait; 10 more would be 6 over the limit: 3 seconds at 2 pairs/s.
    assert.equal(queue.pendingPairs, 6);
    await assert.rejects(queue.score(Array.from({ length: 10 }, (_, i) => pair(i, 5))), (error: unknown) => {
      assert.equal((error as RerankError).retryAfterSeconds, 3);
      return true;
    });
    model.auto = true;
    await model.release();
    await backlog;
  });

  it('refuses a request larger than the whole queue as too large, not overloaded', async () => {
    const { queue } = setup({ maxQueuedPairs: 2 });
    await assert.rejects(queue.score([pair(1, 5), pair(2, 5), pair(3, 5)]), isKind('payload_too_large'));
  });

  it('a model error rejects only the requests in that batch, and the loop goes on', async () => {
    const { model, queue } = setup({ maxBatchSize: 2, maxPaddingRatio: 0 });
    const a = assert.rejects(queue.score([pair(1, 10), pair(2, 10)]), isKind('model'));
    const b = queue.score([pair(3, 20), pair(4, 20)]);
    const c = queue.score([pair(5, 10), pair(6, 30)]);
    model.failNext = new Error('onnx exploded');
    await model.release();
    await a;
    model.auto = true;
    await model.release();
    assert.deepEqual([...(await b).logits], [3, 4]);
    assert.deepEqual([...(await c).logits], [5, 6]);
    assert.deepEqual(model.lengths(0), [10, 10], 'the failed batch held only the first request');
  });

  it('a request whose pairs span a failed batch is rejected and its other pairs do not run', async () => {
    const { model, queue } = setup({ maxBatchSize: 1 });
    const spread = assert.rejects(queue.score([pair(1, 10), pair(2, 10), pair(3, 10)]), isKind('model'));
    model.failNext = new Error('boom');
    await model.release();
    await spread;
    assert.equal(queue.pendingPairs, 0);
    await queue.drain();
    assert.equal(model.batches.length, 1);
  });

  it('drain waits for queued and running work; close refuses new work', async () => {
    const { model, queue } = setup({ maxBatchSize: 1 });
    const work = queue.score([pair(1, 5), pair(2, 5)]);
    let drained = false;
    const draining = queue.drain().then(() => (drained = true));
    await model.release();
    assert.equal(drained, false);
    await model.release();
    await draining;
    assert.deepEqual([...(await work).logits], [1, 2]);
    await queue.close();
    await assert.rejects(queue.score([pair(1, 5)]), isKind('unavailable'));
  });

  it('exports batch, padding, queue and inference metrics', async () => {
    const { model, queue, metrics } = setup({ maxBatchSize: 4 });
    model.auto = true;
    await queue.score([pair(1, 10), pair(2, 20)]);
    const text = await metrics.registry.metrics();
    assert.match(text, /reranker_batch_size_sum\{version="v1"\} 2/);
    assert.match(text, /reranker_batch_tokens_sum\{version="v1"\} 40/);
    assert.match(text, /reranker_batch_padding_ratio_sum\{version="v1"\} 0.25/);
    assert.match(text, /reranker_queue_duration_seconds_count\{version="v1"\} 2/);
    assert.match(text, /reranker_inference_duration_seconds_count\{version="v1"\} 1/);
    assert.match(text, /reranker_tokens_total\{version="v1"\} 30/);
    assert.match(text, /reranker_queue_depth\{version="v1"\} 0/);
  });

  it("two queues of one version (a model switch: the new one and the draining one) add up in the depth gauge", async () => {
    const current: QueueLimits = { maxBatchTokens: 1000, maxBatchSize: 1, maxQueuedPairs: 100, maxPaddingRatio: 1 };
    const metrics = new ServerMetrics({ defaultMetrics: false });
    const [oldModel, newModel] = [new FakeModel(), new FakeModel()];
    const draining = new BatchQueue({ version: 'v1', model: oldModel, limits: () => current, metrics });
    const fresh = new BatchQueue({ version: 'v1', model: newModel, limits: () => current, metrics });
    const depth = async () => (await metrics.queueDepth.get()).values.find((v) => v.labels.version === 'v1')?.value;
    const oldWork = draining.score([pair(1, 5), pair(2, 5), pair(3, 5)]);
    const newWork = fresh.score([pair(4, 5), pair(5, 5)]);
    await nextTurn();
    assert.equal(await depth(), 3, 'one pair of each queue is running: 2 + 1 wait');
    for (let i = 0; i < 3; i += 1) await oldModel.release();
    await oldWork;
    assert.equal(await depth(), 1, 'the drained queue no longer counts; the new one still waits');
    for (let i = 0; i < 2; i += 1) await newModel.release();
    await newWork;
    assert.equal(await depth(), 0);
  });

  it('in mixed order, groups similar lengths across requests', async () => {
    const { model, queue } = setup({ maxBatchSize: 4, maxBatchTokens: 10_000, maxPaddingRatio: 0.1 }, { order: 'mixed' });
    model.auto = true;
    await Promise.all([
      queue.score([pair(1, 100), pair(2, 10), pair(3, 101)]),
      queue.score([pair(4, 11), pair(5, 99), pair(6, 12)]),
    ]);
    assert.deepEqual(
      model.batches.map((batch) => batch.map((p) => p.length).sort((x, y) => x - y)),
      [
        [99, 100, 101],
        [10, 11, 12],
      ],
    );
  });

  it('first come: of requests sent at once, each is answered before the next; only a finishing request shares its batch', async () => {
    const { model, queue } = setup({ maxBatchSize: 4, maxBatchTokens: 10_000, maxPaddingRatio: 0.1 });
    model.auto = true;
    const answered: number[] = [];
    await Promise.all(
      [
        [pair(1, 100), pair(2, 10), pair(3, 101)],
        [pair(4, 11), pair(5, 99), pair(6, 12)],
        [pair(7, 12), pair(8, 100)],
      ].map((pairs, r) => queue.score(pairs).then((result) => {
        answered.push(r);
        assert.deepEqual([...result.logits], pairs.map((p) => p.ids[0]), 'logits in request order');
      })),
    );
    assert.deepEqual(answered, [0, 1, 2]);
    assert.deepEqual(
      model.batches.map((batch) => batch.map((p) => p.ids[0])),
      [
        [1, 3], // request 1's long pairs: request 2's 99 would fit, but request 1 is not done after this batch
        [2, 4, 6], // request 1's last pair, topped up with request 2's short ones
        [5, 8], // request 2's last pair, topped up with request 3's pair of fitting length
        [7],
      ],
    );
  });
});
