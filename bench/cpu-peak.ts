import { readFileSync } from 'node:fs';
import os from 'node:os';

/**
 * This CPU's nominal float32 peak, from what /proc/cpuinfo says: cores × clock × FP32 FLOPs per cycle per
 * core. The FLOPs per cycle come from the widest vector FMA the CPU has and how many such FMAs its cores
 * issue per cycle, which no flag tells: it is taken from the microarchitecture (vendor, family), and the
 * derivation is returned in words so a reader can check it. The clock is the one the kernel reports
 * (cpufreq's base frequency when there is one, else /proc/cpuinfo's `cpu MHz`); a core that boosts past
 * it does more, so the share of peak is an upper estimate of how much of the machine was used.
 */

export interface CpuDescription {
  vendor: string;
  family: number;
  model: number;
  modelName: string;
  flags: Set<string>;
  /** Clock the kernel reports, in MHz. */
  mhz: number;
  /** Logical CPUs per physical core (SMT), 1 when /proc/cpuinfo does not say. */
  threadsPerCore: number;
}

export interface FlopsPerCycle {
  flopsPerCycle: number;
  why: string;
}

export interface CpuPeak extends FlopsPerCycle {
  /** Physical cores this process may run on. */
  cores: number;
  ghz: number;
  gflops: number;
  /** The whole derivation, for the report. */
  how: string;
}

/** The first processor's fields of a /proc/cpuinfo text. */
export function parseCpuDescription(text: string): CpuDescription {
  const first = text.split(/\n\s*\n/)[0] ?? '';
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(first)?.[1]?.trim() ?? '';
  const siblings = Number(field('siblings'));
  const coresPerSocket = Number(field('cpu cores'));
  return {
    vendor: field('vendor_id'),
    family: Number(field('cpu family')),
    model: Number(field('model')),
    modelName: field('model name'),
    flags: new Set(field('flags').split(/\s+/).filter(Boolean)),
    mhz: Number(field('cpu MHz')),
    threadsPerCore: siblings > 0 && coresPerSocket > 0 ? Math.max(1, Math.round(siblings / coresPerSocket)) : 1,
  };
}

/** FP32 FLOPs one core can retire per cycle: lanes × 2 (a fused multiply-add is two) × FMA issues per cycle. */
export function fp32FlopsPerCycle(cpu: Pick<CpuDescription, 'vendor' | 'family' | 'model' | 'flags'>): FlopsPerCycle {
  const amd = cpu.vendor === 'AuthenticAMD';
  if (cpu.flags.has('avx512f')) {
    if (amd && cpu.family === 0x19) {
      return { flopsPerCycle: 32, why: 'AVX-512 on AMD Zen 4 (family 0x19): a 512-bit FMA is split over its two 256-bit FMA pipes, 16 lanes × 2 × 1 per cycle' };
    }
    return { flopsPerCycle: 64, why: `AVX-512 with two 512-bit FMA units (${amd ? 'AMD Zen 5' : 'Intel Xeon Skylake-SP and later; parts with one FMA unit do half'}): 16 lanes × 2 × 2 per cycle` };
  }
  if (cpu.flags.has('fma') && cpu.flags.has('avx2')) {
    if (amd && cpu.family === 0x17 && cpu.model < 0x30) return { flopsPerCycle: 16, why: 'AVX2 on AMD Zen 1 (two 128-bit FMA pipes): 4 lanes × 2 × 2 per cycle' };
    return { flopsPerCycle: 32, why: 'AVX2 with two 256-bit FMA units: 8 lanes × 2 × 2 per cycle' };
  }
  if (cpu.flags.has('avx')) return { flopsPerCycle: 16, why: 'AVX without FMA: one 8-lane multiply and one 8-lane add per cycle' };
  if (cpu.flags.has('sse2')) return { flopsPerCycle: 8, why: 'SSE: one 4-lane multiply and one 4-lane add per cycle' };
  if (cpu.flags.has('asimd')) return { flopsPerCycle: 16, why: 'Arm NEON with two 128-bit FMA pipes: 4 lanes × 2 × 2 per cycle' };
  return { flopsPerCycle: Number.NaN, why: 'no vector extension recognised in /proc/cpuinfo' };
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** This machine's nominal FP32 peak, for the cores this process may use. */
export function cpuPeak(read: (file: string) => string | undefined = readOptional): CpuPeak {
  const cpu = parseCpuDescription(read('/proc/cpuinfo') ?? '');
  const base = Number(read('/sys/devices/system/cpu/cpu0/cpufreq/base_frequency') ?? Number.NaN) / 1000;
  const mhz = Number.isFinite(base) && base > 0 ? base : cpu.mhz;
  const clockSource = Number.isFinite(base) && base > 0 ? 'cpufreq base_frequency' : '/proc/cpuinfo cpu MHz';
  const logical = os.availableParallelism();
  const cores = Math.max(1, Math.floor(logical / cpu.threadsPerCore));
  const perCycle = fp32FlopsPerCycle(cpu);
  const ghz = mhz / 1000;
  const gflops = cores * ghz * perCycle.flopsPerCycle;
  const how =
    `${cores} core${cores === 1 ? '' : 's'} (${logical} logical CPU${logical === 1 ? '' : 's'} usable, ${cpu.threadsPerCore} per core) × ${ghz.toFixed(2)} GHz (${clockSource}) × ` +
    `${perCycle.flopsPerCycle} FP32 FLOP/cycle (${perCycle.why}) = ${gflops.toFixed(0)} GFLOP/s; ${cpu.modelName || cpu.vendor || 'unknown CPU'}, family ${cpu.family} model ${cpu.model}`;
  return { ...perCycle, cores, ghz, gflops, how };
}
