import assert from 'node:assert/strict';
import { copyFile, cp, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfigFile } from '../../server/config/load.ts';
import { cpuFeaturesFrom, type CpuFeatures } from '../../server/engine/cpu-features.ts';
import { RerankEngine } from '../../server/engine/engine.ts';
import { availableVariants, chooseVariantFile, modelFiles } from '../../server/engine/model-files.ts';
import { chooseVariant, describeVariant, type ModelVariant, type VariantSetting } from '../../server/engine/variant-choice.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { quantizeModelDir } from '../../server/quantize/quantize-model.ts';
import { scratchDir, tinyModel } from '../support/models.ts';

const VNNI: CpuFeatures = { int8: ['avx512_vnni'], source: 'test' };
const AMX: CpuFeatures = { int8: ['amx_int8', 'avx512_vnni'], source: 'test' };
const PLAIN: CpuFeatures = { int8: [], source: 'test' };

describe('variant choice', () => {
  const all: ModelVariant[] = ['fp32', 'int8', 'fp16'];
  const table: Array<[VariantSetting, 'cpu' | 'cuda', ModelVariant[], CpuFeatures, ModelVariant, string]> = [
    ['auto', 'cpu', all, VNNI, 'int8', 'auto: cpu has avx512_vnni'],
    ['auto', 'cpu', all, AMX, 'int8', 'auto: cpu has amx_int8'],
    ['auto', 'cpu', all, PLAIN, 'fp32', 'auto: cpu lacks VNNI/AMX (avx512_vnni, avx_vnni, amx_int8), int8 gains little'],
    ['auto', 'cpu', ['fp32', 'fp16'], VNNI, 'fp32', 'auto: no int8 export'],
    ['auto', 'cpu', ['int8'], PLAIN, 'int8', 'auto: the only export'],
    ['auto', 'cpu', ['int8', 'fp16'], PLAIN, 'int8', 'auto: the only export'],
    ['auto', 'cuda', all, VNNI, 'fp16', 'auto: cuda, and an fp16 export'],
    ['auto', 'cuda', ['fp32', 'int8'], VNNI, 'fp32', 'auto: cuda, no fp16 export'],
    ['fp32', 'cpu', all, VNNI, 'fp32', 'configured'],
    ['int8', 'cpu', all, PLAIN, 'int8', 'configured'],
    ['fp16', 'cuda', all, PLAIN, 'fp16', 'configured'],
  ];
  for (const [setting, device, available, cpu, variant, reason] of table) {
    it(`${setting} on ${device} with ${available.join('+')} (${cpu.int8.join(',') || 'no VNNI'}) → ${variant}`, () => {
      assert.deepEqual(chooseVariant({ setting, device, available, cpu }), { variant, reason });
    });
  }

  it('a configured variant the model lacks is an error naming what it has', () => {
    assert.throws(() => chooseVariant({ setting: 'int8', device: 'cpu', available: ['fp32'], cpu: VNNI }), /variant int8: the model has no int8 export \(it has fp32\)/);
  });

  it('describes a choice in one phrase', () => {
    assert.equal(describeVariant({ variant: 'int8', reason: 'auto: cpu has avx512_vnni' }), 'int8 (auto: cpu has avx512_vnni)');
  });
});

describe('CPU features', () => {
  it('reads the int8 flags of /proc/cpuinfo, strongest first', () => {
    const text = 'processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_int8 amx_tile\nprocessor\t: 1\n';
    assert.deepEqual(cpuFeaturesFrom(text, 'x').int8, ['amx_int8', 'avx512_vnni']);
    assert.deepEqual(cpuFeaturesFrom('flags : fpu avx2 avx_vnni\n', 'x').int8, ['avx_vnni']);
    assert.deepEqual(cpuFeaturesFrom('Features : fp asimd\n', 'x').int8, []);
  });
});

describe('variant files in a model directory', () => {
  it('finds int8 exports by the names Hugging Face repos give them, and a directory with only one', async () => {
    const { dir: source } = await tinyModel();
    const root = await scratchDir('variants');
    const hf = path.join(root, 'hf');
    await mkdir(path.join(hf, 'onnx'), { recursive: true });
    await copyFile(path.join(source, 'tokenizer.json'), path.join(hf, 'tokenizer.json'));
    for (const name of ['model.onnx', 'model_quantized.onnx', 'model_qint8_avx512_vnni.onnx', 'model_fp16.onnx']) {
      await copyFile(path.join(source, 'model.onnx'), path.join(hf, 'onnx', name));
    }
    const files = await modelFiles(hf);
    assert.deepEqual(availableVariants(files), ['fp32', 'int8', 'fp16']);
    assert.equal(path.basename(files.variants.int8 ?? ''), 'model_qint8_avx512_vnni.onnx', 'the VNNI build before the generic one');
    assert.deepEqual(chooseVariantFile(files, { device: 'cpu', variant: 'int8' }), { model: files.variants.int8, fp16: false, variant: 'int8' });

    const only = path.join(root, 'only-int8');
    await mkdir(path.join(only, 'onnx'), { recursive: true });
    await copyFile(path.join(source, 'tokenizer.json'), path.join(only, 'tokenizer.json'));
    await copyFile(path.join(source, 'model.onnx'), path.join(only, 'onnx', 'model_quantized.onnx'));
    const onlyFiles = await modelFiles(only);
    assert.deepEqual(availableVariants(onlyFiles), ['int8']);
    assert.equal(path.relative(only, onlyFiles.model), 'onnx/model_quantized.onnx');
  });
});

describe('serving an int8 variant', () => {
  const engines: RerankEngine[] = [];
  after(async () => Promise.all(engines.map((e) => e.close())));

  async function engineWith(configText: string, cpu: CpuFeatures): Promise<RerankEngine> {
    const root = await scratchDir('variant-engine');
    const dir = path.join(root, 'm');
    await cp((await tinyModel({ seed: 11 })).dir, dir, { recursive: true });
    await quantizeModelDir({ dir, compare: false });
    const file = path.join(root, 'config.yaml');
    await writeFile(file, configText);
    const engine = await RerankEngine.create({
      loaded: await loadConfigFile(file),
      metrics: new ServerMetrics({ defaultMetrics: false }),
      logger: silentLogger(),
      intraOpNumThreads: 1,
      modelThread: 'main',
      fallbackIntervalMs: 3_600_000,
      cpuFeatures: () => cpu,
    });
    engines.push(engine);
    return engine;
  }

  const info = (engine: RerankEngine, name: string) => engine.info().versions.find((v) => v.name === name);
  const documents = ['the river runs through the city', 'water', 'the history of the city and its market', 'energy policy', 'music school'];

  it('auto on a VNNI CPU serves model_int8.onnx, close to fp32, and /info says why', async () => {
    const engine = await engineWith('defaultVersion: q\nversions:\n  q: {model: m}\n  f: {model: m, variant: fp32}\n', VNNI);
    const q = info(engine, 'q');
    assert.equal(q?.state, 'ready');
    assert.equal(path.basename(q?.modelFile ?? ''), 'model_int8.onnx');
    assert.deepEqual(q?.variant, { setting: 'auto', chosen: 'int8', reason: 'auto: cpu has avx512_vnni' });
    assert.deepEqual(info(engine, 'f')?.variant, { setting: 'fp32', chosen: 'fp32', reason: 'configured' });
    assert.equal(path.basename(info(engine, 'f')?.modelFile ?? ''), 'model.onnx');

    const int8 = await engine.rerank({ query: 'the history of the city', documents, pathVersion: 'q' });
    const fp32 = await engine.rerank({ query: 'the history of the city', documents, pathVersion: 'f' });
    assert.equal(int8.version, 'q');
    const a = int8.logits;
    const b = fp32.logits;
    const spread = Math.max(...b) - Math.min(...b);
    const worst = Math.max(...a.map((v, i) => Math.abs(v - (b[i] as number))));
    assert.ok(a.some((v, i) => v !== b[i]), 'a different graph ran');
    // Random weights (tiny): int8 stays within a fraction of how far apart the fp32 logits are.
    assert.ok(worst < 0.5 * spread, `max |Δ| ${worst} against an fp32 spread of ${spread}`);
  });

  it('auto on a CPU without VNNI keeps fp32; a configured variant the model lacks fails with a clear error', async () => {
    const engine = await engineWith('defaultVersion: q\nversions:\n  q: {model: m}\n  h: {model: m, variant: fp16}\n', PLAIN);
    assert.deepEqual(info(engine, 'q')?.variant, {
      setting: 'auto',
      chosen: 'fp32',
      reason: 'auto: cpu lacks VNNI/AMX (avx512_vnni, avx_vnni, amx_int8), int8 gains little',
    });
    const h = info(engine, 'h');
    assert.equal(h?.state, 'failed');
    assert.match(h?.error ?? '', /variant fp16: the model has no fp16 export \(it has fp32, int8\)/);
  });
});
