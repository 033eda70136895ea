import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { generateModel, type GeneratedModel, type LogitsLayout, type ModelArch } from '../../server/modelgen/index.ts';

/**
 * Tiny generated models for tests: each variant is generated once per test process into a temporary
 * directory (removed at exit) and shared by every test that asks for it. Never ../shared: the project
 * must pass its tests on a fresh clone.
 */

export interface TinyModelVariant {
  arch?: ModelArch;
  logits?: LogitsLayout;
  seed?: number;
}

let root: Promise<string> | undefined;
const cache = new Map<string, Promise<GeneratedModel>>();

function modelsRoot(): Promise<string> {
  root ??= mkdtemp(path.join(os.tmpdir(), 'rerank-test-models-')).then((dir) => {
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  });
  return root;
}

export function tinyModel(variant: TinyModelVariant = {}): Promise<GeneratedModel> {
  const arch = variant.arch ?? 'bert';
  const logits = variant.logits ?? 'batch1';
  const seed = variant.seed ?? 42;
  const key = `tiny-${arch}-${logits}-${seed}`;
  let model = cache.get(key);
  if (!model) {
    model = modelsRoot().then((dir) => generateModel({ shape: 'tiny', arch, logits, seed, outDir: path.join(dir, key) }));
    cache.set(key, model);
  }
  return model;
}

/** A fresh empty directory under the same temporary root (for broken-model fixtures). */
export async function scratchDir(name: string): Promise<string> {
  return path.join(await modelsRoot(), `${name}-${Math.random().toString(36).slice(2, 8)}`);
}
