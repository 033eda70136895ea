import { access, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import tokenizers from 'tokenizers';
import { modelFiles } from '../engine/model-files.ts';
import { PREPARED_OUTPUT, PrepareError, prepareYesNoProto } from './prepare-graph.ts';

/**
 * `rerank-server models prepare DIR`: rewrites a causal-LM reranker's graph so it outputs only the yes/no
 * logits of each row's last real token ([batch, 2]) instead of [batch, seq, vocab] (see prepare-graph.ts).
 * By default the directory's model.onnx is replaced and the export is kept beside it as model.full.onnx.
 */

const { onnx } = onnxProto;
const { Tokenizer } = tokenizers;

export { PrepareError } from './prepare-graph.ts';

/** The answer words of known LLM rerankers, by config.json model_type. */
export const ANSWER_WORDS_BY_MODEL_TYPE: Readonly<Record<string, { yes: string; no: string }>> = {
  gemma: { yes: 'Yes', no: 'No' }, // BAAI/bge-reranker-v2-gemma
  gemma2: { yes: 'Yes', no: 'No' },
  minicpm: { yes: 'Yes', no: 'No' }, // BAAI/bge-reranker-v2-minicpm-layerwise
  qwen3: { yes: 'yes', no: 'no' }, // Qwen/Qwen3-Reranker-*
};

/** protobuf (and so onnx-proto) cannot parse one message over 2 GiB. */
const PROTOBUF_LIMIT = 2 ** 31 - 1;

export interface PrepareOptions {
  /** Model directory (or its .onnx file). */
  dir: string;
  /** Answer token strings; default from config.json's model_type. Each must be one token. */
  yes?: string;
  no?: string;
  /** Where to write the prepared graph; default: replace the model in place, keeping it as <name>.full.onnx. */
  out?: string;
}

export interface PrepareResult {
  source: string;
  out: string;
  /** Where the un-cut export went (in-place runs only). */
  backup?: string;
  yesToken: string;
  noToken: string;
  yesTokenId: number;
  noTokenId: number;
  vocabSize: number;
  hiddenSize: number;
  headWeight: string;
  epilogue: string[];
  /** Initializers stored in an external data file (left where they are, referenced from the output). */
  externalTensors: number;
  bytesBefore: number;
  bytesAfter: number;
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

async function answerWords(configPath: string, options: PrepareOptions): Promise<{ yes: string; no: string }> {
  if (options.yes !== undefined && options.no !== undefined) return { yes: options.yes, no: options.no };
  let modelType: string | undefined;
  try {
    modelType = (JSON.parse(await readFile(configPath, 'utf8')) as { model_type?: string }).model_type;
  } catch {
    // No readable config.json: only the flags can say.
  }
  const known = modelType === undefined ? undefined : ANSWER_WORDS_BY_MODEL_TYPE[modelType];
  if (!known) {
    throw new PrepareError(
      `cannot tell the answer tokens of model_type ${modelType ?? '(no config.json)'}: pass --yes TOKEN --no TOKEN ` +
        `(known model types: ${Object.keys(ANSWER_WORDS_BY_MODEL_TYPE).join(', ')})`,
    );
  }
  return { yes: options.yes ?? known.yes, no: options.no ?? known.no };
}

async function singleTokenId(tokenizerPath: string, word: string, flag: string): Promise<number> {
  let ids: number[];
  try {
    const encoding = await Tokenizer.fromFile(tokenizerPath).encode(word, null, { addSpecialTokens: false });
    ids = encoding.getIds();
  } catch (error) {
    throw new PrepareError(`cannot tokenize ${flag} "${word}" with ${tokenizerPath}: ${(error as Error).message}`);
  }
  if (ids.length !== 1) throw new PrepareError(`${flag} "${word}" is ${ids.length} tokens (${ids.join(', ')}) in ${tokenizerPath}, not one`);
  return ids[0] as number;
}

/**
 * Rewrites external data locations (relative to the source directory) to be relative to the output's.
 * onnxruntime loads external data only from within the model's directory, so the output must sit above it.
 */
function relocateExternalData(model: onnxProto.onnx.ModelProto, fromDir: string, toDir: string): number {
  let count = 0;
  for (const tensor of model.graph?.initializer ?? []) {
    if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    count += 1;
    for (const entry of tensor.externalData ?? []) {
      if (entry.key !== 'location' || !entry.value) continue;
      const relative = path.relative(toDir, path.resolve(fromDir, entry.value));
      if (relative.startsWith('..') || path.isAbsolute(relative)) {
        throw new PrepareError(
          `the model keeps ${tensor.name} in external data (${entry.value}), which onnxruntime reads only from the model's own ` +
            `directory: write the prepared graph into ${fromDir} (leave --out away, or name a file there)`,
        );
      }
      entry.value = relative;
    }
  }
  return count;
}

export async function prepareModelDir(options: PrepareOptions): Promise<PrepareResult> {
  let files;
  try {
    files = await modelFiles(options.dir);
  } catch (error) {
    throw new PrepareError((error as Error).message);
  }
  const source = files.model;
  const sourceDir = path.dirname(source);
  const words = await answerWords(files.config, options);
  const yesTokenId = await singleTokenId(files.tokenizer, words.yes, '--yes');
  const noTokenId = await singleTokenId(files.tokenizer, words.no, '--no');
  if (yesTokenId === noTokenId) throw new PrepareError(`--yes "${words.yes}" and --no "${words.no}" are the same token ${yesTokenId}`);

  const bytesBefore = (await stat(source)).size;
  if (bytesBefore > PROTOBUF_LIMIT) {
    throw new PrepareError(
      `${source} is ${(bytesBefore / 2 ** 30).toFixed(1)} GiB, over protobuf's 2 GiB limit: export it with external data ` +
        '(optimum-cli does for models over 2 GB: model.onnx + model.onnx_data) and prepare that',
    );
  }
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(await readFile(source));
  } catch (error) {
    throw new PrepareError(`${source} is not an ONNX model: ${(error as Error).message}`);
  }
  const prepared = await prepareYesNoProto(model, { yesTokenId, noTokenId, modelDir: sourceDir });

  const inPlace = options.out === undefined;
  const out = path.resolve(options.out ?? source);
  const backup = inPlace ? path.join(sourceDir, `${path.basename(source, '.onnx')}.full.onnx`) : undefined;
  if (backup && (await exists(backup))) throw new PrepareError(`${backup} already exists; move it away or pass --out FILE`);
  if (!inPlace && out === path.resolve(source)) throw new PrepareError('--out names the model being prepared; leave --out away to replace it in place');
  const externalTensors = relocateExternalData(prepared.model, sourceDir, path.dirname(out));

  const bytes = onnx.ModelProto.encode(prepared.model).finish();
  const temporary = `${out}.${process.pid}.tmp`;
  await writeFile(temporary, bytes);
  if (backup) await rename(source, backup);
  await rename(temporary, out);
  return {
    source,
    out,
    ...(backup ? { backup } : {}),
    yesToken: words.yes,
    noToken: words.no,
    yesTokenId,
    noTokenId,
    vocabSize: prepared.vocabSize,
    hiddenSize: prepared.hiddenSize,
    headWeight: prepared.headWeight,
    epilogue: prepared.epilogue,
    externalTensors,
    bytesBefore,
    bytesAfter: bytes.length,
  };
}

/** One summary line per fact, for the CLI. */
export function describePrepared(result: PrepareResult): string[] {
  const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
  return [
    `${result.out}: logits [batch, seq, ${result.vocabSize}] cut to ${PREPARED_OUTPUT} [batch, 2] at each row's last real token`,
    `  yes "${result.yesToken}" = ${result.yesTokenId}, no "${result.noToken}" = ${result.noTokenId}; head weight ${result.headWeight}` +
      (result.epilogue.length ? `, then ${result.epilogue.join(', ')}` : ''),
    `  ${mb(result.bytesBefore)} -> ${mb(result.bytesAfter)}` +
      (result.externalTensors ? `; ${result.externalTensors} tensors stay in their external data file` : '') +
      (result.backup ? `; the export is kept as ${result.backup}` : ''),
  ];
}
