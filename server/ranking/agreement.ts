/**
 * How far two rerankers agree on one request: two rankings of the same documents compared by top-k
 * overlap (the share of the first k documents both put in their first k) and Kendall's tau-b of their
 * orders over the documents both ranked. What the router's mirroring (server/router/mirror.ts) and the
 * engine's shadow scoring (server/engine/shadow.ts) measure between two versions.
 */

/** One answer's ranking: document index → score, and the indices best first. */
export interface Ranking {
  /** Document indices, best first (by score, ties in the order the answer gave them). */
  order: number[];
  scores: ReadonlyMap<number, number>;
}

export interface Agreement {
  /**
   * |topk(a) ∩ topk(b)| / k with k = min(topK, |a|, |b|), 0 to 1; absent when it cannot differ from 1:
   * both answers rank the same documents, no more than topK of them, so both top-k's are all of them.
   */
  topKOverlap?: number;
  /** Kendall's tau-b over the documents both ranked, -1 to 1; absent when it is undefined (fewer than two common documents, or either side all ties). */
  kendallTau?: number;
  /** The k the overlap was taken over. */
  k: number;
  /** Documents both answers ranked (tau's n). */
  common: number;
}

/** Compare two rankings of the same documents; `topK` ≥ 1. */
export function compareRankings(a: Ranking, b: Ranking, topK: number): Agreement {
  const k = Math.min(topK, a.order.length, b.order.length);
  let overlap = 0;
  if (k > 0) {
    const topB = new Set(b.order.slice(0, k));
    for (const index of a.order.slice(0, k)) if (topB.has(index)) overlap += 1;
  }
  const common = a.order.filter((index) => b.scores.has(index));
  const tau = kendallTauB(
    common.map((index) => a.scores.get(index)!),
    common.map((index) => b.scores.get(index)!),
  );
  const whole = a.order.length <= topK && b.order.length <= topK && a.order.length === b.order.length && common.length === a.order.length;
  return {
    ...(whole ? {} : { topKOverlap: k > 0 ? overlap / k : 0 }),
    ...(tau === undefined ? {} : { kendallTau: tau }),
    k,
    common: common.length,
  };
}

/**
 * Kendall's tau-b of paired scores: (concordant − discordant) / √((n₀ − t_x)(n₀ − t_y)), where t_x and
 * t_y count the pairs tied in x and in y. Undefined with fewer than two pairs or when either side is all
 * ties. O(n²): rerank answers hold at most a few hundred documents.
 */
export function kendallTauB(x: readonly number[], y: readonly number[]): number | undefined {
  const n = Math.min(x.length, y.length);
  if (n < 2) return undefined;
  let concordant = 0;
  let discordant = 0;
  let tiedX = 0;
  let tiedY = 0;
  for (let i = 0; i < n; i += 1) {
    for (let j = i + 1; j < n; j += 1) {
      const dx = Math.sign(x[i]! - x[j]!);
      const dy = Math.sign(y[i]! - y[j]!);
      if (dx === 0) tiedX += 1;
      if (dy === 0) tiedY += 1;
      if (dx !== 0 && dy !== 0) {
        if (dx === dy) concordant += 1;
        else discordant += 1;
      }
    }
  }
  const pairs = (n * (n - 1)) / 2;
  const denominator = Math.sqrt((pairs - tiedX) * (pairs - tiedY));
  if (denominator === 0) return undefined;
  return Math.max(-1, Math.min(1, (concordant - discordant) / denominator));
}

/** The ranking of one score per document (index = position in `scores`): best first, ties by index. */
export function rankingOfScores(scores: readonly number[]): Ranking {
  const map = new Map<number, number>();
  scores.forEach((score, index) => map.set(index, score));
  // Array.prototype.sort is stable: equal scores keep index order.
  const order = scores.map((_, index) => index).sort((a, b) => scores[b]! - scores[a]!);
  return { order, scores: map };
}
