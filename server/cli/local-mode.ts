import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LoadedConfig } from '../config/load.ts';
import type { Logger } from '../logger.ts';
import { ensureModel } from '../modelgen/index.ts';

/**
 * Local mode: a version whose model directory has no model.onnx gets the generated tiny model, so
 * `npm start` serves on a fresh clone with no network.
 */
export async function prepareLocalModels(loaded: LoadedConfig, logger: Logger): Promise<void> {
  for (const [name, version] of Object.entries(loaded.config.versions)) {
    if (!version.enabled) continue;
    const modelFile = path.join(version.model, 'model.onnx');
    const present = await access(modelFile).then(
      () => true,
      () => false,
    );
    if (present) continue;
    logger.warn({ version: name, model: version.model }, 'model absent: generating the tiny stand-in model');
    await ensureModel({ shape: 'tiny', outDir: version.model });
  }
}

/** The config written where `start --config FILE` finds no file: one version, the generated stand-in model beside it. */
export const DEFAULT_CONFIG = `# Written by rerank-server because no config file was here. Edit it: the server reloads it live.
# The model below is a generated stand-in with RANDOM weights; point \`model\` at a directory holding
# model.onnx and tokenizer.json of a real ONNX export.
defaultVersion: default
versions:
  default:
    enabled: true
    description: "generated tiny cross-encoder (random weights)"
    model: ./models/tiny   # relative to this file
    device: cpu
    weight: 100
serving:
  maxLength: 512
  maxBatchTokens: 16384
  maxBatchSize: 32
  logLevel: info
`;

/** Writes DEFAULT_CONFIG when `file` does not exist; true when it did. */
export async function writeDefaultConfig(file: string): Promise<boolean> {
  const present = await access(file).then(
    () => true,
    () => false,
  );
  if (present) return false;
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await writeFile(file, DEFAULT_CONFIG, { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return true;
}
