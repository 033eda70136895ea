import assert from 'node:assert/strict';
import { cp, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { OnnxSession } from '../../server/engine/onnx-model.ts';
import { createOptimizedSession, optimizedFileName, optimizedModelSettings } from '../../server/engine/optimized-model.ts';
import { PairTokenizer } from '../../server/engine/pair-tokenizer.ts';
import { scratchDir, tinyModel } from '../support/models.ts';

async function modelCopy(name: string): Promise<string> {
  const dir = await scratchDir(name);
  await cp((await tinyModel()).dir, dir, { recursive: true });
  return dir;
}

async function scores(modelPath: string): Promise<{ logits: number[]; state: string | undefined; file: string | undefined }> {
  const tokenizer = PairTokenizer.load({ tokenizerPath: (await tinyModel()).tokenizerPath });
  const session = await OnnxSession.load({ modelPath, device: 'cpu', padId: tokenizer.padId, intraOpNumThreads: 1 });
  try {
    const pairs = await Promise.all(['a river', 'the city market and its history'].map((d) => tokenizer.encodePair('the city', d, { maxLength: 64, withTypeIds: true })));
    const { logits } = await session.run(pairs);
    return { logits: [...logits], state: session.description.optimized?.state, file: session.description.optimized?.file };
  } finally {
    await session.release();
  }
}

describe('saved optimised graphs', () => {
  it('the first load saves the optimised graph beside the model, the next reuses it, and both score alike', async () => {
    const dir = await modelCopy('optimized');
    const model = path.join(dir, 'model.onnx');
    const first = await scores(model);
    assert.equal(first.state, 'saved');
    assert.equal(first.file, path.join(dir, optimizedFileName(model, 'cpu')));
    assert.match(path.basename(first.file ?? ''), /^model\.cpu-[0-9a-f]{8}\.ort-\d+\.\d+\.\d+\.opt\.onnx$/);
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
    const second = await scores(model);
    assert.equal(second.state, 'reused');
    for (let i = 0; i < first.logits.length; i += 1) assert.ok(Math.abs((first.logits[i] as number) - (second.logits[i] as number)) < 1e-5);
  });

  it('a model newer than its saved graph, or a saved graph that does not load, is saved again', async () => {
    const dir = await modelCopy('optimized-stale');
    const model = path.join(dir, 'model.onnx');
    const { file } = await scores(model);
    assert.ok(file);
    await utimes(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const stale = await createOptimizedSession(model, { graphOptimizationLevel: 'all' }, 'cpu');
    await stale.session.release();
    assert.deepEqual(stale.optimized, { state: 'saved', file, reason: 'saved graph older than the model: saved again' });

    await writeFile(file, 'not a model');
    const broken = await createOptimizedSession(model, { graphOptimizationLevel: 'all' }, 'cpu');
    await broken.session.release();
    assert.equal(broken.optimized.state, 'saved');
    assert.match(broken.optimized.reason ?? '', /^saved graph failed to load \(.+\): saved again$/);
    assert.equal((await scores(model)).state, 'reused');
  });

  it('RERANK_ORT_CACHE_DIR=off turns it off; a model with external data is not saved', async () => {
    assert.deepEqual(optimizedModelSettings({ RERANK_ORT_CACHE_DIR: 'off' }), { cacheDir: false });
    assert.deepEqual(optimizedModelSettings({ RERANK_ORT_CACHE_DIR: '/var/cache/ort' }), { cacheDir: '/var/cache/ort' });
    const dir = await modelCopy('optimized-off');
    const model = path.join(dir, 'model.onnx');
    const off = await createOptimizedSession(model, { graphOptimizationLevel: 'all' }, 'cpu', { cacheDir: false });
    await off.session.release();
    assert.deepEqual(off.optimized, { state: 'off' });
    await writeFile(path.join(dir, 'model.onnx_data'), '');
    const external = await createOptimizedSession(model, { graphOptimizationLevel: 'all' }, 'cpu');
    await external.session.release();
    assert.deepEqual(external.optimized, { state: 'skipped', reason: 'model over 1.5 GiB or with external data' });
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.opt.onnx')), []);
  });
});
