import type { LoadedConfig } from '../config/load.ts';
import type { RerankConfig } from '../config/schema.ts';
import type { EngineInfo, VersionInfo } from './types.ts';
import { versionState, wantedDevice, type VersionSlot } from './version-slot.ts';

/** What `/info` shows of the engine: the config in force, its limits, and each version it holds. */
export function engineInfo(options: {
  loaded: LoadedConfig;
  appliedAt: Date;
  slots: Iterable<VersionSlot>;
  /** The version answering default traffic. */
  servingDefault: string;
  /** Free GPU memory at the fallback monitor's last probe. */
  gpuFreeMb: number | undefined;
}): EngineInfo {
  const { config, hash } = options.loaded;
  const serving = config.serving;
  const info: EngineInfo = {
    defaultVersion: config.defaultVersion,
    configHash: hash,
    appliedAt: options.appliedAt.toISOString(),
    versions: [...options.slots].map((slot) => versionInfo(slot, config, options.gpuFreeMb)),
    limits: {
      maxLength: serving.maxLength,
      maxBatchTokens: serving.maxBatchTokens,
      maxBatchSize: serving.maxBatchSize,
      maxQueuedPairs: serving.maxQueuedPairs,
      maxDocuments: serving.maxDocuments,
      maxBodyBytes: serving.maxBodyBytes,
    },
  };
  if (options.servingDefault !== config.defaultVersion) info.servingDefault = options.servingDefault;
  return info;
}

function versionInfo(slot: VersionSlot, config: RerankConfig, gpuFreeMb: number | undefined): VersionInfo {
  const version = config.versions[slot.name] ?? slot.config;
  const state = versionState(slot, config);
  const runtime = slot.active ?? slot.next;
  let queuedPairs = 0;
  let inFlight = 0;
  for (const r of [slot.active, ...slot.draining]) {
    if (!r) continue;
    queuedPairs += r.queuedPairs;
    inFlight += r.inFlight;
  }
  const info: VersionInfo = {
    name: slot.name,
    state,
    enabled: config.versions[slot.name]?.enabled ?? false,
    description: version.description,
    device: runtime?.device ?? wantedDevice(slot, version),
    weight: version.weight,
    modelPath: runtime?.spec.model ?? version.model,
    inputs: runtime?.inputs ?? [],
    synthetic: runtime?.synthetic ?? false,
    queuedPairs,
    inFlight,
    placement: { configured: version.device, wanted: wantedDevice(slot, version) },
  };
  const error = slot.error ?? runtime?.error;
  if (error !== undefined) info.error = error;
  if (state === 'ready' && slot.active) info.maxLength = slot.active.maxLength(config);
  if (runtime?.deviceFallback !== undefined) info.deviceFallback = runtime.deviceFallback;
  if (info.placement && version.device === 'cuda') {
    if (slot.placement === 'cpu' && slot.placementReason !== undefined) info.placement.reason = slot.placementReason;
    if (gpuFreeMb !== undefined) info.placement.gpuFreeMb = gpuFreeMb;
  }
  return info;
}
