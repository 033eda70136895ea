import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { BatchRunResult, LoadOnnxModelOptions, PairScorer } from '../../server/engine/onnx-model.ts';
import { Runtime, type RuntimeContext } from '../../server/engine/runtime.ts';
import { PromptTokenizer } from '../../server/engine/prompt-encoder.ts';
import { TokenizerCache } from '../../server/engine/tokenizer-cache.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { tinyModel } from '../support/models.ts';
import { loadedConfig } from './live-support.ts';

/** A session that scores every pair 0; `failRuns` makes its runs (the warm-up too) throw. */
class FakeSession implements PairScorer {
  readonly description = { head: 'cross-encoder' as const, inputs: ['input_ids', 'attention_mask'], takesTypeIds: false, outputName: 'logits', logits: 'batch1' as const, device: 'cpu' as const };
  readonly failRuns: boolean;
  closed = 0;
  constructor(failRuns = false) {
    this.failRuns = failRuns;
  }
  async run(pairs: readonly unknown[]): Promise<BatchRunResult> {
    if (this.failRuns) throw new Error('the run failed');
    return { logits: new Float32Array(pairs.length), seconds: 0, nonFinite: 0 };
  }
  async close(): Promise<void> {
    this.closed += 1;
  }
}

let model: string;
before(async () => {
  model = (await tinyModel()).dir;
});

function context(session: FakeSession, crashes: Runtime[] = []): RuntimeContext {
  const loaded = loadedConfig({ defaultVersion: 'v', versions: { v: { model, weight: 100 } } });
  return {
    loadModel: async (_options: LoadOnnxModelOptions) => session,
    modelThread: 'main',
    intraOpNumThreads: 1,
    tokenizers: new TokenizerCache(),
    promptTokenizers: new TokenizerCache({ load: (o) => PromptTokenizer.load(o) }),
    sessions: new Set(),
    config: () => loaded.config,
    limits: () => loaded.config.serving,
    metrics: new ServerMetrics({ defaultMetrics: false }),
    logger: silentLogger(),
    onCrash: (runtime) => crashes.push(runtime),
  };
}

describe('Runtime', () => {
  it('loads to ready, holding its session and tokenizer, and scores through its parts', async () => {
    const session = new FakeSession();
    const ctx = context(session);
    const runtime = new Runtime('v', { model, device: 'cpu', fp16: false }, ctx);
    assert.equal(runtime.state, 'loading');
    assert.throws(() => runtime.parts(), /loading, not ready/);
    await runtime.load();
    assert.equal(runtime.state, 'ready');
    assert.deepEqual([...ctx.sessions], [session]);
    assert.deepEqual({ held: ctx.tokenizers.size, idle: ctx.tokenizers.idle }, { held: 1, idle: 0 });
    assert.deepEqual(runtime.inputs, ['input_ids', 'attention_mask']);
    assert.equal(runtime.synthetic, true, 'the generated model says so in its config.json');
    const { encoder, queue } = runtime.parts();
    const pairs = await encoder.encodePairs('q', ['a', 'b'], { maxLength: runtime.maxLength(ctx.config()), truncate: true, withTypeIds: false });
    assert.deepEqual(Array.from((await queue.score(pairs)).logits), [0, 0]);
    await runtime.close();
  });

  it('close waits for the requests in flight, then frees queue, tokenizer and session once', async () => {
    const session = new FakeSession();
    const ctx = context(session);
    const runtime = new Runtime('v', { model, device: 'cpu', fp16: false }, ctx);
    await runtime.load();
    runtime.enter();
    runtime.enter();
    const closed = runtime.close();
    assert.equal(runtime.state, 'draining');
    assert.equal(runtime.close(), closed, 'a second close shares the first');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(session.closed, 0, 'two requests still in flight');
    runtime.leave();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(session.closed, 0, 'one request still in flight');
    runtime.leave();
    await closed;
    assert.equal(runtime.state, 'closed');
    assert.equal(runtime.inFlight, 0);
    assert.equal(session.closed, 1);
    assert.equal(ctx.sessions.size, 0);
    assert.deepEqual({ held: ctx.tokenizers.size, idle: ctx.tokenizers.idle }, { held: 1, idle: 1 }, 'the tokenizer is given back, kept for reuse');
  });

  it('idle resolves at once with nothing in flight, and when the last request leaves', async () => {
    const runtime = new Runtime('v', { model, device: 'cpu', fp16: false }, context(new FakeSession()));
    await runtime.idle();
    runtime.enter();
    let idle = false;
    const waiting = runtime.idle().then(() => (idle = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(idle, false);
    runtime.leave();
    await waiting;
    assert.equal(idle, true);
  });

  it('a load that fails after taking tokenizer and session gives both back and stays failed until closed', async () => {
    const session = new FakeSession(true);
    const ctx = context(session);
    const runtime = new Runtime('v', { model, device: 'cpu', fp16: false }, ctx);
    await runtime.load();
    assert.equal(runtime.state, 'failed');
    assert.equal(runtime.error, 'the run failed');
    assert.equal(session.closed, 1);
    assert.equal(ctx.sessions.size, 0);
    assert.equal(ctx.tokenizers.idle, 1);
    await runtime.close();
    assert.equal(session.closed, 1, 'freed once');
    assert.equal(runtime.state, 'closed');
  });

  it('a model directory without model.onnx fails the load with the reason', async () => {
    const runtime = new Runtime('v', { model: '/nowhere', device: 'cpu', fp16: false }, context(new FakeSession()));
    await runtime.load();
    assert.equal(runtime.state, 'failed');
    assert.equal(runtime.error, 'no model.onnx in /nowhere (looked for model.onnx, onnx/model.onnx, model/model.onnx, model/onnx/model.onnx)');
  });

  it('a session whose worker dies turns the runtime failed and tells the context', async () => {
    const crashes: Runtime[] = [];
    let crash: ((error: Error) => void) | undefined;
    const ctx = context(new FakeSession(), crashes);
    const loadModel = ctx.loadModel;
    ctx.loadModel = (options) => {
      crash = options.onCrash;
      return loadModel(options);
    };
    const runtime = new Runtime('v', { model, device: 'cpu', fp16: false }, ctx);
    await runtime.load();
    crash?.(new Error('model worker exited (code 1)\nstack'));
    assert.equal(runtime.state, 'failed');
    assert.equal(runtime.error, 'model worker exited (code 1)');
    assert.deepEqual(crashes, [runtime]);
    await runtime.close();
  });
});
