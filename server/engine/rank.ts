/**
 * Turning a RerankOutcome into the ranked result list every API returns: one pure function, so the
 * TEI, Cohere and Jina adapters cannot disagree on order, cut-off or threshold.
 */

export interface RankInput {
  /** Raw logit per document, in request order. */
  logits: readonly number[];
  /** Sigmoid of each logit, in request order. */
  scores: readonly number[];
}

export interface RankOptions {
  /** Keep at most this many results (the request's top_n / top_k, else the configured topK). Absent: all. */
  topN?: number | undefined;
  /** Drop results whose normalized score is below this. Absent: keep all. */
  threshold?: number | undefined;
}

export interface RankedResult {
  /** Position of the document in the request. */
  index: number;
  /** Normalized relevance score in [0, 1]. */
  score: number;
  logit: number;
}

/**
 * Best first. Ordered by logit rather than score: the sigmoid is monotonic but rounds distinct large
 * logits to the same 1.0, and the logit keeps them apart. Equal logits keep request order, so the output
 * is deterministic. The threshold applies before the cut, so top_n counts only results that passed it.
 */
export function rankResults(input: RankInput, options: RankOptions = {}): RankedResult[] {
  const { topN, threshold } = options;
  const ranked: RankedResult[] = [];
  for (let index = 0; index < input.scores.length; index++) {
    const score = input.scores[index] ?? 0;
    if (threshold !== undefined && !(score >= threshold)) continue;
    ranked.push({ index, score, logit: input.logits[index] ?? 0 });
  }
  ranked.sort((a, b) => b.logit - a.logit || b.score - a.score || a.index - b.index);
  return topN === undefined ? ranked : ranked.slice(0, Math.max(0, topN));
}
