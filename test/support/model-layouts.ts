import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { tinyModel } from './models.ts';

/**
 * Model directories laid out as people have them, from the tiny generated model: `flat` (model.onnx,
 * tokenizer.json), `split` (the BGE reranker image's model/ + tokenizer/), `hf` (a Hugging Face repo's
 * onnx/model.onnx). `fp16` adds a model_fp16.onnx beside the graph, `cpu` a model_cpu/ export (copies of
 * the graph: tests tell them apart by path).
 */
export type ModelLayout = 'flat' | 'split' | 'hf';

const GRAPH_DIR: Record<ModelLayout, string> = { flat: '', split: 'model', hf: 'onnx' };

export async function layOutModel(dir: string, layout: ModelLayout, extras: { fp16?: boolean; cpu?: boolean } = {}): Promise<string> {
  const source = (await tinyModel()).dir;
  const graphDir = path.join(dir, GRAPH_DIR[layout]);
  const tokenizerDir = layout === 'split' ? path.join(dir, 'tokenizer') : dir;
  const configDir = layout === 'split' ? graphDir : dir;
  const copies: Array<[string, string]> = [
    ['model.onnx', path.join(graphDir, 'model.onnx')],
    ['tokenizer.json', path.join(tokenizerDir, 'tokenizer.json')],
    ['config.json', path.join(configDir, 'config.json')],
  ];
  if (extras.fp16) copies.push(['model.onnx', path.join(graphDir, 'model_fp16.onnx')]);
  if (extras.cpu) copies.push(['model.onnx', path.join(dir, 'model_cpu', 'model.onnx')]);
  for (const [from, to] of copies) {
    await mkdir(path.dirname(to), { recursive: true });
    await copyFile(path.join(source, from), to);
  }
  return dir;
}
