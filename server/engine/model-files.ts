import { access } from 'node:fs/promises';
import path from 'node:path';

export interface ModelFiles {
  model: string;
  tokenizer: string;
  config: string;
}

/**
 * The files of a model directory: model.onnx (or onnx/model.onnx, as Hugging Face repos lay it out),
 * tokenizer.json and config.json. `model` may also name the .onnx file itself.
 */
export async function modelFiles(model: string): Promise<ModelFiles> {
  const dir = model.endsWith('.onnx') ? path.dirname(model) : model;
  const candidates = model.endsWith('.onnx') ? [model] : [path.join(dir, 'model.onnx'), path.join(dir, 'onnx', 'model.onnx')];
  let modelPath: string | undefined;
  for (const candidate of candidates) {
    if (await exists(candidate)) {
      modelPath = candidate;
      break;
    }
  }
  if (modelPath === undefined) throw new Error(`no model.onnx in ${dir}`);
  const tokenizer = path.join(dir, 'tokenizer.json');
  if (!(await exists(tokenizer))) throw new Error(`no tokenizer.json in ${dir}`);
  return { model: modelPath, tokenizer, config: path.join(dir, 'config.json') };
}

function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
