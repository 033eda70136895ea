import type { RerankConfig, VersionConfig } from '../config/schema.ts';
import type { PlacementDevice } from '../gpu/probe.ts';
import type { ServerMetrics } from '../metrics.ts';
import type { Device } from './onnx-model.ts';
import type { Runtime, RuntimeSpec } from './runtime.ts';
import type { VersionState } from './types.ts';

/** A version as the engine holds it: the runtimes it serves through, and what it was last asked to be. */
export interface VersionSlot {
  name: string;
  /** The runtime taking traffic when ready; else the one that failed. */
  active?: Runtime;
  /** A runtime loading beside `active`, to take over once warm. */
  next?: Runtime;
  /** Runtimes taken out of traffic and finishing their in-flight requests. */
  readonly draining: Set<Runtime>;
  /** Its config at the last reconcile; also describes a removed version while it drains. */
  config: VersionConfig;
  reconciled?: VersionConfig;
  /** Why the newest load failed (cleared by a successful one). */
  error?: string;
  /** The spec whose load failed: moves of the fallback monitor do not retry it, applies do. */
  failedSpec?: RuntimeSpec;
  /** Where the fallback monitor wants it; read only when configured `cuda`. */
  placement: PlacementDevice;
  placementReason?: string;
  /** The version_info series last set, removed when state or device change. */
  published?: { device: Device; state: VersionState };
}

export function newSlot(name: string, config: VersionConfig): VersionSlot {
  return { name, config, draining: new Set(), placement: 'cuda' };
}

/** Nothing of it is configured or held any more. */
export function isGone(slot: VersionSlot, config: RerankConfig): boolean {
  return !config.versions[slot.name] && !slot.active && !slot.next && slot.draining.size === 0;
}

export function versionState(slot: VersionSlot, config: RerankConfig): VersionState {
  const active = slot.active;
  if (!config.versions[slot.name]?.enabled) return active || slot.next || slot.draining.size > 0 ? 'draining' : 'disabled';
  if (active?.state === 'ready') return 'ready';
  if (active?.state === 'failed' && !slot.next) return 'failed';
  return 'loading';
}

/** Where it should run: the fallback monitor's placement when configured `cuda`. */
export function wantedDevice(slot: VersionSlot, version: VersionConfig): Device {
  return version.device === 'cuda' ? slot.placement : 'cpu';
}

/** Keeps `reranker_version_info` at one series per version, with its state and the device in use. */
export function publishVersionInfo(metrics: ServerMetrics, slot: VersionSlot, config: RerankConfig): void {
  const state = versionState(slot, config);
  const device = (slot.active ?? slot.next)?.device ?? wantedDevice(slot, config.versions[slot.name] ?? slot.config);
  const previous = slot.published;
  if (previous?.state === state && previous.device === device) return;
  const gauge = metrics.versionInfo;
  if (previous) gauge.remove({ version: slot.name, ...previous });
  gauge.set({ version: slot.name, device, state }, 1);
  slot.published = { device, state };
}
