import { copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AutoModelForSequenceClassification, AutoTokenizer, env, type PreTrainedModel, type PreTrainedTokenizer, type Tensor } from '@huggingface/transformers';
import { OneAtATime, type Contender } from './contender.ts';
import type { RerankWorkloadRequest } from './workload.ts';

/**
 * transformers.js (`@huggingface/transformers`, on the project's onnxruntime-node) on the very model files
 * the server runs. It loads a model from a local directory laid out like a Hugging Face repo:
 * config.json (model_type bert, BertForSequenceClassification), tokenizer.json and tokenizer_config.json,
 * onnx/model.onnx (dtype fp32) and onnx/model_quantized.onnx (dtype q8). buildTransformersLayout makes
 * that directory from a generated model: the two graphs are links to its model.onnx and to the int8
 * export `rerank-server models quantize` wrote (model_int8.onnx), so both sides run the same int8 graph.
 *
 * Used as its documentation shows a cross-encoder: the query beside each document, `padding: true,
 * truncation: true`, the model called on the batch. A request's documents go in the order given, in batches
 * of `batchSize` (the server's maxBatchSize), each padded to its longest pair; one model call at a time.
 */

/** Writes `<root>/<id>/` for transformers.js; returns what env.localModelPath and from_pretrained take. */
export async function buildTransformersLayout(options: { modelDir: string; int8Path: string; root: string; id?: string }): Promise<{ localModelPath: string; id: string }> {
  const id = options.id ?? 'bench-model';
  const dir = path.join(options.root, id);
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, 'onnx'), { recursive: true });
  const config = JSON.parse(await readFile(path.join(options.modelDir, 'config.json'), 'utf8')) as { model_type?: string; architectures?: string[] };
  if (config.model_type !== 'bert') throw new Error(`${options.modelDir}: transformers.js layout is written for BERT cross-encoders, not model_type ${String(config.model_type)}`);
  await copyFile(path.join(options.modelDir, 'config.json'), path.join(dir, 'config.json'));
  await symlink(path.resolve(options.modelDir, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  // What a BERT repo's tokenizer_config.json says: transformers.js reads its special tokens (pad) from here.
  const tokenizerConfig = {
    tokenizer_class: 'BertTokenizer',
    do_lower_case: true,
    model_max_length: 512,
    cls_token: '[CLS]',
    sep_token: '[SEP]',
    pad_token: '[PAD]',
    unk_token: '[UNK]',
    mask_token: '[MASK]',
  };
  await writeFile(path.join(dir, 'tokenizer_config.json'), `${JSON.stringify(tokenizerConfig, null, 2)}\n`);
  await symlink(path.resolve(options.modelDir, 'model.onnx'), path.join(dir, 'onnx', 'model.onnx'));
  await symlink(path.resolve(options.int8Path), path.join(dir, 'onnx', 'model_quantized.onnx'));
  return { localModelPath: `${options.root}${path.sep}`, id };
}

export class TransformersContender implements Contender {
  readonly name: string;
  readonly #tokenizer: PreTrainedTokenizer;
  readonly #model: PreTrainedModel;
  readonly #batchSize: number;
  readonly #maxLength: number;
  readonly #oneAtATime = new OneAtATime();
  #slots = 0;
  #tokens = 0;

  private constructor(name: string, tokenizer: PreTrainedTokenizer, model: PreTrainedModel, batchSize: number, maxLength: number) {
    this.name = name;
    this.#tokenizer = tokenizer;
    this.#model = model;
    this.#batchSize = batchSize;
    this.#maxLength = maxLength;
  }

  /** Loads from the local layout only: remote models are off, so nothing is fetched from a hub. */
  static async load(options: { name: string; localModelPath: string; id: string; dtype: 'fp32' | 'q8'; batchSize: number; maxLength: number }): Promise<TransformersContender> {
    env.localModelPath = options.localModelPath;
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    const tokenizer = await AutoTokenizer.from_pretrained(options.id);
    const model = await AutoModelForSequenceClassification.from_pretrained(options.id, { dtype: options.dtype, device: 'cpu' });
    return new TransformersContender(options.name, tokenizer, model, options.batchSize, options.maxLength);
  }

  async score(request: RerankWorkloadRequest): Promise<Float32Array> {
    const logits = new Float32Array(request.documents.length);
    for (let start = 0; start < request.documents.length; start += this.#batchSize) {
      const documents = request.documents.slice(start, start + this.#batchSize);
      const scores = await this.#oneAtATime.run(async () => {
        const inputs = this.#tokenizer(new Array<string>(documents.length).fill(request.query), {
          text_pair: documents,
          padding: true,
          truncation: true,
          max_length: this.#maxLength,
        });
        const mask = inputs.attention_mask as Tensor;
        this.#slots += mask.dims[0]! * mask.dims[1]!;
        for (const value of mask.data as BigInt64Array) this.#tokens += Number(value);
        const output = (await this.#model(inputs)) as { logits: Tensor };
        return output.logits.data as Float32Array;
      });
      logits.set(scores.subarray(0, documents.length), start);
    }
    return logits;
  }

  async padding(): Promise<{ slots: number; tokens: number }> {
    return { slots: this.#slots, tokens: this.#tokens };
  }

  async close(): Promise<void> {
    await this.#model.dispose();
  }
}
