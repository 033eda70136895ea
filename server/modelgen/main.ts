import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  DECODER_FLAVOURS,
  DECODER_SHAPES,
  DEFAULT_DECODER_VOCAB,
  DEFAULT_SEED,
  generateDecoderModel,
  generateModel,
  MODEL_SHAPES,
  type DecoderFlavour,
  type DecoderForm,
  type DecoderShape,
  type LogitsLayout,
  type ModelArch,
  type ModelShape,
} from './index.ts';

/** `npm run models:generate -- --shape tiny --arch bert --logits batch1 --seed 42 --out models/local/tiny` */

const USAGE = `Usage: npm run models:generate -- [options]

Generates a synthetic cross-encoder reranker (random weights, meaningless scores) for tests and local mode:
model.onnx, tokenizer.json and config.json.

Options:
  ${`--shape <${Object.keys(MODEL_SHAPES).join('|')}>`.padEnd(29)}model size (default tiny; minilm-l6 costs what ms-marco-MiniLM-L-6-v2 costs, ~91 MB;
                               bert-base what bge-reranker-base-sized BERT costs, ~438 MB)
  --arch <bert|xlmr>           bert: inputs input_ids, attention_mask, token_type_ids (default)
                               xlmr: XLM-RoBERTa style, no token_type_ids input
  --logits <batch1|batch>      output logits as [batch_size, 1] (default) or [batch_size]
  --seed <n>                   weight seed, integer (default ${DEFAULT_SEED}); same options, same bytes
  --quantize                   also write model_int8.onnx (dynamic int8, as \`rerank-server models quantize\`)
  --out <dir>                  output directory (default models/local/<shape>, or models/local/<decoder>-<form>)

LLM reranker (decoder-only LM, bge-reranker-v2-gemma / Qwen3-Reranker shape):
  --decoder <gemma|qwen3>      generate a random decoder instead of a cross-encoder (--shape tiny|small)
  --vocab <n>                  vocabulary size of the embedding and logits (default ${DEFAULT_DECODER_VOCAB})
  --form <full|prepared>       full: logits [batch, seq, vocab] as optimum exports it (default);
                               prepared: yes_no_logits [batch, 2] as \`rerank-server models prepare\` leaves it
  --no-past                    no past_key_values inputs / present outputs (optimum's text-generation without past)
  -h, --help                   show this help
`;

function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`--${flag} must be one of ${allowed.join(', ')}, got "${value}"`);
  return value as T;
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        shape: { type: 'string', default: 'tiny' },
        arch: { type: 'string', default: 'bert' },
        logits: { type: 'string', default: 'batch1' },
        seed: { type: 'string', default: String(DEFAULT_SEED) },
        quantize: { type: 'boolean', default: false },
        out: { type: 'string' },
        decoder: { type: 'string' },
        vocab: { type: 'string', default: String(DEFAULT_DECODER_VOCAB) },
        form: { type: 'string', default: 'full' },
        'no-past': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.decoder !== undefined) return generateDecoder(values);
  let options;
  try {
    const shape = oneOf<ModelShape>('shape', values.shape, Object.keys(MODEL_SHAPES) as ModelShape[]);
    const arch = oneOf<ModelArch>('arch', values.arch, ['bert', 'xlmr']);
    const logits = oneOf<LogitsLayout>('logits', values.logits, ['batch1', 'batch']);
    if (!/^\d+$/.test(values.seed)) throw new Error(`--seed must be a non-negative integer, got "${values.seed}"`);
    const seed = Number(values.seed);
    options = { shape, arch, logits, seed, quantize: values.quantize, outDir: values.out ?? path.join('models', 'local', shape) };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }

  const started = performance.now();
  const result = await generateModel(options);
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  process.stdout.write(
    `generated ${options.shape} ${options.arch} model (logits ${options.logits}, seed ${options.seed}) in ${seconds}s\n` +
      `  ${result.modelPath}\n  ${result.tokenizerPath}\n  ${result.configPath}\n${result.int8Path ? `  ${result.int8Path}\n` : ''}` +
      'random weights: scores are meaningless; use for wiring, tests and latency only\n',
  );
  return 0;
}

interface DecoderArgs {
  decoder?: string;
  shape: string;
  vocab: string;
  form: string;
  'no-past': boolean;
  seed: string;
  out?: string;
}

async function generateDecoder(values: DecoderArgs): Promise<number> {
  let options;
  try {
    const flavour = oneOf<DecoderFlavour>('decoder', values.decoder ?? '', DECODER_FLAVOURS);
    const shape = oneOf<DecoderShape>('shape', values.shape, Object.keys(DECODER_SHAPES) as DecoderShape[]);
    const form = oneOf<DecoderForm>('form', values.form, ['full', 'prepared']);
    if (!/^\d+$/.test(values.vocab)) throw new Error(`--vocab must be a positive integer, got "${values.vocab}"`);
    if (!/^\d+$/.test(values.seed)) throw new Error(`--seed must be a non-negative integer, got "${values.seed}"`);
    const outDir = values.out ?? path.join('models', 'local', `${flavour}-${form}`);
    options = { flavour, shape, form, vocabSize: Number(values.vocab), withPast: !values['no-past'], seed: Number(values.seed), outDir };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const result = await generateDecoderModel(options);
  process.stdout.write(
    `generated ${options.flavour} decoder (${options.shape}, vocab ${options.vocabSize}, ${options.form}, ` +
      `${options.withPast ? 'with' : 'without'} past, seed ${options.seed})\n` +
      `  ${result.modelPath}\n  ${result.tokenizerPath}\n  ${result.configPath}\n` +
      `  answer tokens: ${result.yesToken}=${result.yesTokenId} ${result.noToken}=${result.noTokenId}\n` +
      'random weights: scores are meaningless; use for wiring, tests and latency only\n',
  );
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
