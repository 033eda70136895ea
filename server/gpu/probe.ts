import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface GpuMemory {
  deviceId: number;
  totalMb: number;
  usedMb: number;
  freeMb: number;
}

/** Reads GPU memory. The real one asks nvidia-smi; tests use a fake. */
export interface GpuProbe {
  /** Undefined when there is no such GPU (or no driver): callers treat that as "no GPU". */
  memory(deviceId: number): Promise<GpuMemory | undefined>;
}

export type RunCommand = (file: string, args: string[]) => Promise<{ stdout: string }>;

/** nvidia-smi's CSV query; NVML through nvidia-smi keeps the server free of native GPU bindings. */
export class NvidiaSmiProbe implements GpuProbe {
  private readonly run: RunCommand;
  private readonly binary: string;

  constructor(options: { binary?: string; run?: RunCommand } = {}) {
    this.binary = options.binary ?? 'nvidia-smi';
    this.run = options.run ?? ((file, args) => execFileAsync(file, args, { timeout: 5000 }));
  }

  async memory(deviceId: number): Promise<GpuMemory | undefined> {
    let stdout: string;
    try {
      ({ stdout } = await this.run(this.binary, [
        '--query-gpu=index,memory.total,memory.used,memory.free',
        '--format=csv,noheader,nounits',
        `--id=${deviceId}`,
      ]));
    } catch {
      return undefined;
    }
    return parseNvidiaSmiMemory(stdout, deviceId);
  }
}

/** Parses `index, total, used, free` lines (MiB). */
export function parseNvidiaSmiMemory(stdout: string, deviceId: number): GpuMemory | undefined {
  for (const line of stdout.split('\n')) {
    const fields = line.split(',').map((field) => Number(field.trim()));
    if (fields.length !== 4 || fields.some((n) => !Number.isFinite(n))) continue;
    const [index, totalMb, usedMb, freeMb] = fields as [number, number, number, number];
    if (index === deviceId) return { deviceId, totalMb, usedMb, freeMb };
  }
  return undefined;
}

/** A probe whose readings a test sets. */
export class FakeGpuProbe implements GpuProbe {
  private readonly readings = new Map<number, GpuMemory>();

  set(deviceId: number, reading: { totalMb: number; freeMb: number } | undefined): void {
    if (!reading) this.readings.delete(deviceId);
    else this.readings.set(deviceId, { deviceId, ...reading, usedMb: reading.totalMb - reading.freeMb });
  }

  async memory(deviceId: number): Promise<GpuMemory | undefined> {
    return this.readings.get(deviceId);
  }
}

export type PlacementDevice = 'cuda' | 'cpu';

/**
 * Where a version that wants the GPU should run, given free GPU memory. Hysteresis keeps a version from
 * flapping: it leaves the GPU when free memory drops under the threshold and returns only once free
 * memory is back above threshold + margin.
 */
export function choosePlacement(input: {
  current: PlacementDevice;
  freeMb: number | undefined;
  thresholdMb: number;
  fallbackToCpu: boolean;
  recoveryMarginMb?: number;
}): PlacementDevice {
  if (input.freeMb === undefined) return input.fallbackToCpu ? 'cpu' : input.current;
  if (!input.fallbackToCpu) return 'cuda';
  const margin = input.recoveryMarginMb ?? Math.max(256, input.thresholdMb * 0.1);
  if (input.current === 'cuda') return input.freeMb < input.thresholdMb ? 'cpu' : 'cuda';
  return input.freeMb >= input.thresholdMb + margin ? 'cuda' : 'cpu';
}
