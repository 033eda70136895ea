import type { RerankAdapter } from './pipeline.ts';
import { TeiRerankRequestSchema, type TeiRerankRequest, type TeiRerankResponse } from './schemas.ts';

/**
 * text-embeddings-inference: `{query, texts, truncate, raw_scores, return_text}` →
 * `[{index, score, text?}]`, best first. `top_k` is an extension TEI clients never send.
 */
export const teiAdapter: RerankAdapter<TeiRerankRequest> = {
  schema: TeiRerankRequestSchema,
  documentsField: 'texts',
  toCall: (body) => ({
    query: body.query,
    documents: body.texts,
    truncate: body.truncate ?? true,
    topN: body.top_k ?? undefined,
  }),
  respond: ({ parsed, ranked, call }): TeiRerankResponse =>
    ranked.map((result) => {
      const rank: TeiRerankResponse[number] = {
        index: result.index,
        score: parsed.raw_scores === true ? result.logit : result.score,
      };
      if (parsed.return_text === true) rank.text = call.documents[result.index] ?? '';
      return rank;
    }),
};
