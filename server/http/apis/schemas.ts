import { z } from 'zod';

/**
 * Request and response shapes of every route, as zod schemas: the adapters validate bodies with them and
 * openapi.ts renders them, so the published document and the server cannot disagree.
 *
 * Unknown top-level fields are stripped, not rejected: client libraries add fields over time (Cohere's
 * `priority`, Jina's `truncation`) and an old server must keep answering them. Fields that would change the
 * answer in a way this server cannot honour are named and rejected instead (`truncation_direction: Left`).
 * Optional fields also accept `null`, which Python clients send for "unset" (LangChain's JinaRerank sends
 * `"top_n": null`).
 */

/** Named schemas: the components of the OpenAPI document. */
export const apiSchemas = z.registry<{ id: string }>();

/**
 * Text that shows nothing: whitespace of any kind (U+00A0, U+3000, ...), format characters (zero-width
 * space and joiners, U+FEFF, U+2060), controls and other default-ignorable code points (Hangul fillers,
 * variation selectors). A query of only these is empty: tokenizers drop most of them, leaving nothing to
 * rank against.
 */
const BLANK = /^[\p{White_Space}\p{Cf}\p{Cc}\p{Default_Ignorable_Code_Point}]*$/u;

const query = z
  .string({ error: 'must be a string' })
  .refine((text) => !BLANK.test(text), 'must not be empty (it holds only whitespace or invisible characters)');
const topN = z.int({ error: 'must be a positive integer' }).min(1, 'must be at least 1');

// ---- TEI: POST /rerank, POST /rerank/{version} ----

/**
 * Clients of the BGE reranker image send the passages as `docs`: taken for `texts` when `texts` is
 * absent, refused beside it.
 */
function docsAsTexts(body: unknown, ctx: z.RefinementCtx): unknown {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || !('docs' in body)) return body;
  const { docs, ...rest } = body as Record<string, unknown>;
  if ('texts' in rest) {
    ctx.addIssue({ code: 'custom', path: ['docs'], message: 'give the passages as texts or as docs, not both' });
    return body;
  }
  return { ...rest, texts: docs };
}

export const TeiRerankRequestSchema = z
  .preprocess(
    docsAsTexts,
    z.object({
      query: query.describe('The search query.'),
      texts: z
        .array(z.string({ error: 'must be a string' }), { error: 'must be an array of strings' })
        .min(1, 'must not be empty')
        .describe('Passages to score against the query (`docs` is taken in its place, as clients of the BGE reranker image send it).'),
      truncate: z
        .boolean({ error: 'must be a boolean' })
        .nullish()
        .describe('Truncate pairs longer than the model accepts (default true). When false, an over-long pair is a 413.'),
      truncation_direction: z
        .enum(['Right', 'right'], { error: 'only "Right" truncation is supported' })
        .nullish()
        .describe('Which end of an over-long pair to cut. Only "Right" is supported.'),
      raw_scores: z
        .boolean({ error: 'must be a boolean' })
        .nullish()
        .describe('Return raw logits instead of sigmoid scores in [0, 1] (default false).'),
      return_text: z.boolean({ error: 'must be a boolean' }).nullish().describe('Echo each passage in `text` (default false).'),
      top_k: topN.nullish().describe('Extension: return at most this many results (default: the configured topK, else all).'),
    }),
  )
  .register(apiSchemas, { id: 'TeiRerankRequest' });

export const TeiRankSchema = z.object({
  index: z.int().min(0).describe('Position of the passage in `texts`.'),
  score: z.number().describe('Sigmoid relevance score in [0, 1], or the raw logit when `raw_scores` is true.'),
  text: z.string().optional().describe('The passage, when `return_text` is true.'),
});

export const TeiRerankResponseSchema = z
  .array(TeiRankSchema)
  .describe('Results, best first.')
  .register(apiSchemas, { id: 'TeiRerankResponse' });

// ---- Cohere (v1, v2) and Jina: POST /v1/rerank, POST /v2/rerank ----

/**
 * A document: a string, or an object whose `text` is ranked (Cohere's structured documents, Jina's TextDoc).
 * Other keys of an object are allowed: with `rank_fields` they are what gets ranked.
 */
const CohereDocumentSchema = z.union(
  [z.string(), z.looseObject({ text: z.string({ error: 'must be a string' }).optional() })],
  { error: 'must be a string or an object with a string `text`' },
);

export const CohereRerankRequestSchema = z
  .object({
    model: z
      .string({ error: 'must be a string' })
      .nullish()
      .describe('When it names a configured version, that version answers (below the path and X-Rerank-Version); other names are ignored.'),
    query: z
      .union([query, z.object({ text: query })], { error: 'must be a non-empty string' })
      .describe('The search query (a string, or Jina\'s {"text": ...}).'),
    documents: z
      .array(CohereDocumentSchema, { error: 'must be an array' })
      .min(1, 'must not be empty')
      .describe('Documents to rank: strings or objects with `text`.'),
    top_n: topN.nullish().describe('Return at most this many results (default: the configured topK, else all).'),
    return_documents: z
      .boolean({ error: 'must be a boolean' })
      .nullish()
      .describe('Echo each document as `document: {text}`. Default true on /v1 (Jina\'s default), false on /v2.'),
    rank_fields: z
      .array(z.string({ error: 'must be a string' }).min(1, 'must not be empty'), { error: 'must be an array of strings' })
      .min(1, 'must not be empty')
      .nullish()
      .describe('Keys of object documents to rank on, in order (default ["text"]).'),
    max_chunks_per_doc: topN
      .nullish()
      .describe('Accepted for compatibility; documents longer than the model accepts are truncated, not chunked.'),
    max_tokens_per_doc: topN
      .nullish()
      .describe('Accepted for compatibility; pairs are truncated to the configured maxLength.'),
  })
  .register(apiSchemas, { id: 'CohereRerankRequest' });

export const CohereRerankResultSchema = z.object({
  index: z.int().min(0).describe('Position of the document in `documents`.'),
  relevance_score: z.number().min(0).max(1).describe('Sigmoid relevance score in [0, 1].'),
  document: z.object({ text: z.string() }).optional().describe('The ranked text, when `return_documents` is true.'),
});

export const CohereRerankResponseSchema = z
  .object({
    id: z.string().describe('The request id (X-Request-Id).'),
    model: z.string().describe('The version that answered.'),
    results: z.array(CohereRerankResultSchema).describe('Results, best first.'),
    meta: z.object({
      api_version: z.object({ version: z.string() }),
      billed_units: z.object({ search_units: z.number() }),
    }),
    usage: z.object({ total_tokens: z.int().min(0).describe('Tokens fed to the model.') }),
  })
  .register(apiSchemas, { id: 'CohereRerankResponse' });

// ---- Shared and operational ----

export const ErrorBodySchema = z
  .object({
    error: z.string().describe('What went wrong.'),
    error_type: z.string().describe('validation, payload_too_large, tokenizer, overloaded, unauthorized, not_found, unavailable, cancelled, model, method_not_allowed or internal.'),
    field: z.string().optional().describe('Dotted path of the request field at fault, e.g. `documents.3`.'),
    detail: z.string().optional().describe('Same as `error`; present on /v1 and /v2, where Jina clients read it.'),
  })
  .register(apiSchemas, { id: 'Error' });

export const HealthResponseSchema = z
  .object({ status: z.string(), reason: z.string().optional().describe('Why not ready, when it is known: `draining` once SIGTERM came.') })
  .register(apiSchemas, { id: 'Health' });

export const InfoResponseSchema = z
  .looseObject({
    name: z.string(),
    version: z.string().describe('Server package version.'),
    defaultVersion: z.string(),
    configHash: z.string(),
    versions: z.array(
      z.looseObject({
        name: z.string(),
        state: z.enum(['loading', 'ready', 'failed', 'draining', 'disabled']),
        enabled: z.boolean(),
        device: z.enum(['cpu', 'cuda']),
        weight: z.number(),
        synthetic: z.boolean(),
        head: z
          .object({
            type: z.enum(['cross-encoder', 'causal-lm-yes-no']),
            template: z.string().optional(),
            form: z.enum(['full-vocabulary', 'prepared']).optional(),
            yesTokenId: z.number().optional(),
            noTokenId: z.number().optional(),
            normalize: z.enum(['logit', 'softmax']).optional(),
            paddingSide: z.enum(['left', 'right']).optional(),
            source: z.enum(['config', 'catalogue', 'default']).optional(),
          })
          .optional()
          .describe(
            'How the model output becomes a score. causal-lm-yes-no (LLM rerankers): the prompt template, the yes/no token ids, ' +
              'the normalization, and the graph form that runs: prepared ([batch, 2] yes/no logits) or full-vocabulary ([batch, seq, vocab]).',
          ),
      }),
    ),
    devices: z
      .array(
        z.object({
          device: z.enum(['cpu', 'cuda']),
          versions: z.array(z.string()).describe('The versions on this device now (loading, ready or draining).'),
          gpus: z
            .array(z.object({ deviceId: z.number(), totalMb: z.number(), usedMb: z.number(), freeMb: z.number() }))
            .optional()
            .describe('cuda: the GPUs as the GPU probe (nvidia-smi) last read them, memory in MiB; empty before the first reading or when none can be read.'),
        }),
      )
      .describe('Where versions run: cpu always; cuda while a version is configured for it, with its GPU(s).'),
    limits: z.record(z.string(), z.number()),
    notices: z.array(z.string()),
    liveSessions: z.number().optional().describe('ONNX sessions loaded and not yet freed, draining ones included.'),
    tokenizers: z
      .object({ held: z.number(), idle: z.number() })
      .optional()
      .describe('Parsed tokenizers held: shared by versions that read the same file, and kept (idle) for versions that come back.'),
  })
  .register(apiSchemas, { id: 'Info' });

export const ConfigStatusResponseSchema = z
  .object({
    hash: z.string().describe('Hash of the config in force (what the operator compares across pods).'),
    source: z.string().describe('The config file.'),
    appliedAt: z.string().describe('When the config in force was applied (ISO 8601).'),
    config: z.looseObject({}).describe('The config in force, defaults filled in.'),
    lastError: z
      .object({ at: z.string(), issues: z.array(z.string()) })
      .optional()
      .describe('The newest edit of the file, when it was rejected: the config in force is the last good one.'),
  })
  .register(apiSchemas, { id: 'ConfigStatus' });

export const ConfigHashResponseSchema = ConfigStatusResponseSchema.pick({ hash: true, appliedAt: true }).register(apiSchemas, { id: 'ConfigHash' });

export const OpenApiResponseSchema = z.looseObject({ openapi: z.string() }).register(apiSchemas, { id: 'OpenApiDocument' });

export type TeiRerankRequest = z.infer<typeof TeiRerankRequestSchema>;
export type TeiRerankResponse = z.infer<typeof TeiRerankResponseSchema>;
export type CohereRerankRequest = z.infer<typeof CohereRerankRequestSchema>;
export type CohereRerankResponse = z.infer<typeof CohereRerankResponseSchema>;
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
