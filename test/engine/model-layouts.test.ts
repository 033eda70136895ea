import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfigFile } from '../../server/config/load.ts';
import { RerankEngine, type RerankEngineOptions } from '../../server/engine/engine.ts';
import { chooseModelFile, fp16Status, modelFiles, type ModelFiles } from '../../server/engine/model-files.ts';
import type { LoadOnnxModelOptions } from '../../server/engine/onnx-model.ts';
import { FakeGpuProbe } from '../../server/gpu/probe.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { layOutModel } from '../support/model-layouts.ts';
import { scratchDir } from '../support/models.ts';
import { pretendGpuLoader } from './live-support.ts';

const engines: RerankEngine[] = [];
after(async () => {
  await Promise.all(engines.map((engine) => engine.close()));
});

async function engineFor(configText: string, options: Partial<RerankEngineOptions> = {}): Promise<RerankEngine> {
  const dir = await scratchDir('config');
  const file = path.join(dir, 'config.yaml');
  await layOutModel(path.join(dir, 'v-flat'), 'flat');
  await layOutModel(path.join(dir, 'v-split'), 'split', { cpu: true });
  await layOutModel(path.join(dir, 'v-hf'), 'hf', { fp16: true });
  await writeFile(file, configText);
  const engine = await RerankEngine.create({
    loaded: await loadConfigFile(file),
    metrics: new ServerMetrics({ defaultMetrics: false }),
    logger: silentLogger(),
    intraOpNumThreads: 1,
    modelThread: 'main',
    fallbackIntervalMs: 3_600_000,
    ...options,
  });
  engines.push(engine);
  return engine;
}

function versionInfo(engine: RerankEngine, name: string) {
  const info = engine.info().versions.find((v) => v.name === name);
  assert.ok(info, name);
  return info;
}

describe('model directories in the layouts people have', () => {
  it('finds model.onnx + tokenizer.json, model/ + tokenizer/, onnx/model.onnx, and the fp16 and model_cpu/ exports', async () => {
    const root = await scratchDir('layouts');
    const flat = await modelFiles(await layOutModel(path.join(root, 'flat'), 'flat'));
    assert.equal(path.relative(flat.dir, flat.model), 'model.onnx');
    assert.equal(path.relative(flat.dir, flat.tokenizer), 'tokenizer.json');
    assert.equal(flat.fp16Model, undefined);
    assert.equal(flat.cpuModel, undefined);
    const split = await modelFiles(await layOutModel(path.join(root, 'split'), 'split', { cpu: true }));
    assert.deepEqual(
      [split.model, split.tokenizer, split.config, split.cpuModel].map((file) => path.relative(split.dir, file ?? '')),
      ['model/model.onnx', 'tokenizer/tokenizer.json', 'model/config.json', 'model_cpu/model.onnx'],
    );
    const hf = await modelFiles(await layOutModel(path.join(root, 'hf'), 'hf', { fp16: true }));
    assert.deepEqual(
      [hf.model, hf.tokenizer, hf.fp16Model].map((file) => path.relative(hf.dir, file ?? '')),
      ['onnx/model.onnx', 'tokenizer.json', 'onnx/model_fp16.onnx'],
    );
    await assert.rejects(modelFiles(path.join(root, 'absent')), /no model\.onnx in .*absent \(looked for model\.onnx, onnx\/model\.onnx, model\/model\.onnx/);
  });

  it('serves versions without `model` from the directory named like them, in each layout', async () => {
    const engine = await engineFor('defaultVersion: v-flat\nversions: {v-flat: {}, v-split: {}, v-hf: {}}\n');
    for (const name of ['v-flat', 'v-split', 'v-hf']) {
      assert.equal(versionInfo(engine, name).state, 'ready', name);
      const outcome = await engine.rerank({ query: 'the city', documents: ['a city', 'water'], pathVersion: name });
      assert.equal(outcome.version, name);
      assert.equal(outcome.scores.length, 2);
    }
    assert.match(versionInfo(engine, 'v-split').modelFile ?? '', /v-split\/model_cpu\/model\.onnx$/, 'a CPU session loads model_cpu/');
    assert.match(versionInfo(engine, 'v-hf').modelFile ?? '', /v-hf\/onnx\/model\.onnx$/, 'useFp16 off: not the fp16 export');
    assert.equal(versionInfo(engine, 'v-hf').fp16, undefined);
  });

  it('useFp16 on CPU: /info says it does not apply, and the fp32 graph runs', async () => {
    const engine = await engineFor('defaultVersion: v-hf\nversions: {v-hf: {}}\nserving: {useFp16: true}\n');
    const info = versionInfo(engine, 'v-hf');
    assert.equal(info.device, 'cpu');
    assert.match(info.modelFile ?? '', /onnx\/model\.onnx$/);
    assert.deepEqual(info.fp16, { applied: false, note: 'useFp16 does not apply on CPU: the model runs in the precision of its ONNX export' });
  });

  it('on CUDA, useFp16 loads the fp16 export; a move to CPU on low GPU memory loads model_cpu/', async () => {
    const loads: Array<{ version: string; file: string; device: string }> = [];
    const recording = (options: LoadOnnxModelOptions) => {
      loads.push({ version: path.basename(path.dirname(path.dirname(options.modelPath))), file: path.basename(options.modelPath), device: options.device });
      return pretendGpuLoader(options);
    };
    const probe = new FakeGpuProbe();
    probe.set(0, { totalMb: 16000, freeMb: 8000 });
    const engine = await engineFor(
      'defaultVersion: v-hf\nversions: {v-hf: {device: cuda}, v-split: {device: cuda, gpuMemoryThresholdMb: 2000}}\nserving: {useFp16: true}\n',
      { loadModel: recording, gpuProbe: probe },
    );
    await engine.fallbackMonitor?.check();
    const hf = versionInfo(engine, 'v-hf');
    assert.equal(hf.device, 'cuda');
    assert.match(hf.modelFile ?? '', /onnx\/model_fp16\.onnx$/);
    assert.deepEqual(hf.fp16, { applied: true, note: 'runs the fp16 export model_fp16.onnx' });
    assert.deepEqual(versionInfo(engine, 'v-split').fp16, {
      applied: false,
      note: 'no fp16 export beside model.onnx (model_fp16.onnx): the model runs in the precision of its ONNX export',
    });

    probe.set(0, { totalMb: 16000, freeMb: 1500 });
    await engine.fallbackMonitor?.check();
    const split = versionInfo(engine, 'v-split');
    assert.equal(split.device, 'cpu');
    assert.match(split.modelFile ?? '', /v-split\/model_cpu\/model\.onnx$/);
    assert.match(split.fp16?.note ?? '', /does not apply on CPU/);
    assert.deepEqual(loads.at(-1), { version: 'v-split', file: 'model.onnx', device: 'cpu' });
    assert.match(versionInfo(engine, 'v-hf').modelFile ?? '', /model_fp16\.onnx$/, 'a version with more headroom stays');
  });
});

describe('chooseModelFile', () => {
  const files: ModelFiles = { dir: '/m', model: '/m/model.onnx', tokenizer: '/m/tokenizer.json', config: '/m/config.json', variants: { fp32: '/m/model.onnx' } };
  const withFp16 = { ...files, fp16Model: '/m/model_fp16.onnx' };
  const withCpu = { ...withFp16, cpuModel: '/m/model_cpu/model.onnx' };
  const table: Array<[string, ModelFiles, 'cpu' | 'cuda', boolean, string, boolean]> = [
    ['cuda, useFp16, an fp16 export', withFp16, 'cuda', true, '/m/model_fp16.onnx', true],
    ['cuda, useFp16, no fp16 export', files, 'cuda', true, '/m/model.onnx', false],
    ['cuda, useFp16 off', withFp16, 'cuda', false, '/m/model.onnx', false],
    ['cpu, useFp16: never the fp16 export', withFp16, 'cpu', true, '/m/model.onnx', false],
    ['cpu with model_cpu/', withCpu, 'cpu', false, '/m/model_cpu/model.onnx', false],
    ['cuda with model_cpu/: the GPU graph', withCpu, 'cuda', false, '/m/model.onnx', false],
  ];
  for (const [name, given, device, useFp16, model, fp16] of table) {
    it(name, () => assert.deepEqual(chooseModelFile(given, { device, useFp16 }), { model, fp16 }));
  }
  it('fp16Status says nothing while useFp16 is off', () => {
    assert.equal(fp16Status({ useFp16: false, device: 'cpu', loaded: { model: '/m/model.onnx', fp16: false } }), undefined);
  });
});
