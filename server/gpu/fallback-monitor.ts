import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { choosePlacement, type GpuMemory, type GpuProbe, type PlacementDevice } from './probe.ts';

/**
 * GPU → CPU fallback: every `intervalMs` it reads free GPU memory through a `GpuProbe`, decides for each
 * version configured `device: cuda` where it should run (`choosePlacement`, with hysteresis), and asks
 * the host (the engine) to move the versions whose decision changed. The move itself — load the session
 * on the other provider beside the serving one, switch traffic, drain and free the old — is the host's.
 */

/** A version that wants the GPU, as the monitor sees it. */
export interface GpuVersion {
  name: string;
  thresholdMb: number;
  fallbackToCpu: boolean;
  /** Where it is meant to run now (the last decision). */
  placement: PlacementDevice;
}

/** What the monitor needs from the engine. */
export interface PlacementHost {
  /** Enabled versions configured for `cuda`, read afresh every round (the config may have been reloaded). */
  gpuVersions(): GpuVersion[];
  /** Move a version; resolves when the move has converged (or failed, the version staying where it was). */
  place(name: string, device: PlacementDevice, reason: string): Promise<void>;
}

export interface FallbackMonitorOptions {
  probe: GpuProbe;
  host: PlacementHost;
  metrics?: ServerMetrics;
  logger?: Logger;
  /** Milliseconds between probes (default 5000). */
  intervalMs?: number;
  /** The GPU the versions run on (default 0: a pod sees the GPUs it was given from index 0). */
  deviceId?: number;
  /** Free memory above the threshold needed to return to the GPU (default: see `choosePlacement`). */
  recoveryMarginMb?: number;
}

const MIB = 1024 * 1024;
export const DEFAULT_FALLBACK_INTERVAL_MS = 5000;

export class FallbackMonitor {
  readonly #options: FallbackMonitorOptions;
  #timer: NodeJS.Timeout | undefined;
  /** The round in progress (or the last one): rounds never overlap. */
  #chain: Promise<void> = Promise.resolve();
  #busy = false;
  #last: GpuMemory | undefined;
  /** Versions with a gpu-memory series, so a version that stops wanting the GPU loses it. */
  readonly #labelled = new Set<string>();

  constructor(options: FallbackMonitorOptions) {
    this.#options = options;
  }

  /** Probes now, then every interval. */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), this.#options.intervalMs ?? DEFAULT_FALLBACK_INTERVAL_MS);
    this.#timer.unref();
    this.#tick();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The last reading; undefined before the first probe or when the GPU could not be read. */
  get lastReading(): GpuMemory | undefined {
    return this.#last;
  }

  /** One round now (after the one in progress): resolves when the moves it started have converged. */
  check(): Promise<void> {
    const round = this.#chain.then(() => this.#round());
    this.#chain = round.catch(() => undefined);
    return round;
  }

  /** A timer tick skips while a round (and the moves it started) is still running. */
  #tick(): void {
    if (this.#busy) return;
    this.#busy = true;
    this.check()
      .catch((error: unknown) => this.#options.logger?.error({ err: error }, 'GPU placement check failed'))
      .finally(() => {
        this.#busy = false;
      });
  }

  async #round(): Promise<void> {
    const { probe, host, metrics, logger } = this.#options;
    const deviceId = this.#options.deviceId ?? 0;
    const versions = host.gpuVersions();
    // Nothing wants the GPU (a CPU-only config): no reading, so a CPU pod never runs nvidia-smi.
    const reading = versions.length > 0 ? await probe.memory(deviceId).catch(() => undefined) : undefined;
    this.#last = reading;

    const wanting = new Set(versions.map((v) => v.name));
    for (const name of this.#labelled) {
      if (wanting.has(name) && reading) continue;
      metrics?.gpuMemoryUsed.remove({ version: name });
      this.#labelled.delete(name);
    }

    const moves: Promise<void>[] = [];
    for (const version of versions) {
      if (reading) {
        metrics?.gpuMemoryUsed.set({ version: version.name }, reading.usedMb * MIB);
        this.#labelled.add(version.name);
      }
      const input: Parameters<typeof choosePlacement>[0] = {
        current: version.placement,
        freeMb: reading?.freeMb,
        thresholdMb: version.thresholdMb,
        fallbackToCpu: version.fallbackToCpu,
      };
      if (this.#options.recoveryMarginMb !== undefined) input.recoveryMarginMb = this.#options.recoveryMarginMb;
      const wanted = choosePlacement(input);
      if (wanted === version.placement) continue;
      const reason = placementReason(wanted, reading, deviceId, version.thresholdMb);
      const fields = { version: version.name, from: version.placement, to: wanted, freeMb: reading?.freeMb, thresholdMb: version.thresholdMb };
      if (wanted === 'cpu') logger?.warn(fields, `moving to CPU: ${reason}`);
      else logger?.info(fields, `moving back to the GPU: ${reason}`);
      moves.push(host.place(version.name, wanted, reason));
    }
    await Promise.all(moves);
  }
}

function placementReason(wanted: PlacementDevice, reading: GpuMemory | undefined, deviceId: number, thresholdMb: number): string {
  if (reading === undefined) return `GPU ${deviceId} could not be read`;
  if (wanted === 'cpu') return `free GPU memory ${reading.freeMb} MiB is under the threshold of ${thresholdMb} MiB`;
  return `free GPU memory ${reading.freeMb} MiB is back above the threshold of ${thresholdMb} MiB`;
}
