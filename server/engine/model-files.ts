import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Device } from './onnx-model.ts';

export interface ModelFiles {
  /** The model directory (or the directory of the .onnx file named). */
  dir: string;
  model: string;
  tokenizer: string;
  config: string;
  /** The fp16 export beside `model` (`model_fp16.onnx` beside `model.onnx`), when there is one. */
  fp16Model?: string;
  /** `model_cpu/`'s model: what a session on CPU loads, when there is one. */
  cpuModel?: string;
}

/** Where the graph may lie in a model directory: flat, a Hugging Face repo's onnx/, or the BGE image's model/. */
const MODEL_LAYOUTS = ['model.onnx', 'onnx/model.onnx', 'model/model.onnx', 'model/onnx/model.onnx'];
const TOKENIZER_LAYOUTS = ['tokenizer.json', 'tokenizer/tokenizer.json', 'model/tokenizer.json'];
const CONFIG_LAYOUTS = ['config.json', 'model/config.json', 'tokenizer/config.json'];

/**
 * The files of a model directory, in the layouts people have: `model.onnx` + `tokenizer.json`;
 * `model/` + `tokenizer/` (the BGE reranker image's); a Hugging Face repo's `onnx/model.onnx`. `model`
 * may also name the .onnx file itself. A `model_cpu/` subdirectory holds what CPU sessions load.
 */
export async function modelFiles(model: string): Promise<ModelFiles> {
  const isFile = model.endsWith('.onnx');
  const dir = isFile ? path.dirname(model) : model;
  const modelPath = isFile ? ((await exists(model)) ? model : undefined) : await firstExisting(dir, MODEL_LAYOUTS);
  if (modelPath === undefined) throw new Error(`no model.onnx in ${dir} (looked for ${isFile ? path.basename(model) : MODEL_LAYOUTS.join(', ')})`);
  const tokenizer = await firstExisting(dir, TOKENIZER_LAYOUTS);
  if (tokenizer === undefined) throw new Error(`no tokenizer.json in ${dir} (looked for ${TOKENIZER_LAYOUTS.join(', ')})`);
  const files: ModelFiles = { dir, model: modelPath, tokenizer, config: (await firstExisting(dir, CONFIG_LAYOUTS)) ?? path.join(dir, 'config.json') };
  const fp16 = await firstExisting(path.dirname(modelPath), [`${path.basename(modelPath, '.onnx')}_fp16.onnx`]);
  if (fp16 !== undefined) files.fp16Model = fp16;
  const cpuModel = isFile ? undefined : await firstExisting(path.join(dir, 'model_cpu'), ['model.onnx', 'onnx/model.onnx']);
  if (cpuModel !== undefined) files.cpuModel = cpuModel;
  return files;
}

/** The graph a session loads; `fp16`: it is the fp16 export. */
export interface ModelChoice {
  model: string;
  fp16: boolean;
}

/**
 * Which graph a session on `device` loads: on CPU, `model_cpu/`'s when there is one; on CUDA with
 * `useFp16`, the fp16 export when there is one; else the model.
 */
export function chooseModelFile(files: ModelFiles, options: { device: Device; useFp16: boolean }): ModelChoice {
  if (options.device === 'cpu') return { model: files.cpuModel ?? files.model, fp16: false };
  if (options.useFp16 && files.fp16Model !== undefined) return { model: files.fp16Model, fp16: true };
  return { model: files.model, fp16: false };
}

/** What became of `useFp16` for a session (shown in `/info`); undefined while it is off. */
export function fp16Status(options: { useFp16: boolean; device: Device; loaded: ModelChoice }): { applied: boolean; note: string } | undefined {
  if (!options.useFp16) return undefined;
  const file = path.basename(options.loaded.model);
  if (options.loaded.fp16) return { applied: true, note: `runs the fp16 export ${file}` };
  if (options.device === 'cpu') return { applied: false, note: 'useFp16 does not apply on CPU: the model runs in the precision of its ONNX export' };
  return { applied: false, note: `no fp16 export beside ${file} (${file.replace(/\.onnx$/, '')}_fp16.onnx): the model runs in the precision of its ONNX export` };
}

/** One line on what a model directory holds, for check-config: the files found, relative to it. */
export function describeModelFiles(files: ModelFiles): string {
  const rel = (file: string) => path.relative(files.dir, file) || path.basename(file);
  const parts = [`model ${rel(files.model)}`, `tokenizer ${rel(files.tokenizer)}`];
  if (files.fp16Model !== undefined) parts.push(`fp16 ${rel(files.fp16Model)}`);
  if (files.cpuModel !== undefined) parts.push(`CPU fallback ${rel(files.cpuModel)}`);
  return parts.join(', ');
}

async function firstExisting(dir: string, candidates: readonly string[]): Promise<string | undefined> {
  for (const candidate of candidates) {
    const file = path.join(dir, candidate);
    if (await exists(file)) return file;
  }
  return undefined;
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
