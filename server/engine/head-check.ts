import type { HeadConfig } from '../config/head.ts';
import { firstLine } from '../errors.ts';
import type { ModelFiles } from './model-files.ts';
import { PromptEncoder, PromptTokenizer } from './prompt-encoder.ts';
import { describeToken } from './prompt-template.ts';
import { headForVersion, readModelHints } from './scoring-head.ts';

/**
 * What `check-config` says of a version's head before anything serves it: which head it gets (config,
 * catalogue or default) and, for an LLM reranker, whether the model's tokenizer has the template's special
 * tokens and the yes/no tokens, so a wrong template fails the check rather than the load.
 */
export async function checkHead(files: ModelFiles, config: HeadConfig | undefined): Promise<{ ok: boolean; line: string }> {
  let resolved;
  try {
    resolved = await headForVersion(config, files.dir, await readModelHints(files.config));
  } catch (error) {
    return { ok: false, line: `head INVALID: ${firstLine(error)}` };
  }
  const { head, source } = resolved;
  const from = source === 'config' ? '' : ` (${source === 'catalogue' ? 'from the catalogue' : 'default'})`;
  if (head.type === 'cross-encoder') return { ok: true, line: `head cross-encoder${from}` };
  try {
    const encoder = await PromptEncoder.create(PromptTokenizer.load({ tokenizerPath: files.tokenizer }), head);
    const { yesId, noId } = encoder.info;
    const no = head.no === undefined || noId === undefined ? '' : `, no ${describeToken(head.no)}=${noId}`;
    return {
      ok: true,
      line: `head causal-lm-yes-no${from}: template ${head.template} (${encoder.info.fixedTokens} tokens), yes ${describeToken(head.yes)}=${yesId}${no}, normalize ${head.normalize}`,
    };
  } catch (error) {
    return { ok: false, line: `head causal-lm-yes-no${from} does NOT fit the tokenizer: ${firstLine(error)}` };
  }
}
