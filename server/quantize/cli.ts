import type { Command } from 'commander';
import { DEFAULT_INT8_FILE, formatReport, quantizeModelDir } from './quantize-model.ts';

interface QuantizeCommandOptions {
  perChannel: boolean;
  asymmetric: boolean;
  reduceRange: boolean;
  embeddings: boolean;
  standardOps: boolean;
  exclude?: string;
  fuseAttention: boolean;
  out?: string;
  sample?: string;
  compare: boolean;
  maxLength: string;
}

/** `rerank-server models quantize DIR`: dynamic int8 quantization of a model directory's float32 graph. */
export function addQuantizeCommand(models: Command): Command {
  return models
    .command('quantize')
    .description(`write a dynamic int8 quantization of a model directory's float32 graph beside it (${DEFAULT_INT8_FILE}) and compare the two`)
    .argument('<dir>', 'model directory (or its .onnx file)')
    .option('--per-channel', 'one weight scale per output channel (default: one per tensor)', false)
    .option('--asymmetric', 'asymmetric int8 weights with a zero point (default: symmetric, as onnxruntime quantize_dynamic)', false)
    .option('--reduce-range', '7-bit weights, for CPUs without VNNI whose int8 kernels saturate', false)
    .option('--embeddings', 'also store the word embedding table as int8, one scale per row (smaller file and memory)', false)
    .option('--standard-ops', 'DynamicQuantizeLinear + MatMulInteger + Cast + Mul (ONNX ops only) instead of com.microsoft DynamicQuantizeMatMul', false)
    .option('--no-fuse-attention', 'keep self-attention as float32 MatMul + Softmax (default: one com.microsoft QAttention per layer)')
    .option('--exclude <regex>', 'keep float32 the MatMul/Gemm nodes whose name or weight name matches')
    .option('--out <file>', `output file, relative to the source graph's directory (default ${DEFAULT_INT8_FILE})`)
    .option('--sample <file>', 'JSON pairs to compare on: [{query, documents}], [{query, document}] or [[query, document]] (default: generated)')
    .option('--no-compare', 'skip scoring the sample with both models')
    .option('--max-length <n>', 'tokens per pair in the comparison', '512')
    .addHelpText(
      'after',
      [
        '',
        'Linear layers (MatMul, Gemm) with constant weights become int8; activations are quantized at run time. Each',
        'self-attention block becomes one QAttention (int8 query/key/value, scores and softmax in one kernel). The head',
        '(classifier, pooler, the last linear layer), LayerNorm and embeddings stay float32 (embeddings unless --embeddings).',
        'Prints and writes beside the output (<out>.quantization.json): the file sizes, and max |Δlogit| and top-10',
        'agreement against the float32 model on the sample. Random-weight models do not judge quality: check a real model',
        'on a sample of your own queries (--sample).',
      ].join('\n'),
    )
    .action(async (dir: string, opts: QuantizeCommandOptions) => {
      const maxLength = Number(opts.maxLength);
      try {
        if (!Number.isInteger(maxLength) || maxLength < 8) throw new Error(`--max-length must be an integer ≥ 8, got "${opts.maxLength}"`);
        let exclude: RegExp | undefined;
        if (opts.exclude !== undefined) {
          try {
            exclude = new RegExp(opts.exclude);
          } catch (error) {
            throw new Error(`--exclude: ${(error as Error).message}`, { cause: error });
          }
        }
        const report = await quantizeModelDir({
          dir,
          perChannel: opts.perChannel,
          symmetric: !opts.asymmetric,
          reduceRange: opts.reduceRange,
          embeddings: opts.embeddings,
          format: opts.standardOps ? 'standard' : 'contrib',
          compare: opts.compare,
          fuseAttention: opts.fuseAttention,
          maxLength,
          ...(exclude ? { exclude } : {}),
          ...(opts.out !== undefined ? { out: opts.out } : {}),
          ...(opts.sample !== undefined ? { sampleFile: opts.sample } : {}),
        });
        process.stdout.write(`${formatReport(report)}\n`);
      } catch (error) {
        process.stderr.write(`models quantize: ${(error as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
