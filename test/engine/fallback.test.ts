import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RerankConfigInput } from '../../server/config/schema.ts';
import { RerankEngine, type RerankEngineOptions } from '../../server/engine/engine.ts';
import { FallbackMonitor, type GpuVersion } from '../../server/gpu/fallback-monitor.ts';
import { FakeGpuProbe, type PlacementDevice } from '../../server/gpu/probe.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { tinyModel } from '../support/models.ts';
import { loadedConfig, pretendGpuLoader, requestLoad, until } from './live-support.ts';

/**
 * GPU → CPU fallback, driven by a fake GPU probe. There is no GPU here: `pretendGpuLoader` runs every
 * session on CPU but reports the provider it was asked for, as a GPU machine would.
 */

const MIB = 1024 * 1024;
let model: string;
before(async () => {
  model = (await tinyModel()).dir;
});

const engines: RerankEngine[] = [];
after(async () => {
  await Promise.all(engines.map((engine) => engine.close()));
});

function gpuConfig(extra: Partial<RerankConfigInput['versions'][string]> = {}): RerankConfigInput {
  return {
    defaultVersion: 'cpu-only',
    versions: {
      'cpu-only': { model, weight: 50 },
      gpu: { model, weight: 50, device: 'cuda', gpuMemoryThresholdMb: 2000, ...extra },
    },
  };
}

async function engineFor(config: RerankConfigInput, probe: FakeGpuProbe, options: Partial<RerankEngineOptions> = {}) {
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const engine = await RerankEngine.create({
    loaded: loadedConfig(config),
    metrics,
    logger: silentLogger(),
    intraOpNumThreads: 1,
    modelThread: 'main',
    gpuProbe: probe,
    // Rounds are driven by the test through fallbackMonitor.check(), besides the one at start.
    fallbackIntervalMs: 3_600_000,
    ...options,
  });
  engines.push(engine);
  // The round started with the engine, and any move it asked for.
  await engine.fallbackMonitor?.check();
  return { engine, metrics };
}

function gpuVersion(engine: RerankEngine) {
  const info = engine.info().versions.find((v) => v.name === 'gpu');
  assert.ok(info);
  return info;
}

async function fallbackCount(metrics: ServerMetrics): Promise<number> {
  return (await metrics.fallbacks.get()).values.find((v) => v.labels.version === 'gpu')?.value ?? 0;
}

describe('GPU → CPU fallback', () => {
  it('moves a version to CPU on low GPU memory and back on recovery, dropping no request', async () => {
    const probe = new FakeGpuProbe();
    probe.set(0, { totalMb: 16000, freeMb: 8000 });
    const { engine, metrics } = await engineFor(gpuConfig(), probe, { loadModel: pretendGpuLoader });
    assert.equal(gpuVersion(engine).device, 'cuda');
    assert.deepEqual(gpuVersion(engine).placement, { configured: 'cuda', wanted: 'cuda', gpuFreeMb: 8000 });
    assert.deepEqual(engine.info().devices, [
      { device: 'cpu', versions: ['cpu-only'] },
      { device: 'cuda', versions: ['gpu'], gpus: [{ deviceId: 0, totalMb: 16000, usedMb: 8000, freeMb: 8000 }] },
    ]);
    assert.equal(await fallbackCount(metrics), 0);
    const text = await metrics.registry.metrics();
    assert.match(text, /reranker_gpu_memory_used_bytes\{version="gpu"\} (\d+)/);
    assert.equal(Number(/reranker_gpu_memory_used_bytes\{version="gpu"\} (\d+)/.exec(text)?.[1]), 8000 * MIB);
    assert.doesNotMatch(text, /reranker_gpu_memory_used_bytes\{version="cpu-only"\}/);

    const load = requestLoad(engine, { shape: (i) => (i % 2 === 0 ? { headerVersion: 'gpu' } : {}) });
    await load.progress();

    probe.set(0, { totalMb: 16000, freeMb: 1500 });
    await engine.fallbackMonitor?.check();
    await load.progress();
    let gpu = gpuVersion(engine);
    assert.equal(gpu.device, 'cpu');
    assert.equal(gpu.state, 'ready');
    assert.equal(gpu.placement?.wanted, 'cpu');
    assert.match(gpu.placement?.reason ?? '', /1500 MiB is under the threshold of 2000 MiB/);
    assert.deepEqual(
      engine.info().devices.map((d) => [d.device, d.versions, d.gpus?.map((g) => g.freeMb)]),
      [['cpu', ['cpu-only', 'gpu'], undefined], ['cuda', [], [1500]]],
      'moved to CPU: listed there, the GPU still reported',
    );
    assert.equal(await fallbackCount(metrics), 1);
    assert.match(await metrics.registry.metrics(), /reranker_version_info\{version="gpu",device="cpu",state="ready"\} 1/);
    assert.doesNotMatch(await metrics.registry.metrics(), /reranker_version_info\{version="gpu",device="cuda"/);

    // Inside the recovery margin: stays on CPU.
    probe.set(0, { totalMb: 16000, freeMb: 2100 });
    await engine.fallbackMonitor?.check();
    assert.equal(gpuVersion(engine).device, 'cpu');

    probe.set(0, { totalMb: 16000, freeMb: 9000 });
    await engine.fallbackMonitor?.check();
    await load.progress();
    gpu = gpuVersion(engine);
    assert.equal(gpu.device, 'cuda');
    assert.deepEqual(gpu.placement, { configured: 'cuda', wanted: 'cuda', gpuFreeMb: 9000 });
    assert.equal(await fallbackCount(metrics), 1, 'a return to the GPU is no fallback');
    assert.match(await metrics.registry.metrics(), /reranker_version_info\{version="gpu",device="cuda",state="ready"\} 1/);

    probe.set(0, { totalMb: 16000, freeMb: 100 });
    await engine.fallbackMonitor?.check();
    await load.progress();
    assert.equal(await fallbackCount(metrics), 2, 'one count per move');

    const { failed, errors, versions } = await load.stop();
    assert.equal(failed, 0, errors.join(' | '));
    assert.ok((versions.gpu ?? 0) > 0);
    assert.equal(engine.liveSessions(), 2, 'each move freed the session it replaced');
    assert.equal(gpuVersion(engine).device, 'cpu');
  });

  it('without fallbackToCpu a version stays on the GPU', async () => {
    const probe = new FakeGpuProbe();
    probe.set(0, { totalMb: 16000, freeMb: 100 });
    const { engine, metrics } = await engineFor(gpuConfig({ fallbackToCpu: false }), probe, { loadModel: pretendGpuLoader });
    assert.equal(gpuVersion(engine).device, 'cuda');
    assert.equal(await fallbackCount(metrics), 0);
  });

  it('with no CUDA at all: the session falls back at load, counted once, and placement moves add no count', async () => {
    const probe = new FakeGpuProbe();
    probe.set(0, { totalMb: 16000, freeMb: 8000 });
    const { engine, metrics } = await engineFor(gpuConfig(), probe);
    let gpu = gpuVersion(engine);
    assert.equal(gpu.device, 'cpu');
    assert.ok(gpu.deviceFallback, 'says why cuda was not used');
    assert.equal(gpu.placement?.wanted, 'cuda');
    assert.equal(await fallbackCount(metrics), 1);

    probe.set(0, { totalMb: 16000, freeMb: 10 });
    await engine.fallbackMonitor?.check();
    gpu = gpuVersion(engine);
    assert.equal(gpu.placement?.wanted, 'cpu');
    assert.equal(gpu.deviceFallback, undefined, 'asked for CPU this time');
    assert.equal(await fallbackCount(metrics), 1, 'already on CPU: no move');
    assert.equal(engine.liveSessions(), 2);
  });

  it('reads the GPU only while a version is configured cuda: a reload that adds one gets the fallback', async () => {
    const probe = new FakeGpuProbe();
    let reads = 0;
    const memory = probe.memory.bind(probe);
    probe.memory = (deviceId) => {
      reads += 1;
      return memory(deviceId);
    };
    probe.set(0, { totalMb: 16000, freeMb: 8000 });
    const cpuOnly: RerankConfigInput = { defaultVersion: 'cpu-only', versions: { 'cpu-only': { model } } };
    const { engine, metrics } = await engineFor(cpuOnly, probe, { loadModel: pretendGpuLoader });
    await engine.fallbackMonitor?.check();
    assert.equal(reads, 0, 'no version wants the GPU');

    await engine.apply(loadedConfig(gpuConfig()));
    await engine.fallbackMonitor?.check();
    assert.equal(gpuVersion(engine).device, 'cuda');
    probe.set(0, { totalMb: 16000, freeMb: 100 });
    await engine.fallbackMonitor?.check();
    assert.equal(gpuVersion(engine).device, 'cpu', 'moved on low memory');
    assert.equal(await fallbackCount(metrics), 1);
    assert.ok(reads >= 2);
  });

  it('an unreadable GPU moves the version to CPU; the timer drives the rounds', async () => {
    const probe = new FakeGpuProbe();
    probe.set(0, { totalMb: 16000, freeMb: 8000 });
    const { engine } = await engineFor(gpuConfig(), probe, { loadModel: pretendGpuLoader, fallbackIntervalMs: 20 });
    assert.equal(gpuVersion(engine).device, 'cuda');
    probe.set(0, undefined);
    await until(() => gpuVersion(engine).device === 'cpu', 'the move to CPU');
    assert.match(gpuVersion(engine).placement?.reason ?? '', /could not be read/);
    await engine.close();
    assert.equal(engine.liveSessions(), 0);
  });
});

describe('FallbackMonitor', () => {
  it('asks for a move only when the decision changes, and keeps the memory gauge per GPU version', async () => {
    const probe = new FakeGpuProbe();
    const metrics = new ServerMetrics({ defaultMetrics: false });
    const placements: Record<string, PlacementDevice> = { a: 'cuda', b: 'cuda' };
    let versions: GpuVersion[] = [];
    const moves: string[] = [];
    const monitor = new FallbackMonitor({
      probe,
      metrics,
      host: {
        gpuVersions: () => versions.map((v) => ({ ...v, placement: placements[v.name] as PlacementDevice })),
        place: async (name, device) => {
          moves.push(`${name}→${device}`);
          placements[name] = device;
        },
      },
    });
    versions = [
      { name: 'a', thresholdMb: 1000, fallbackToCpu: true, placement: 'cuda' },
      { name: 'b', thresholdMb: 3000, fallbackToCpu: true, placement: 'cuda' },
    ];
    probe.set(0, { totalMb: 8000, freeMb: 2000 });
    await monitor.check();
    assert.deepEqual(moves, ['b→cpu']);
    await monitor.check();
    assert.deepEqual(moves, ['b→cpu'], 'no change, no move');
    probe.set(0, { totalMb: 8000, freeMb: 5000 });
    await monitor.check();
    assert.deepEqual(moves, ['b→cpu', 'b→cuda']);
    assert.deepEqual(monitor.lastReading, { deviceId: 0, totalMb: 8000, usedMb: 3000, freeMb: 5000 });
    const used = async () => (await metrics.gpuMemoryUsed.get()).values.map((v) => `${v.labels.version}=${v.value / MIB}`).sort();
    assert.deepEqual(await used(), ['a=3000', 'b=3000']);

    versions = versions.slice(0, 1);
    await monitor.check();
    assert.deepEqual(await used(), ['a=3000'], 'a version that no longer wants the GPU loses its series');
    probe.set(0, undefined);
    await monitor.check();
    assert.deepEqual(await used(), []);
    assert.deepEqual(moves, ['b→cpu', 'b→cuda', 'a→cpu']);
  });
});
