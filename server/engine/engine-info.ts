import type { LoadedConfig } from '../config/load.ts';
import { faultsActive } from '../config/faults.ts';
import type { RerankConfig } from '../config/schema.ts';
import type { GpuMemory } from '../gpu/probe.ts';
import { fp16Status } from './model-files.ts';
import type { DeviceInfo, EngineInfo, VersionInfo } from './types.ts';
import { versionState, wantedDevice, type VersionSlot } from './version-slot.ts';

/** What `/info` shows of the engine: the config in force, its limits, and each version it holds. */
export function engineInfo(options: {
  loaded: LoadedConfig;
  appliedAt: Date;
  slots: Iterable<VersionSlot>;
  /** Shadow scorings under way for an answering version. */
  shadowInFlight?: (version: string) => number;
  /** The version answering default traffic. */
  servingDefault: string;
  /** The GPU at the fallback monitor's last probe. */
  gpu: GpuMemory | undefined;
}): EngineInfo {
  const { config, hash } = options.loaded;
  const serving = config.serving;
  const versions = [...options.slots].map((slot) => versionInfo(slot, config, options.gpu?.freeMb, options.shadowInFlight));
  const info: EngineInfo = {
    defaultVersion: config.defaultVersion,
    configHash: hash,
    appliedAt: options.appliedAt.toISOString(),
    versions,
    devices: devices(versions, options.gpu),
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

const RUNNING: ReadonlySet<VersionInfo['state']> = new Set(['loading', 'ready', 'draining']);

/** cpu always; cuda while some version is configured for it or runs there, with the GPU the probe read. */
function devices(versions: readonly VersionInfo[], gpu: GpuMemory | undefined): DeviceInfo[] {
  const on = (device: DeviceInfo['device']) => versions.filter((v) => RUNNING.has(v.state) && v.device === device).map((v) => v.name);
  const list: DeviceInfo[] = [{ device: 'cpu', versions: on('cpu') }];
  const wantsGpu = versions.some((v) => v.enabled && (v.placement?.configured === 'cuda' || v.device === 'cuda'));
  if (wantsGpu || gpu) list.push({ device: 'cuda', versions: on('cuda'), gpus: gpu ? [gpu] : [] });
  return list;
}

function versionInfo(slot: VersionSlot, config: RerankConfig, gpuFreeMb: number | undefined, shadowInFlight?: (version: string) => number): VersionInfo {
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
  const shadow = config.versions[slot.name]?.shadow;
  if (shadow !== undefined) info.shadow = { ...shadow, inFlight: shadowInFlight?.(slot.name) ?? 0 };
  const faults = config.versions[slot.name]?.faults;
  if (faultsActive(faults)) info.faults = faults;
  if (state === 'ready' && slot.active) info.maxLength = slot.active.maxLength(config);
  if (runtime?.deviceFallback !== undefined) info.deviceFallback = runtime.deviceFallback;
  const head = runtime?.head;
  if (head !== undefined) info.head = head;
  const loaded = runtime?.loadedFile;
  if (runtime && loaded) {
    info.modelFile = loaded.model;
    const variant = runtime.variant;
    if (variant) info.variant = { setting: version.variant, chosen: variant.variant, reason: variant.reason };
    const fp16 = fp16Status({ useFp16: config.serving.useFp16, device: runtime.device, loaded });
    if (fp16) info.fp16 = fp16;
  }
  if (info.placement && version.device === 'cuda') {
    if (slot.placement === 'cpu' && slot.placementReason !== undefined) info.placement.reason = slot.placementReason;
    if (gpuFreeMb !== undefined) info.placement.gpuFreeMb = gpuFreeMb;
  }
  return info;
}
