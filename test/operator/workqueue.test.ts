import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkQueue } from '../../operator/workqueue.ts';
import { FakeClock } from './support/fake-clock.ts';

describe('WorkQueue', () => {
  test('a key waits at most once', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
  });

  test('one in flight per key: added while processing, it runs again after done, once', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    const key = await q.get();
    q.add('a');
    q.add('a');
    assert.equal(q.length, 0, 'handed out twice at once');
    q.done(key!);
    assert.equal(q.length, 1);
    assert.equal(await q.get(), 'a');
  });

  test('a waiting worker gets a key as soon as it is added', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    const next = q.get();
    q.add('x');
    assert.equal(await next, 'x');
  });

  test('failures back off exponentially per key, capped; forget resets', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock, baseDelayMs: 100, maxDelayMs: 1000 });
    assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => q.backoffMs(n)), [100, 200, 400, 800, 1000, 1000]);
    q.addRateLimited('a');
    await clock.advance(99);
    assert.equal(q.length, 0);
    await clock.advance(1);
    assert.equal(q.length, 1);
    q.done((await q.get())!);
    q.addRateLimited('a');
    await clock.advance(199);
    assert.equal(q.length, 0);
    await clock.advance(1);
    assert.equal(q.length, 1);
    q.forget('a');
    assert.equal(q.failures('a'), 0);
  });

  test('addAfter: the earliest pending time wins', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    q.addAfter('a', 1000);
    q.addAfter('a', 100);
    q.addAfter('a', 5000);
    await clock.advance(100);
    assert.equal(q.length, 1);
    assert.equal(clock.pending, 0);
  });

  test('shutDown releases waiting workers and cancels timers', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    const waiting = q.get();
    q.addAfter('a', 10);
    q.shutDown();
    assert.equal(await waiting, undefined);
    assert.equal(clock.pending, 0);
    q.add('b');
    assert.equal(await q.get(), undefined);
  });
});
