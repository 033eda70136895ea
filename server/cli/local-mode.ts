import { access } from 'node:fs/promises';
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
