import { z } from 'zod';

/**
 * How a version turns its model's output into one relevance score: the `head` of a version in the
 * serving config, and of a version in the RerankerConfig CRD (the operator renders it through).
 *
 * `cross-encoder`: the graph outputs one relevance logit per pair (BERT / XLM-R classification heads).
 * `causal-lm-yes-no`: the graph is a decoder-only LLM (bge-reranker-v2-gemma, Qwen3-Reranker): each pair is
 * written into a prompt template, and the score comes from the logits of a "yes" and a "no" token at the
 * last position. Flat on purpose: a CRD's structural schema and the reference tables take no unions, so
 * which fields apply depends on `type` and `template`, checked here and by CEL in the CRD.
 */

export const HEAD_TYPES = ['cross-encoder', 'causal-lm-yes-no'] as const;
export const TEMPLATE_NAMES = ['bge-gemma', 'qwen3', 'custom'] as const;
export const NORMALIZATIONS = ['logit', 'softmax'] as const;
export const PADDING_SIDES = ['left', 'right'] as const;

export type HeadType = (typeof HEAD_TYPES)[number];
export type TemplateName = (typeof TEMPLATE_NAMES)[number];
export type Normalization = (typeof NORMALIZATIONS)[number];
export type PaddingSide = (typeof PADDING_SIDES)[number];

const templateText = (description: string) => z.string().max(4096).optional().meta({ description });

export const HeadObjectSchema = z.strictObject({
  type: z
    .enum(HEAD_TYPES)
    .default('cross-encoder')
    .meta({
      description:
        '`cross-encoder`: the graph gives one relevance logit per pair. `causal-lm-yes-no`: a decoder-only LLM reranker ' +
        '(bge-reranker-v2-gemma, Qwen3-Reranker) scored from its yes/no token logits at the last position of a prompt.',
    }),
  template: z
    .enum(TEMPLATE_NAMES)
    .optional()
    .meta({
      description:
        'causal-lm-yes-no: the prompt, as the model card writes it. `bge-gemma`: <bos>, "A: {query}", "\\n", "B: {document}", "\\n", ' +
        'then the fixed question whether B answers A with Yes or No. `qwen3`: the Qwen3-Reranker chat prefix, ' +
        '"<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}", then the assistant prefix with an empty think block. ' +
        '`custom`: prefix, body and suffix below. Absent: the catalogue\'s for a known model, else required.',
    }),
  prefix: templateText('template custom: text before the body (special tokens written out, e.g. <bos>), tokenized on its own.'),
  body: templateText(
    'template custom: the text holding {query} and {document} (and {instruction}), tokenized on its own; truncation cuts only what ' +
      '{query} and {document} became.',
  ),
  suffix: templateText('template custom: text after the body, tokenized on its own; the score is read at its last token.'),
  instruction: z
    .string()
    .max(4096)
    .optional()
    .meta({
      description:
        'causal-lm-yes-no: what {instruction} stands for (template qwen3). Absent: the model card\'s "Given a web search query, ' +
        'retrieve relevant passages that answer the query".',
    }),
  yesToken: z.string().min(1).optional().meta({ description: 'causal-lm-yes-no: the "yes" token, as the tokenizer spells it. Absent: the template\'s (`Yes` for bge-gemma, `yes` for qwen3).' }),
  noToken: z.string().min(1).optional().meta({ description: 'causal-lm-yes-no: the "no" token. Absent: the template\'s (`No` for bge-gemma, `no` for qwen3).' }),
  yesTokenId: z.number().int().min(0).optional().meta({ description: 'causal-lm-yes-no: the "yes" token by id, instead of yesToken.' }),
  noTokenId: z.number().int().min(0).optional().meta({ description: 'causal-lm-yes-no: the "no" token by id, instead of noToken.' }),
  normalize: z
    .enum(NORMALIZATIONS)
    .optional()
    .meta({
      description:
        'causal-lm-yes-no: `logit`: the raw score is the yes logit (bge-gemma). `softmax`: the score is P(yes) of a softmax over ' +
        '(no, yes), so the raw score is yes − no (qwen3). Absent: the template\'s.',
    }),
  paddingSide: z
    .enum(PADDING_SIDES)
    .optional()
    .meta({ description: 'causal-lm-yes-no: where a batch pads shorter prompts. Scores do not depend on it. Absent: `left`.' }),
});

export type HeadConfig = z.output<typeof HeadObjectSchema>;

/** Issues of a head that the field types cannot state. `path` is where the head sits. */
export function headIssues(head: HeadConfig): { path: string[]; message: string }[] {
  const issues: { path: string[]; message: string }[] = [];
  const causal = head.type === 'causal-lm-yes-no';
  const causalOnly = ['template', 'prefix', 'body', 'suffix', 'instruction', 'yesToken', 'noToken', 'yesTokenId', 'noTokenId', 'normalize', 'paddingSide'] as const;
  if (!causal) {
    for (const key of causalOnly) if (head[key] !== undefined) issues.push({ path: [key], message: `applies to type causal-lm-yes-no, not ${head.type}` });
    return issues;
  }
  const custom = head.template === 'custom';
  for (const key of ['prefix', 'body', 'suffix'] as const) {
    if (!custom && head[key] !== undefined) issues.push({ path: [key], message: 'applies to template custom' });
  }
  if (custom) {
    if (head.body === undefined) issues.push({ path: ['body'], message: 'template custom needs a body holding {query} and {document}' });
    else for (const field of ['{query}', '{document}']) if (!head.body.includes(field)) issues.push({ path: ['body'], message: `must hold ${field}` });
    for (const key of ['prefix', 'suffix'] as const) {
      if (head[key]?.includes('{query}') || head[key]?.includes('{document}')) issues.push({ path: [key], message: '{query} and {document} belong in body' });
    }
    if (head.yesToken === undefined && head.yesTokenId === undefined) issues.push({ path: ['yesToken'], message: 'template custom needs yesToken or yesTokenId' });
  }
  if (head.yesToken !== undefined && head.yesTokenId !== undefined) issues.push({ path: ['yesTokenId'], message: 'give yesToken or yesTokenId, not both' });
  if (head.noToken !== undefined && head.noTokenId !== undefined) issues.push({ path: ['noTokenId'], message: 'give noToken or noTokenId, not both' });
  if (custom && head.normalize === 'softmax' && head.noToken === undefined && head.noTokenId === undefined) {
    issues.push({ path: ['noToken'], message: 'normalize softmax needs noToken or noTokenId' });
  }
  return issues;
}

/** The head schema with its cross-field checks: what a version's `head` is parsed by. */
export const HeadSchema = HeadObjectSchema.superRefine((head, ctx) => {
  for (const issue of headIssues(head)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
}).meta({
  description:
    'How the model output becomes a score. Absent: the catalogue\'s head when the model is a known one (by the model ' +
    "directory's name or its config.json _name_or_path), else cross-encoder.",
});
