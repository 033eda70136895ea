import { constants } from 'node:fs';
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readConfigFile, type LoadedConfig } from '../config/load.ts';
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

/** Where the user's caches go: $XDG_CACHE_HOME, else the platform's cache directory (~/.cache on Linux). */
export function userCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME)) return path.join(env.XDG_CACHE_HOME, 'rerank-server');
  if (process.platform === 'darwin') return path.join(os.homedir(), 'Library', 'Caches', 'rerank-server');
  if (process.platform === 'win32' && env.LOCALAPPDATA) return path.join(env.LOCALAPPDATA, 'rerank-server', 'Cache');
  return path.join(os.homedir(), '.cache', 'rerank-server');
}

async function writableDir(dir: string): Promise<boolean> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function modelsPresent(loaded: LoadedConfig): Promise<boolean> {
  for (const version of Object.values(loaded.config.versions)) {
    if (!version.enabled) continue;
    const present = await access(path.join(version.model, 'model.onnx')).then(
      () => true,
      () => false,
    );
    if (!present) return false;
  }
  return true;
}

export interface LocalConfigChoice {
  /** The config file `start --local` serves. */
  file: string;
  /** Set when `file` is a copy of the package's config in a user-writable directory, and why. */
  copiedBecause?: string;
}

/**
 * The config `start --local` serves. From a checkout (or `npm link`) it is the package's own
 * config/local.yaml, its stand-in model generated into the package's models/local as always. From an
 * install (the package under node_modules: replaced on every reinstall, often root-owned when global),
 * or where that directory is not writable, it is a copy of that file in the user's cache directory
 * ($XDG_CACHE_HOME/rerank-server, else ~/.cache/rerank-server; the OS temp dir as the last resort):
 * the model path in the file is relative to it, so the model lands beside the copy
 * (`<cache>/models/local/...`). The copy is rewritten on each start; `start --config FILE` serves a config of your own.
 */
export async function chooseLocalConfig(
  packageConfig: string,
  options: { installed: boolean; env?: NodeJS.ProcessEnv },
): Promise<LocalConfigChoice> {
  const { loaded } = await readConfigFile(packageConfig);
  let reason: string | undefined;
  if (options.installed) reason = 'the package is installed under node_modules';
  else if (!(await modelsPresent(loaded))) {
    for (const version of Object.values(loaded.config.versions)) {
      if (version.enabled && !(await writableDir(path.dirname(version.model)))) {
        reason = `${path.dirname(version.model)} is not writable`;
        break;
      }
    }
  }
  if (!reason) return { file: packageConfig };
  // The copy keeps the package's layout (config/ beside models/), so relative model paths land in the cache too.
  const text = await readFile(packageConfig, 'utf8');
  for (const root of [userCacheDir(options.env), path.join(os.tmpdir(), `rerank-server-${process.getuid?.() ?? os.userInfo().username}`)]) {
    const configDir = path.join(root, path.basename(path.dirname(packageConfig)));
    if (!(await writableDir(configDir))) continue;
    const file = path.join(configDir, path.basename(packageConfig));
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, text);
    await rename(temporary, file);
    return { file, copiedBecause: reason };
  }
  throw new Error(`start --local: ${reason}, and neither ${userCacheDir(options.env)} nor the temp dir is writable: pass --config FILE`);
}
