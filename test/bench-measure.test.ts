import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpuLoadBetween, parsePidStat, parseProcStat } from '../bench/cpu-load.ts';
import { cpuPeak, fp32FlopsPerCycle, parseCpuDescription } from '../bench/cpu-peak.ts';
import { encoderFlops } from '../bench/flops.ts';
import { lengthSortedBatches } from '../bench/sorted-loop-contender.ts';
import { wholeNumber } from '../bench/options.ts';
import { median, ratioVerdict } from '../bench/stats.ts';

const zen4 = `processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.134
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
`;

test('nominal FP32 peak: cores × clock × FLOPs per cycle of the widest FMA, said in words', () => {
  const cpu = parseCpuDescription(zen4);
  assert.equal(cpu.vendor, 'AuthenticAMD');
  assert.equal(cpu.family, 25);
  assert.equal(cpu.threadsPerCore, 1);
  assert.equal(fp32FlopsPerCycle(cpu).flopsPerCycle, 32, 'Zen 4 runs a 512-bit FMA as two 256-bit halves');
  const intel = { vendor: 'GenuineIntel', family: 6, model: 143, flags: new Set(['avx512f', 'avx2', 'fma']) };
  assert.equal(fp32FlopsPerCycle(intel).flopsPerCycle, 64);
  assert.equal(fp32FlopsPerCycle({ ...intel, flags: new Set(['avx2', 'fma']) }).flopsPerCycle, 32);
  assert.equal(fp32FlopsPerCycle({ ...intel, flags: new Set(['sse2']) }).flopsPerCycle, 8);
  assert.ok(Number.isNaN(fp32FlopsPerCycle({ ...intel, flags: new Set() }).flopsPerCycle));

  const peak = cpuPeak((file) => (file === '/proc/cpuinfo' ? zen4 : undefined));
  assert.equal(peak.ghz, 2.596134);
  assert.ok(Math.abs(peak.gflops - peak.cores * 2.596134 * 32) < 1e-9);
  assert.match(peak.how, /2\.60 GHz \(\/proc\/cpuinfo cpu MHz\) × 32 FP32 FLOP\/cycle/);
  const withBase = cpuPeak((file) => (file === '/proc/cpuinfo' ? zen4 : file.endsWith('base_frequency') ? '2000000\n' : undefined));
  assert.equal(withBase.ghz, 2, 'cpufreq base frequency (kHz) wins over the current clock');
});

test('encoder FLOPs per pair: projections, feed-forward and attention of each layer, on actual tokens', () => {
  const minilm = { hiddenSize: 384, numLayers: 6, intermediateSize: 1536 };
  // 6 × (8·100·384² + 4·100·384·1536 + 4·100²·384) + 2·384² + 2·384
  assert.equal(encoderFlops(minilm, 100), 2_215_822_080);
  assert.ok(encoderFlops(minilm, 400) > 4 * encoderFlops(minilm, 100), 'attention grows with the square of the length');
});

test("others' CPU load: the machine's busy ticks less this process tree's", () => {
  assert.deepEqual(parseProcStat('cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\n'), { totalTicks: 1000, busyTicks: 190 });
  assert.deepEqual(parsePidStat('4242 (node (worker)) S 4000 4242 4000 0 -1 0 0 0 0 0 70 30 5 2 20 0 9'), { pid: 4242, ppid: 4000, ticks: 107 });
  const load = cpuLoadBetween({ totalTicks: 0, busyTicks: 0, ownTicks: 0 }, { totalTicks: 200, busyTicks: 150, ownTicks: 100 }, 2);
  assert.deepEqual(load, { otherCpus: 0.5, ownCpus: 1, cpus: 2 });
  assert.equal(cpuLoadBetween({ totalTicks: 0, busyTicks: 0, ownTicks: 0 }, { totalTicks: 100, busyTicks: 40, ownTicks: 50 }, 2).otherCpus, 0, 'never below 0');
});

test('length-sorted loop: longest first, consecutive batches under the slot budget and the batch size', () => {
  const batches = lengthSortedBatches([10, 400, 30, 390, 20, 100], { maxBatchTokens: 800, maxBatchSize: 3 });
  assert.deepEqual(batches, [[1, 3], [5, 2, 4], [0]]);
  for (const batch of lengthSortedBatches([50, 50, 50, 50, 50], { maxBatchTokens: 10_000, maxBatchSize: 2 })) assert.ok(batch.length <= 2);
});

test('median: the middle value, the mean of the two middle ones for an even count, NaN for none', () => {
  assert.equal(median([3.4, 1.9, 2.0]), 2.0);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
  const values = [5, 1, 4];
  median(values);
  assert.deepEqual(values, [5, 1, 4], 'the input is not reordered');
});

test('ratio verdict: faster or slower only past the threshold with every round on that side, and never under 3 rounds', () => {
  assert.equal(ratioVerdict([1.06, 1.02, 1.1], 1.05), 'faster');
  assert.equal(ratioVerdict([1.06, 0.98, 1.1], 1.05), 'no clear difference', 'one round below 1');
  assert.equal(ratioVerdict([1.04, 1.02, 1.1], 1.05), 'no clear difference', 'median under the threshold');
  assert.equal(ratioVerdict([0.9, 0.94, 0.8], 1.05), 'slower');
  assert.equal(ratioVerdict([0.9, 1.01, 0.8], 1.05), 'no clear difference', 'one round above 1');
  assert.equal(ratioVerdict([1.5, 1.4], 1.05), 'no verdict under 3 rounds');
});

test('whole-number options: the minimum is kept, and a bad value names the option', () => {
  assert.equal(wholeNumber('rounds', '3'), 3);
  assert.equal(wholeNumber('repeats', '0', 0), 0);
  assert.throws(() => wholeNumber('rounds', '0'), /--rounds: a whole number ≥ 1, not 0/);
  assert.throws(() => wholeNumber('clients', '1.5'), /--clients: a whole number ≥ 1, not 1\.5/);
  assert.throws(() => wholeNumber('waves', 'x'), /--waves/);
});
