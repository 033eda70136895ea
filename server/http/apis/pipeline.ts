import type { Context, Middleware } from 'koa';
import type { z } from 'zod';
import type { ServingConfig } from '../../config/schema.ts';
import { RerankError, isRerankError, versionOfFailure } from '../../errors.ts';
import { rankResults, type RankedResult } from '../../engine/rank.ts';
import type { Reranker, RerankOutcome } from '../../engine/types.ts';
import type { ServerMetrics } from '../../metrics.ts';
import { statusForError, validationError } from '../errors.ts';
import { abortOnClientGone, httpState } from '../middleware.ts';
import { requestDeadline } from '../request-deadline.ts';
import { headerVersion, isMirrored, pathVersion, stickyKey, VERSION_HEADER } from '../version-request.ts';
import { boundTextBytes } from './text-limits.ts';

/**
 * The one rerank pipeline every API shares: validate → call the core → rank → shape. An adapter only
 * knows its API's body and response shapes.
 */

/** What an adapter extracts from its request body. */
export interface RerankCall {
  query: string;
  documents: string[];
  truncate: boolean;
  /** The request's own result limit (top_n / top_k); absent: the configured topK. */
  topN?: number | undefined;
  /** A `model` field: used as the version when it names a configured one. */
  model?: string | undefined;
}

export interface RankedResponse<Parsed> {
  parsed: Parsed;
  call: RerankCall;
  ranked: RankedResult[];
  outcome: RerankOutcome;
  requestId: string;
}

export interface RerankAdapter<Parsed> {
  schema: z.ZodType<Parsed>;
  /** Field holding the document list, for the document-count limit. */
  documentsField: string;
  /** Semantic checks zod cannot express; throws RerankError naming the field. */
  toCall(parsed: Parsed): RerankCall;
  respond(result: RankedResponse<Parsed>): unknown;
}

export interface PipelineDeps {
  reranker: Reranker;
  metrics: ServerMetrics;
  serving: () => ServingConfig;
}

export function rerankHandler<Parsed>(deps: PipelineDeps, adapter: RerankAdapter<Parsed>): Middleware {
  return (ctx) => runPipeline(ctx, deps, adapter);
}

/**
 * reranker_requests_total{version,status}, and reranker_request_duration_seconds{version} of the requests
 * a version answered. First in a rerank route's chain, so refusals by the API key check and the body
 * parser are counted too; those, and every failure before a version was chosen, have no version to name
 * (`none`). A router's mirrored copy (X-Rerank-Mirror: 1) is counted the same way in
 * reranker_mirrored_requests_total and reranker_mirrored_request_duration_seconds instead: a real
 * execution of the version, but no client's request.
 */
export function countRerankRequests(metrics: ServerMetrics): Middleware {
  return async (ctx, next) => {
    const started = performance.now();
    const mirrored = isMirrored(ctx);
    const [requests, duration] = mirrored ? [metrics.mirroredRequests, metrics.mirroredRequestDuration] : [metrics.requests, metrics.requestDuration];
    try {
      await next();
      const version = httpState(ctx).version;
      requests.inc({ version: version ?? 'none', status: String(ctx.status) });
      if (version !== undefined) duration.observe({ version }, (performance.now() - started) / 1000);
    } catch (error) {
      // A failure after a version was chosen (its model threw, its queue refused, a deadline) is that version's.
      requests.inc({ version: versionOfFailure(error) ?? 'none', status: String(statusForError(error)) });
      throw error;
    }
  };
}

async function runPipeline<Parsed>(ctx: Context, deps: PipelineDeps, adapter: RerankAdapter<Parsed>): Promise<void> {
  const serving = deps.serving();
  const body: unknown = ctx.request.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new RerankError('validation', 'body: must be a JSON object', { field: 'body' });
  }
  // Counted before validating each document: a body far over the limit is refused without walking it.
  const documents = (body as Record<string, unknown>)[adapter.documentsField];
  if (Array.isArray(documents) && documents.length > serving.maxDocuments) {
    throw new RerankError(
      'payload_too_large',
      `${adapter.documentsField}: ${documents.length} documents, more than the limit of ${serving.maxDocuments}`,
      { field: adapter.documentsField },
    );
  }
  const parsed = adapter.schema.safeParse(body);
  if (!parsed.success) throw validationError(parsed.error);
  const call = adapter.toCall(parsed.data);
  const texts = boundTextBytes(call, serving.maxDocumentBytes, adapter.documentsField);

  const key = stickyKey(ctx);
  const deadline = requestDeadline(ctx, httpState(ctx).startedAt);
  const outcome = await deps.reranker
    .rerank({
      query: texts.query,
      documents: texts.documents,
      truncate: call.truncate,
      pathVersion: pathVersion(ctx),
      headerVersion: headerVersion(ctx, { model: call.model, isVersion: (name) => deps.reranker.info().versions.some((version) => version.name === name) }),
      ...(key === undefined ? {} : { stickyKey: key }),
      ...(deadline === undefined ? {} : { deadline }),
      signal: abortOnClientGone(ctx),
    })
    .catch((error: unknown) => {
      throw inApiTerms(error, adapter.documentsField);
    });
  assertWellFormed(outcome, call.documents.length);

  const ranked = rankResults(outcome, { topN: call.topN ?? serving.topK, threshold: serving.threshold });
  const state = httpState(ctx);
  state.version = outcome.version;
  ctx.set(VERSION_HEADER, outcome.version);
  ctx.set(timingHeaders(outcome, performance.now() - state.startedAt));
  ctx.status = 200;
  ctx.body = adapter.respond({ parsed: parsed.data, call, ranked, outcome, requestId: state.requestId });
}

/** The core names the document list `documents`; a TEI caller sent `texts`, so its errors say `texts.3`. */
function inApiTerms(error: unknown, documentsField: string): unknown {
  if (!isRerankError(error) || documentsField === 'documents' || !error.field) return error;
  const match = /^documents(?=\.|$)/;
  if (!match.test(error.field)) return error;
  return new RerankError(error.kind, error.message.replace(match, documentsField), {
    field: error.field.replace(match, documentsField),
    ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
    cause: error,
  });
}

/** A core that breaks its contract is a 500, not a 200 whose scores serialize as null. */
function assertWellFormed(outcome: RerankOutcome, documents: number): void {
  if (outcome.scores.length !== documents || outcome.logits.length !== documents) {
    throw new Error(`core answered ${outcome.scores.length} scores and ${outcome.logits.length} logits for ${documents} documents`);
  }
  if (!outcome.scores.every(Number.isFinite) || !outcome.logits.every(Number.isFinite)) {
    throw new Error('core answered a non-finite score');
  }
}

/** TEI's timing headers, whole milliseconds. */
function timingHeaders(outcome: RerankOutcome, totalMs: number): Record<string, string> {
  const ms = (seconds: number) => String(Math.round(seconds * 1000));
  return {
    'x-total-time': String(Math.round(totalMs)),
    'x-tokenization-time': ms(outcome.timings.tokenizeSeconds),
    'x-queue-time': ms(outcome.timings.queueSeconds),
    'x-inference-time': ms(outcome.timings.inferenceSeconds),
  };
}
