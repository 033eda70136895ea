import type { Command } from 'commander';
import { describePrepared, PrepareError, prepareModelDir } from './prepare.ts';

/** `rerank-server models prepare DIR [--yes TOKEN --no TOKEN] [--out FILE]`. */
export function addPrepareCommand(models: Command): Command {
  models
    .command('prepare')
    .description('cut an LLM reranker\'s full-vocabulary graph (logits [batch, seq, vocab]) to the yes/no logits of each row\'s last real token ([batch, 2])')
    .argument('<dir>', 'model directory (or its .onnx file), with tokenizer.json and config.json')
    .option('--yes <token>', 'the "yes" answer token (default from config.json model_type: gemma Yes, qwen3 yes)')
    .option('--no <token>', 'the "no" answer token (default: gemma No, qwen3 no)')
    .option('--out <file>', 'write the prepared graph here (default: replace the model, keeping it as <name>.full.onnx)')
    .addHelpText(
      'after',
      [
        '',
        'The graph must be a causal-LM export (optimum-cli export onnx --task text-generation[-with-past]): inputs',
        'input_ids and attention_mask, output logits from a MatMul with the LM head (or tied embedding). The result',
        'keeps every input (past_key_values.* are fed empty), drops present.*, and outputs yes_no_logits [batch, 2]',
        '= [yes, no]; its metadata says rerank.prepared=yes-no and the two token ids. Weights in an external data file',
        '(model.onnx_data) stay there and are referenced from the output.',
      ].join('\n'),
    )
    .action(async (dir: string, opts: { yes?: string; no?: string; out?: string }) => {
      try {
        const result = await prepareModelDir({ dir, ...opts });
        process.stdout.write(`${describePrepared(result).join('\n')}\n`);
      } catch (error) {
        if (!(error instanceof PrepareError)) throw error;
        process.stderr.write(`models prepare: ${error.message}\n`);
        process.exitCode = 1;
      }
    });

  return models;
}
