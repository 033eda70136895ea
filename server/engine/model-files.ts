import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Device } from './onnx-model.ts';
import type { ModelVariant } from './variant-choice.ts';

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
  /** The exports beside `model`, by precision (fp32 is `model` itself when it is model.onnx). */
  variants: Partial<Record<ModelVariant, string>>;
}

/**
 * The names exports of each precision have beside `<base>.onnx`, in order of preference: our quantizer's,
 * then those Hugging Face repos ship (Xenova/Optimum: the AVX-512 VNNI build, then the generic one).
 */
export function variantFileNames(variant: ModelVariant, base = 'model'): string[] {
  if (variant === 'fp32') return [`${base}.onnx`];
  if (variant === 'fp16') return [`${base}_fp16.onnx`];
  return [`${base}_int8.onnx`, `${base}_qint8_avx512_vnni.onnx`, `${base}_quantized.onnx`];
}

/** Directories a graph may lie in, as MODEL_LAYOUTS has them. */
const GRAPH_DIRS = ['.', 'onnx', 'model', 'model/onnx'];

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
  // A directory may hold only a quantized or fp16 export (a pull of one variant): that is its model then.
  const modelPath = isFile ? ((await exists(model)) ? model : undefined) : ((await firstExisting(dir, MODEL_LAYOUTS)) ?? (await firstVariantOnly(dir)));
  if (modelPath === undefined) {
    throw new Error(`no model.onnx in ${dir} (looked for ${isFile ? path.basename(model) : MODEL_LAYOUTS.join(', ')})`);
  }
  const tokenizer = await firstExisting(dir, TOKENIZER_LAYOUTS);
  if (tokenizer === undefined) throw new Error(`no tokenizer.json in ${dir} (looked for ${TOKENIZER_LAYOUTS.join(', ')})`);
  const files: ModelFiles = { dir, model: modelPath, tokenizer, config: (await firstExisting(dir, CONFIG_LAYOUTS)) ?? path.join(dir, 'config.json'), variants: {} };
  const graphDir = path.dirname(modelPath);
  const base = isFile || path.basename(modelPath) === 'model.onnx' ? path.basename(modelPath, '.onnx') : 'model';
  for (const variant of ['fp32', 'int8', 'fp16'] as const) {
    const found = await firstExisting(graphDir, variantFileNames(variant, base));
    if (found !== undefined) files.variants[variant] = found;
  }
  if (isFile) files.variants.fp32 = modelPath;
  if (files.variants.fp16 !== undefined) files.fp16Model = files.variants.fp16;
  const cpuModel = isFile ? undefined : await firstExisting(path.join(dir, 'model_cpu'), ['model.onnx', 'onnx/model.onnx']);
  if (cpuModel !== undefined) files.cpuModel = cpuModel;
  return files;
}

/** The graph a session loads; `fp16`: it is the fp16 export. */
export interface ModelChoice {
  model: string;
  fp16: boolean;
  /** Its precision, once chosen by variant (chooseVariantFile). */
  variant?: ModelVariant;
}

/** The exports a directory has, for chooseVariant. */
export function availableVariants(files: ModelFiles): ModelVariant[] {
  return (['fp32', 'int8', 'fp16'] as const).filter((v) => files.variants[v] !== undefined);
}

/** The graph of a chosen variant; a float32 session on CPU loads `model_cpu/`'s when there is one. */
export function chooseVariantFile(files: ModelFiles, options: { device: Device; variant: ModelVariant }): ModelChoice {
  const file = files.variants[options.variant];
  if (file === undefined) throw new Error(`no ${options.variant} export in ${files.dir} (looked for ${variantFileNames(options.variant).join(', ')})`);
  if (options.variant === 'fp32' && options.device === 'cpu' && files.cpuModel !== undefined) return { model: files.cpuModel, fp16: false, variant: 'fp32' };
  return { model: file, fp16: options.variant === 'fp16', variant: options.variant };
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
  if (files.variants.int8 !== undefined) parts.push(`int8 ${rel(files.variants.int8)}`);
  if (files.fp16Model !== undefined) parts.push(`fp16 ${rel(files.fp16Model)}`);
  if (files.cpuModel !== undefined) parts.push(`CPU fallback ${rel(files.cpuModel)}`);
  return parts.join(', ');
}

/** The preferred int8 (else fp16) export of the first graph directory that has one. */
async function firstVariantOnly(dir: string): Promise<string | undefined> {
  for (const graphDir of GRAPH_DIRS) {
    const found = await firstExisting(path.join(dir, graphDir), [...variantFileNames('int8'), ...variantFileNames('fp16')]);
    if (found !== undefined) return found;
  }
  return undefined;
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
