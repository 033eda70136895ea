import { RerankError } from '../../errors.ts';
import type { RerankAdapter } from './pipeline.ts';
import { CohereRerankRequestSchema, type CohereRerankRequest, type CohereRerankResponse } from './schemas.ts';

/**
 * Cohere rerank v1 and v2, and Jina's rerank API (same path and shape as Cohere v1). One response
 * satisfies all three: `results[].index/relevance_score/document` is what Cohere's SDKs and the LangChain
 * and LlamaIndex Jina/Cohere clients read, `meta` is Cohere's, `usage` and `model` are Jina's.
 */
export interface CohereApiOptions {
  /** `meta.api_version.version`. */
  apiVersion: '1' | '2';
  /**
   * Whether documents come back when the request does not say. Jina (on /v1) defaults to true and Cohere
   * v1 clients ignore the extra field, so /v1 returns them; Cohere v2 no longer returns documents, so /v2
   * does not unless asked.
   */
  returnDocumentsByDefault: boolean;
}

const DEFAULT_RANK_FIELDS = ['text'];

export function cohereAdapter(options: CohereApiOptions): RerankAdapter<CohereRerankRequest> {
  return {
    schema: CohereRerankRequestSchema,
    documentsField: 'documents',
    toCall: (body) => ({
      query: typeof body.query === 'string' ? body.query : body.query.text,
      documents: documentTexts(body.documents, body.rank_fields ?? DEFAULT_RANK_FIELDS),
      // Cohere and Jina truncate long documents; so do we (max_chunks_per_doc / max_tokens_per_doc are
      // accepted but the pair is cut at the configured maxLength rather than chunked).
      truncate: true,
      topN: body.top_n ?? undefined,
      model: body.model ?? undefined,
    }),
    respond: ({ parsed, ranked, call, outcome, requestId }): CohereRerankResponse => {
      const withDocuments = parsed.return_documents ?? options.returnDocumentsByDefault;
      return {
        id: requestId,
        model: outcome.version,
        results: ranked.map((result) => {
          const item: CohereRerankResponse['results'][number] = { index: result.index, relevance_score: result.score };
          if (withDocuments) item.document = { text: call.documents[result.index] ?? '' };
          return item;
        }),
        meta: { api_version: { version: options.apiVersion }, billed_units: { search_units: 1 } },
        usage: { total_tokens: outcome.tokens },
      };
    },
  };
}

/**
 * The text to rank per document. An object is ranked on its `rank_fields` (default `text`); with several
 * fields, each becomes a `field: value` line, as Cohere does for structured documents.
 */
function documentTexts(documents: CohereRerankRequest['documents'], rankFields: readonly string[]): string[] {
  return documents.map((document, index) => {
    if (typeof document === 'string') return document;
    const values = rankFields.map((field) => {
      const value = Object.hasOwn(document, field) ? (document as Record<string, unknown>)[field] : undefined;
      if (typeof value !== 'string') {
        const problem = value === undefined ? 'is required' : 'must be a string';
        throw new RerankError('validation', `documents.${index}.${field}: ${problem}`, { field: `documents.${index}.${field}` });
      }
      return value;
    });
    if (rankFields.length === 1) return values[0] ?? '';
    return rankFields.map((field, i) => `${field}: ${values[i]}`).join('\n');
  });
}
