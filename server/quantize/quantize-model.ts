import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { modelFiles } from '../engine/model-files.ts';
import { OnnxSession } from '../engine/onnx-model.ts';
import { PairTokenizer, readModelDirConfig } from '../engine/pair-tokenizer.ts';
import { agreement, type Agreement } from './agreement.ts';
import { quantizeModelProto, type QuantFormat, type QuantizeSummary } from './quantize-graph.ts';
import { generateSample, readSample, type SampleGroup } from './sample-pairs.ts';

/**
 * `rerank-server models quantize DIR`: reads the float32 graph of a model directory, writes its dynamic
 * int8 quantization beside it (`model_int8.onnx` unless `out` says otherwise), then scores the same pairs
 * with both and reports how far apart they are, with the file sizes.
 */

export const DEFAULT_INT8_FILE = 'model_int8.onnx';
/** Protobuf's hard limit on one message: a larger model needs external data, which this writer does not do. */
const PROTOBUF_LIMIT = 2 ** 31 - 1;

export interface QuantizeDirOptions {
  dir: string;
  /** Output file; relative paths resolve against the directory of the source graph. */
  out?: string;
  perChannel?: boolean;
  symmetric?: boolean;
  reduceRange?: boolean;
  format?: QuantFormat;
  embeddings?: boolean;
  exclude?: RegExp;
  /** Fuse self-attention into com.microsoft QAttention (contrib, per tensor); default true. */
  fuseAttention?: boolean;
  /** A JSON sample of pairs (see parseSample); generated when absent. */
  sampleFile?: string;
  /** Skip the comparison (only quantize). */
  compare?: boolean;
  /** Tokens per pair in the comparison (default 512, capped by the model's config.json). */
  maxLength?: number;
}

export interface QuantizeReport {
  source: string;
  output: string;
  sourceBytes: number;
  outputBytes: number;
  seconds: number;
  options: { format: QuantFormat; perChannel: boolean; symmetric: boolean; reduceRange: boolean; embeddings: boolean; fuseAttention: boolean };
  summary: QuantizeSummary;
  sample?: { origin: string; agreement: Agreement };
}

export async function quantizeModelDir(options: QuantizeDirOptions): Promise<QuantizeReport> {
  const started = performance.now();
  const files = await modelFiles(options.dir);
  const source = files.variants.fp32;
  if (source === undefined) throw new Error(`no float32 model.onnx in ${files.dir} to quantize (it has ${files.model})`);
  const sourceDir = path.dirname(source);
  const output = path.resolve(sourceDir, options.out ?? DEFAULT_INT8_FILE);
  if (output === path.resolve(source)) throw new Error(`--out ${options.out}: would overwrite the float32 model it reads`);
  const resolved = {
    format: options.format ?? 'contrib',
    perChannel: options.perChannel ?? false,
    symmetric: options.symmetric ?? true,
    reduceRange: options.reduceRange ?? false,
    embeddings: options.embeddings ?? false,
    fuseAttention: options.fuseAttention ?? true,
  };
  const proto = onnxProto.onnx.ModelProto.decode(await readFile(source));
  const alreadyQuantized = (proto.metadataProps ?? []).some((p) => p.key === 'quantization');
  if (alreadyQuantized) throw new Error(`${source} is already quantized (its metadata says so): quantize the float32 export`);
  const { model, summary } = quantizeModelProto(proto, { ...resolved, ...(options.exclude ? { exclude: options.exclude } : {}), modelDir: sourceDir });
  if (summary.quantized.length === 0) throw new Error(`${source}: no MatMul or Gemm with constant float32 weights to quantize`);
  const bytes = onnxProto.onnx.ModelProto.encode(model).finish();
  if (bytes.length > PROTOBUF_LIMIT) throw new Error(`the quantized model is ${bytes.length} bytes, over protobuf's 2 GiB limit`);
  const temporary = `${output}.${process.pid}.tmp`;
  await writeFile(temporary, bytes);
  await rename(temporary, output);

  const report: QuantizeReport = {
    source,
    output,
    sourceBytes: await fileBytes(source, proto, sourceDir),
    outputBytes: bytes.length,
    seconds: 0,
    options: resolved,
    summary,
  };
  if (options.compare !== false) {
    const groups = options.sampleFile ? await readSample(options.sampleFile) : generateSample();
    const dirConfig = await readModelDirConfig(files.config);
    const tokenizer = PairTokenizer.load({ tokenizerPath: files.tokenizer, ...(dirConfig.padTokenId !== undefined ? { padId: dirConfig.padTokenId } : {}) });
    const maxLength = Math.min(options.maxLength ?? 512, dirConfig.maxTokens ?? Infinity);
    const reference = await scoreGroups(source, tokenizer, groups, maxLength);
    const candidate = await scoreGroups(output, tokenizer, groups, maxLength);
    report.sample = {
      origin: options.sampleFile ?? `generated (${groups.length} queries × ${groups[0]?.documents.length ?? 0} documents)`,
      agreement: agreement(reference.map((r, i) => ({ reference: r, candidate: candidate[i] as Float32Array }))),
    };
  }
  report.seconds = (performance.now() - started) / 1000;
  await writeFile(`${output.replace(/\.onnx$/, '')}.quantization.json`, `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

/** The graph plus its external data files, as they lie on disk. */
async function fileBytes(model: string, proto: onnxProto.onnx.IModelProto, dir: string): Promise<number> {
  let total = (await stat(model)).size;
  const locations = new Set<string>();
  for (const t of proto.graph?.initializer ?? []) {
    const location = t.externalData?.find((e) => e.key === 'location')?.value;
    if (location) locations.add(location);
  }
  for (const location of locations) total += (await stat(path.join(dir, location))).size;
  return total;
}

const COMPARE_BATCH = 8;

/** One logit per document, per group, from a session on CPU. */
export async function scoreGroups(modelPath: string, tokenizer: PairTokenizer, groups: readonly SampleGroup[], maxLength: number): Promise<Float32Array[]> {
  const session = await OnnxSession.load({ modelPath, device: 'cpu', padId: tokenizer.padId });
  try {
    const withTypeIds = session.description.takesTypeIds;
    const out: Float32Array[] = [];
    for (const group of groups) {
      const pairs = await Promise.all(group.documents.map((d) => tokenizer.encodePair(group.query, d, { maxLength, withTypeIds })));
      const logits = new Float32Array(pairs.length);
      // Similar lengths together, as the server batches: less padding, and padding is where int8 and fp32 differ least.
      const order = Array.from(pairs.keys()).sort((a, b) => (pairs[a]?.length ?? 0) - (pairs[b]?.length ?? 0));
      for (let i = 0; i < order.length; i += COMPARE_BATCH) {
        const slice = order.slice(i, i + COMPARE_BATCH);
        const result = await session.run(slice.map((j) => pairs[j]!));
        slice.forEach((j, k) => (logits[j] = result.logits[k] as number));
      }
      out.push(logits);
    }
    return out;
  } finally {
    await session.release();
  }
}

/** The report as the CLI prints it. */
export function formatReport(report: QuantizeReport, cwd = process.cwd()): string {
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
  const rel = (file: string) => path.relative(cwd, file) || file;
  const { options, summary } = report;
  const lines = [
    `${rel(report.source)} -> ${rel(report.output)} in ${report.seconds.toFixed(1)} s`,
    `  int8 ${options.perChannel ? 'per channel' : 'per tensor'}, ${options.symmetric ? 'symmetric' : 'asymmetric'} weights${options.reduceRange ? ' (7-bit)' : ''}, ` +
      `activations uint8 at run time (${options.format === 'contrib' ? 'com.microsoft DynamicQuantizeMatMul' : 'DynamicQuantizeLinear + MatMulInteger'})`,
    `  layers: ${summary.quantized.length} int8, ${summary.kept.length} float32${summary.kept.length ? ` (${summary.kept.map((k) => `${k.node}: ${k.reason}`).join('; ')})` : ''}`,
    `  attention: ${attentionLine(summary)}`,
    `  embeddings: ${summary.embeddings.length ? `${summary.embeddings.join(', ')} int8 per row` : 'float32'}`,
    `  size: ${mb(report.sourceBytes)} -> ${mb(report.outputBytes)} (${((report.outputBytes / report.sourceBytes) * 100).toFixed(0)} %)`,
  ];
  if (report.sample) {
    const a = report.sample.agreement;
    lines.push(
      `  against float32 on ${a.pairs} pairs, ${a.groups} queries (${report.sample.origin}):`,
      `    max |Δlogit| ${a.maxAbsDelta.toFixed(4)}, mean ${a.meanAbsDelta.toFixed(4)} (float32 logits spread with std ${a.referenceStd.toFixed(4)})`,
      `    top-${a.k} agreement ${(a.topKAgreement * 100).toFixed(1)} % (worst query ${(a.minTopKAgreement * 100).toFixed(0)} %), same best document in ${(a.top1Agreement * 100).toFixed(0)} % of queries`,
    );
  }
  return lines.join('\n');
}

function attentionLine(summary: QuantizeSummary): string {
  const kept = summary.attentionKept.length;
  const why = [...new Set(summary.attentionKept.map((k) => k.reason))].join('; ');
  if (summary.attention.length === 0) return kept ? `float32 MatMul + Softmax (${why})` : 'no self-attention found';
  const fused = `${summary.attention.length} layers fused into com.microsoft QAttention (query, key and value in one int8 GEMM)`;
  return kept ? `${fused}; ${kept} left float32 (${why})` : fused;
}
