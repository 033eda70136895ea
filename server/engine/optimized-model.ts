import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { firstLine } from '../errors.ts';

/**
 * ORT's graph optimisations (level `all`: constant folding, LayerNorm/GELU/attention fusions, int8
 * MatMul fusions) run at every session start and take a good part of it. The first load saves the
 * optimised graph (`optimizedModelFilePath`); later loads of the same export on the same device and ORT
 * version read that file with optimisations off, as onnxruntime's docs advise for offline optimisation.
 *
 * The file lies beside the model (`model_int8.cpu-<cpu model hash>.ort-1.30.0.opt.onnx`), or, where the model directory
 * is read-only (a mounted volume usually is), under a cache directory: RERANK_ORT_CACHE_DIR, else
 * <tmpdir>/rerank-ort-cache. RERANK_ORT_CACHE_DIR=off turns it off. A saved file older than its model is
 * stale and replaced; one that fails to load is removed and the model loads as usual.
 */

export type OptimizedState = 'reused' | 'saved' | 'off' | 'skipped';

export interface OptimizedModel {
  state: OptimizedState;
  /** The optimised graph read or written. */
  file?: string;
  /** Why it was skipped, or why a saved file could not be used. */
  reason?: string;
}

export interface OptimizedModelSettings {
  /** Where saved graphs go when the model's directory is not writable; `false`: never save or reuse. */
  cacheDir: string | false;
}

/** Graphs this large are not saved: one protobuf holds at most 2 GiB, and such models use external data. */
const MAX_SAVED_BYTES = 1.5 * 1024 ** 3;

export function optimizedModelSettings(env: Record<string, string | undefined> = process.env): OptimizedModelSettings {
  const configured = env.RERANK_ORT_CACHE_DIR;
  if (configured === 'off') return { cacheDir: false };
  return { cacheDir: configured || path.join(os.tmpdir(), 'rerank-ort-cache') };
}

function ortVersion(): string {
  return (ort.env.versions as { common?: string } | undefined)?.common ?? 'unknown';
}

/**
 * The machine a CPU graph was optimised on: ORT's level `all` may lay data out for this CPU's vector
 * width, and such a graph "should only be used in the same environment". A model volume shared by nodes
 * of different CPUs keeps one file per CPU model.
 */
function machineKey(device: string): string {
  const cpu = `${os.arch()} ${os.cpus()[0]?.model ?? 'unknown'}`;
  return device === 'cpu' ? `cpu-${createHash('sha256').update(cpu).digest('hex').slice(0, 8)}` : device;
}

/** `model_int8.onnx` on cpu → `model_int8.cpu-1a2b3c4d.ort-1.30.0.opt.onnx`: one file per export, device (CPU model) and ORT version. */
export function optimizedFileName(modelPath: string, device: string): string {
  return `${path.basename(modelPath, '.onnx')}.${machineKey(device)}.ort-${ortVersion()}.opt.onnx`;
}

async function writable(dir: string): Promise<boolean> {
  return access(dir, constants.W_OK).then(
    () => true,
    () => false,
  );
}

/** Beside the model when its directory is writable, else under the cache directory (one subdirectory per model path). */
export async function optimizedFilePath(modelPath: string, device: string, settings: OptimizedModelSettings): Promise<string | undefined> {
  const name = optimizedFileName(modelPath, device);
  const dir = path.dirname(path.resolve(modelPath));
  if (await writable(dir)) return path.join(dir, name);
  if (settings.cacheDir === false) return undefined;
  const key = createHash('sha256').update(path.resolve(modelPath)).digest('hex').slice(0, 16);
  const cacheDir = path.join(settings.cacheDir, key);
  try {
    await mkdir(cacheDir, { recursive: true });
  } catch {
    return undefined;
  }
  return (await writable(cacheDir)) ? path.join(cacheDir, name) : undefined;
}

async function hasExternalData(modelPath: string): Promise<boolean> {
  const base = path.basename(modelPath);
  const entries = await readdir(path.dirname(modelPath)).catch(() => [] as string[]);
  return entries.some((entry) => entry.startsWith(base) && /\.onnx[._]data$/.test(entry));
}

let temporaryCounter = 0;

/**
 * Creates a session on `modelPath` with `options` (level `all`), through the saved optimised graph when
 * there is a current one, saving it when there is not.
 */
export async function createOptimizedSession(
  modelPath: string,
  options: InferenceSession.SessionOptions,
  device: string,
  settings: OptimizedModelSettings = optimizedModelSettings(),
): Promise<{ session: InferenceSession; optimized: OptimizedModel }> {
  if (settings.cacheDir === false) return { session: await ort.InferenceSession.create(modelPath, options), optimized: { state: 'off' } };
  const source = await stat(modelPath);
  if (source.size > MAX_SAVED_BYTES || (await hasExternalData(modelPath))) {
    const reason = 'model over 1.5 GiB or with external data';
    return { session: await ort.InferenceSession.create(modelPath, options), optimized: { state: 'skipped', reason } };
  }
  const file = await optimizedFilePath(modelPath, device, settings);
  if (file === undefined) {
    const reason = 'neither the model directory nor the cache directory is writable';
    return { session: await ort.InferenceSession.create(modelPath, options), optimized: { state: 'skipped', reason } };
  }

  const saved = await stat(file).catch(() => undefined);
  let staleReason: string | undefined;
  if (saved && saved.size > 0 && saved.mtimeMs >= source.mtimeMs) {
    try {
      const session = await ort.InferenceSession.create(file, { ...options, graphOptimizationLevel: 'disabled' });
      return { session, optimized: { state: 'reused', file } };
    } catch (error) {
      staleReason = `saved graph failed to load (${firstLine(error)}): saved again`;
    }
  } else if (saved) {
    staleReason = 'saved graph older than the model: saved again';
  }

  // ORT writes the file while it creates the session: a temporary name, renamed once complete, so that a
  // concurrent load never reads half a file.
  const temporary = `${file}.${process.pid}.${temporaryCounter++}.tmp`;
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelPath, { ...options, optimizedModelFilePath: temporary });
  } catch (error) {
    await rm(temporary, { force: true });
    // Saving can fail where loading does not (a graph ORT cannot serialise after fusion): load without it.
    const reason = `saving the optimised graph failed (${firstLine(error)})`;
    return { session: await ort.InferenceSession.create(modelPath, options), optimized: { state: 'skipped', reason } };
  }
  try {
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    return { session, optimized: { state: 'skipped', reason: `could not save ${file}: ${firstLine(error)}` } };
  }
  return { session, optimized: { state: 'saved', file, ...(staleReason ? { reason: staleReason } : {}) } };
}
