import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { RerankError } from '../../server/errors.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { BatchQueue, type QueueLimits, type Reservation } from '../../server/engine/batch-queue.ts';
import type { BatchRunResult, BatchScorer } from '../../server/engine/onnx-model.ts';
import type { EncodedPair } from '../../server/engine/pair-tokenizer.ts';

/**
 * Admission by expected wait and client deadlines, on a stepped clock: each batch of the fake model "takes"
 * 10 ms per padded token slot, so every estimate below is exact arithmetic.
 */

const MS_PER_SLOT = 10;

/** Time and timers that move only when the test says. */
class SteppedClock {
  ms = 0;
  #timers: { due: number; callback: () => void; live: boolean }[] = [];
  readonly now = () => this.ms;
  readonly setTimer = (callback: () => void, delay: number) => {
    const timer = { due: this.ms + delay, callback, live: true };
    this.#timers.push(timer);
    return () => (timer.live = false);
  };
  advance(delay: number): void {
    this.ms += delay;
    for (const timer of this.#timers) {
      if (timer.live && timer.due <= this.ms) {
        timer.live = false;
        timer.callback();
      }
    }
  }
}

/**
 * Each run waits for `finish()`, which moves the clock by the batch's cost first. With `wallFactor` above 1
 * the clock moves that many times what the model reports as its own time (work outside the model run).
 */
class CostedModel implements BatchScorer {
  readonly batches: EncodedPair[][] = [];
  #finish: (() => void)[] = [];
  readonly clock: SteppedClock;
  wallFactor = 1;
  constructor(clock: SteppedClock) {
    this.clock = clock;
  }
  async run(pairs: readonly EncodedPair[]): Promise<BatchRunResult> {
    this.batches.push([...pairs]);
    const slots = pairs.length * Math.max(...pairs.map((p) => p.length));
    await new Promise<void>((resolve) =>
      this.#finish.push(() => {
        this.clock.advance(slots * MS_PER_SLOT * this.wallFactor);
        resolve();
      }),
    );
    return { logits: Float32Array.from(pairs, (p) => p.ids[0] as number), seconds: (slots * MS_PER_SLOT) / 1000, nonFinite: 0 };
  }
  /** Whether a batch is running (after the queue's loop had its turn). */
  get running(): boolean {
    return this.#finish.length > 0;
  }
  /** Finishes the running batch; waits until there is one. */
  async finish(): Promise<void> {
    while (this.#finish.length === 0) await nextTurn();
    (this.#finish.shift() as () => void)();
    await nextTurn();
  }
}

/** Deterministic numbers in [0, 1). */
function lcg(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const pairs = (count: number, length = 10, tag = 1): EncodedPair[] =>
  Array.from({ length: count }, () => {
    const ids = new Int32Array(length);
    ids[0] = tag;
    return { ids, length };
  });

function setup(limits: Partial<QueueLimits> = {}) {
  const clock = new SteppedClock();
  const model = new CostedModel(clock);
  const current: QueueLimits = { maxBatchTokens: 1000, maxBatchSize: 2, maxQueuedPairs: 1000, maxPaddingRatio: 1, maxQueueWaitMs: 500, ...limits };
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const queue = new BatchQueue({ version: 'v1', model, limits: () => current, metrics, now: clock.now, setTimer: clock.setTimer });
  return { clock, model, queue, metrics, limits: current };
}

async function sample(metrics: ServerMetrics, name: string, labels: Record<string, string> = { version: 'v1' }): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value;
}

const refusal = (kind: RerankError['kind'], check: (error: RerankError) => void = () => {}) => (error: unknown) => {
  assert.ok(error instanceof RerankError && error.kind === kind, `expected ${kind}, got ${String(error)}`);
  check(error);
  return true;
};

describe('BatchQueue admission by expected wait', () => {
  it('admits everything until a batch has been measured', async () => {
    const { queue, model } = setup({ maxQueueWaitMs: 1 });
    const work = [queue.score(pairs(10)), queue.score(pairs(10))];
    assert.equal(queue.expectedWaitSeconds(), 0);
    for (let i = 0; i < 10; i += 1) await model.finish();
    await Promise.all(work);
  });

  it('estimates the wait from the measured cost per padded token, exports it, and refuses past maxQueueWaitMs with an honest Retry-After', async () => {
    const { queue, model, metrics } = setup({ maxQueueWaitMs: 500 });
    const first = queue.score(pairs(2)); // one batch of 2 × 10 slots: 200 ms, measured
    await model.finish();
    await first;
    const backlog = queue.score(pairs(12)); // 6 batches of 200 ms: 1 running, 5 waiting
    await nextTurn();
    assert.equal(queue.expectedWaitSeconds(), 1.2, '5 waiting batches + the running one, 200 ms each');
    assert.equal(await sample(metrics, 'reranker_queue_expected_wait_seconds'), 1.2);
    await assert.rejects(
      queue.score(pairs(1)),
      refusal('overloaded', (error) => {
        assert.match(error.message, /expected wait 1\.2 s is over maxQueueWaitMs \(500 ms\)/);
        assert.equal(error.retryAfterSeconds, 1, '0.7 s over the limit, rounded up to whole seconds');
      }),
    );
    assert.equal(await sample(metrics, 'reranker_queue_refusals_total', { version: 'v1', reason: 'wait' }), 1);
    // Honest: after Retry-After (1 s) of work, the same request is admitted.
    for (let i = 0; i < 5; i += 1) await model.finish();
    assert.ok(queue.expectedWaitSeconds() <= 0.5, `${queue.expectedWaitSeconds()} s left`);
    const retried = queue.score(pairs(1));
    for (let i = 0; i < 2; i += 1) await model.finish();
    await Promise.all([backlog, retried]);
    assert.equal(await sample(metrics, 'reranker_queue_expected_wait_seconds'), 0);
  });

  it('staggers the Retry-After of requests refused together, within one queue length', async () => {
    const { queue, model, clock } = setup({ maxQueueWaitMs: 500 });
    const first = queue.score(pairs(2)); // 200 ms for 2 pairs: 0.1 s a pair
    await model.finish();
    await first;
    const backlog = queue.score(pairs(12)); // 1.2 s: 0.7 s over the limit
    await nextTurn();
    const told: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      await assert.rejects(
        queue.score(pairs(10)),
        refusal('overloaded', (error) => told.push(error.retryAfterSeconds ?? NaN)),
      );
    }
    // The first from 0.7 s, booking 1 s of work; the next after it, but never later than 0.7 + 0.5 s (one
    // queue length), where an unbounded booking would tell the third 2.7 s.
    assert.deepEqual(told, [1, 2, 2]);
    clock.advance(2000);
    // Once that time has passed, a refusal is told only what the queue itself is over.
    await assert.rejects(queue.score(pairs(10)), refusal('overloaded', (error) => assert.equal(error.retryAfterSeconds, 1)));
    for (let i = 0; i < 6; i += 1) await model.finish();
    await backlog;
  });

  it('counts the running batch only for what is left of it', async () => {
    const { queue, model, clock } = setup();
    const first = queue.score(pairs(2));
    await model.finish();
    await first;
    const running = queue.score(pairs(2));
    await nextTurn();
    assert.equal(queue.expectedWaitSeconds(), 0.2);
    clock.advance(150);
    assert.ok(Math.abs(queue.expectedWaitSeconds() - 0.05) < 1e-9);
    clock.advance(100);
    assert.equal(queue.expectedWaitSeconds(), 0, 'an overrunning batch is not a negative wait');
    await model.finish();
    await running;
  });

  it('Retry-After for a full queue (maxQueuedPairs) is the time to drain the excess', async () => {
    const { queue, model } = setup({ maxQueuedPairs: 10, maxQueueWaitMs: 0 });
    const first = queue.score(pairs(2));
    await model.finish();
    await first;
    const backlog = queue.score(pairs(10)); // 2 running, 8 waiting
    await nextTurn();
    // 8 waiting + 10 = 8 over the limit: 8 pairs × 10 tokens × 10 ms = 0.8 s → 1 s.
    await assert.rejects(queue.score(pairs(10)), refusal('overloaded', (error) => assert.equal(error.retryAfterSeconds, 1)));
    for (let i = 0; i < 5; i += 1) await model.finish();
    await backlog;
  });

  it('requests admitted and still tokenizing count in the wait of those after them, until queued or released', async () => {
    const { queue, model, metrics } = setup({ maxQueueWaitMs: 500 });
    for (let i = 0; i < 2; i += 1) {
      const warm = queue.score(pairs(2)); // measures 10 ms per slot, then 100 ms per 10-token pair
      await model.finish();
      await warm;
    }
    const first = queue.reserve(5); // tokenizing: 0.5 s of work ahead of later arrivals
    assert.equal(queue.expectedWaitSeconds(), 0.5);
    assert.equal(await sample(metrics, 'reranker_queue_expected_wait_seconds'), 0.5);
    const second = queue.reserve(1); // a wait of 0.5 s is not over 500 ms
    await assert.rejects(async () => queue.reserve(1), refusal('overloaded', (error) => assert.equal(error.retryAfterSeconds, 1)));
    first.release(); // its tokenizing failed
    first.release();
    assert.ok(Math.abs(queue.expectedWaitSeconds() - 0.1) < 1e-12);
    const queued = queue.score(pairs(1), { reservation: second }); // queued: the reservation becomes queued work
    assert.ok(Math.abs(queue.expectedWaitSeconds() - 0.1) < 1e-12);
    await model.finish();
    await queued;
    assert.equal(queue.expectedWaitSeconds(), 0);
    // Admitted before tokenizing, a request is queued after it even if the wait grew meanwhile.
    const admitted = queue.reserve(2);
    const backlog = queue.score(pairs(10));
    await assert.rejects(queue.score(pairs(2)), refusal('overloaded'), 'without a reservation: refused by the wait');
    const late = queue.score(pairs(2), { reservation: admitted });
    for (let i = 0; i < 6; i += 1) await model.finish();
    await Promise.all([backlog, late]);
  });

  it('corrects the estimate by how long requests actually waited, from above', async () => {
    const { queue, model } = setup({ maxQueueWaitMs: 0 });
    // Batches take 3 times the model's reported time on the clock (600 ms for 200); batch costs count at
    // most twice it, so the raw estimate is 2/3 of the truth, and the waits teach the queue the rest. The
    // correction is an upper estimate (mean and deviations): it passes the truth while it learns, then
    // settles on it as the waits stay the same.
    model.wallFactor = 3;
    const round = async () => {
      const ahead = queue.score(pairs(4)); // two batches: one running, one waiting
      await nextTurn();
      const estimate = queue.expectedWaitSeconds();
      const behind = queue.score(pairs(2));
      for (let i = 0; i < 3; i += 1) await model.finish();
      const [, result] = await Promise.all([ahead, behind]);
      return { estimate, actual: result.queueSeconds };
    };
    assert.equal((await round()).estimate, 0, 'cold: nothing measured');
    const early = await round();
    const learning = [];
    for (let i = 0; i < 5; i += 1) learning.push((await round()).estimate);
    for (let i = 0; i < 30; i += 1) await round();
    const late = await round();
    assert.ok(Math.abs(early.actual - 1.2) < 1e-9 && Math.abs(late.actual - 1.2) < 1e-9, `waits of ${early.actual} and ${late.actual} s`);
    assert.ok(Math.abs(early.estimate - 0.8) < 1e-9, `early: ${early.estimate} s estimated for 1.2 s (2 × 400 ms)`);
    assert.ok(Math.max(...learning) > 1.2, `learning: ${learning.join(', ')} s estimated for 1.2 s`);
    assert.ok(late.estimate >= 1.2 - 1e-9 && late.estimate < 1.25, `late: ${late.estimate} s estimated for 1.2 s`);
  });

  it('learns from each wait since admission, so requests admitted together while tokenizing do not teach it a low estimate', async () => {
    const { queue, model, clock, limits } = setup({ maxQueueWaitMs: 0 });
    const warm = queue.score(pairs(2)); // 200 ms a batch, one batch a request
    await model.finish();
    await warm;
    // Bursts of 12 requests admitted at once (no limit on the wait yet), tokenized, then queued in order.
    // Measured when queued, the k-th one's estimate held the 12 - k places behind it too, which run after
    // it; measured from admission, it holds exactly the work ahead of it.
    for (let burst = 0; burst < 6; burst += 1) {
      const reserved = Array.from({ length: 12 }, () => queue.reserve(2));
      const done = reserved.map((reservation) => queue.score(pairs(2), { reservation }));
      for (let i = 0; i < 12; i += 1) await model.finish();
      await Promise.all(done);
    }
    // Now admit until refused: the estimate is exact here, so every admitted request waits at most maxQueueWaitMs.
    limits.maxQueueWaitMs = 900;
    const admittedAt: number[] = [];
    const done: Promise<number>[] = [];
    for (;;) {
      let reservation: Reservation;
      try {
        reservation = queue.reserve(2);
      } catch (error) {
        assert.ok(error instanceof RerankError && error.kind === 'overloaded', String(error));
        break;
      }
      admittedAt.push(clock.ms);
      done.push(queue.score(pairs(2), { reservation }).then((result) => result.queueSeconds * 1000));
      assert.ok(done.length < 50, 'never refused');
    }
    for (let i = 0; i < done.length; i += 1) await model.finish();
    const waits = await Promise.all(done);
    assert.deepEqual(waits, [0, 200, 400, 600, 800], 'admitted while the work ahead is at most 900 ms, no more');
  });

  it('does not learn from a request whose own tokenizing outlasted the work ahead of it', async () => {
    const { queue, model, clock } = setup({ maxQueueWaitMs: 0 });
    const warm = queue.score(pairs(2)); // 200 ms a batch
    await model.finish();
    await warm;
    const ahead = queue.score(pairs(2));
    await nextTurn();
    assert.equal(queue.expectedWaitSeconds(), 0.2);
    const reservation = queue.reserve(2); // admitted on 200 ms of work ahead of it
    await model.finish();
    await ahead;
    clock.advance(800); // its tokenizing takes 1 s in all: the queue was empty long before
    const late = queue.score(pairs(2), { reservation });
    await model.finish();
    assert.equal((await late).queueSeconds, 0);
    // Waited 1 s since admission against 0.2 s expected: the tokenizer's time, not the queue's; not learnt.
    const backlog = queue.score(pairs(4));
    await nextTurn();
    assert.equal(queue.expectedWaitSeconds(), 0.4, 'the estimate is still the batch costs alone');
    await model.finish();
    await model.finish();
    await backlog;
  });

  it('bounds the wait of admitted requests under 2× load when tokenizing ends out of order, and keeps the model busy', async () => {
    const { queue, model, clock, metrics } = setup({ maxQueueWaitMs: 2000 });
    const warm = queue.score(pairs(2)); // 200 ms a batch, one batch a request
    await model.finish();
    await warm;
    // Two requests arrive per batch; each is tokenized for 0 to 3 batches' time (a thread pool finishes out
    // of order), so a request admitted later may be queued first and run ahead of an earlier one.
    const random = lcg(7);
    const tokenizing: { admittedAt: number; due: number; reservation: Reservation }[] = [];
    const waits: number[] = [];
    const answered: Promise<void>[] = [];
    let idle = 0;
    const steps = 400;
    for (let step = 0; step < steps; step += 1) {
      for (let arrival = 0; arrival < 2; arrival += 1) {
        try {
          tokenizing.push({ admittedAt: clock.ms, due: step + Math.floor(random() * 4), reservation: queue.reserve(2) });
        } catch (error) {
          assert.ok(error instanceof RerankError && error.kind === 'overloaded', String(error));
        }
      }
      for (const request of tokenizing.filter((r) => r.due <= step)) {
        tokenizing.splice(tokenizing.indexOf(request), 1);
        const queuedAt = clock.ms;
        answered.push(queue.score(pairs(2), { reservation: request.reservation }).then((result) => void waits.push(queuedAt - request.admittedAt + result.queueSeconds * 1000)));
      }
      await nextTurn();
      if (model.running) await model.finish();
      else {
        idle += 1;
        clock.advance(200);
      }
    }
    for (const request of tokenizing) answered.push(queue.score(pairs(2), { reservation: request.reservation }).then(() => undefined));
    while (model.running || queue.pendingPairs > 0) await model.finish();
    await Promise.all(answered);
    const late = waits.filter((ms) => ms > 2000 + 200).length;
    assert.ok(late <= waits.length / 100, `${late} of ${waits.length} admitted requests waited past maxQueueWaitMs and one batch; longest ${Math.max(...waits)} ms`);
    assert.ok(idle <= steps / 20, `the model sat idle ${idle} of ${steps} batches`);
    const ratio = (await metrics.queueWaitRatio.get()).values as { metricName?: string; labels: Record<string, unknown>; value: number }[];
    const count = ratio.find((v) => v.metricName === 'reranker_queue_wait_ratio_count')?.value ?? 0;
    // The exported ratio shows it: nearly all waited at most 1.1 × the wait expected at their admission.
    const within = ratio.find((v) => v.metricName === 'reranker_queue_wait_ratio_bucket' && v.labels.le === 1.1)?.value ?? 0;
    assert.ok(count > 100 && within >= 0.95 * count, `reranker_queue_wait_ratio: ${within} of ${count} within 1.1 × the expected wait`);
  });

  it('maxQueueWaitMs 0 turns the time limit off', async () => {
    const { queue, model } = setup({ maxQueueWaitMs: 0 });
    const first = queue.score(pairs(2));
    await model.finish();
    await first;
    const work = [queue.score(pairs(100)), queue.score(pairs(1))];
    for (let i = 0; i < 51; i += 1) await model.finish();
    await Promise.all(work);
  });
});

describe('BatchQueue client deadlines', () => {
  it('refuses at once a request whose deadline falls before its expected wait ends', async () => {
    const { queue, model, clock, metrics } = setup({ maxQueueWaitMs: 0 });
    const first = queue.score(pairs(2));
    await model.finish();
    await first;
    const backlog = queue.score(pairs(6)); // 600 ms of work ahead
    await nextTurn();
    await assert.rejects(
      queue.score(pairs(1), { deadline: clock.ms + 500 }),
      refusal('deadline', (error) => assert.match(error.message, /deadline exceeded: version v1 expects a wait of 0\.6 s and the request's deadline is in 500 ms/)),
    );
    assert.equal(await sample(metrics, 'reranker_queue_refusals_total', { version: 'v1', reason: 'deadline' }), 1);
    const inTime = queue.score(pairs(1), { deadline: clock.ms + 1000 });
    for (let i = 0; i < 4; i += 1) await model.finish();
    await Promise.all([backlog, inTime]);
  });

  it('answers a queued request when its deadline passes, drops its waiting pairs, and counts both', async () => {
    const { queue, model, clock, metrics } = setup({ maxQueueWaitMs: 0 });
    const ahead = queue.score(pairs(4, 10, 1)); // cold: nothing measured, so admitted with any deadline
    const late = queue.score(pairs(6, 10, 2), { deadline: 300 });
    const after = queue.score(pairs(2, 10, 3));
    await nextTurn();
    await model.finish(); // t = 200
    assert.equal(queue.pendingPairs, 8, "the second batch runs the first request's last pairs");
    const failed = assert.rejects(late, refusal('deadline', (error) => assert.match(error.message, /6 of 6 documents of the request were not scored in time/)));
    await model.finish(); // t = 400: the deadline (300) passed while that batch ran
    await failed;
    assert.equal(queue.pendingPairs, 0, "the late request's pairs are gone; the last one's run now");
    await model.finish();
    await Promise.all([ahead, after]);
    const ran = model.batches.flat().map((p) => p.ids[0]);
    assert.ok(!ran.includes(2), `the late request's pairs never ran: ${ran.join(',')}`);
    assert.equal(await sample(metrics, 'reranker_deadline_drops_total'), 1);
    assert.equal(await sample(metrics, 'reranker_deadline_dropped_pairs_total'), 6);
    assert.equal(clock.ms, 600);
  });

  it('a request answered in time cancels its deadline', async () => {
    const { queue, model, clock, metrics } = setup();
    const done = queue.score(pairs(2), { deadline: 1000 });
    await model.finish();
    await done;
    clock.advance(2000);
    assert.equal(await sample(metrics, 'reranker_deadline_drops_total'), undefined);
  });
});
