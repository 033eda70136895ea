/**
 * How far a quantized model's scores are from the float32 model's on the same pairs: the largest and mean
 * |Δlogit|, and, per query, how many of the float32 top 10 the quantized model also ranks in its top 10.
 */

export interface ScoredGroup {
  /** Logits of one query's documents, float32 model. */
  reference: Float32Array | readonly number[];
  /** The same documents, quantized model. */
  candidate: Float32Array | readonly number[];
}

export interface Agreement {
  pairs: number;
  groups: number;
  maxAbsDelta: number;
  meanAbsDelta: number;
  /** Standard deviation of the reference logits: the scale |Δlogit| is to be read against. */
  referenceStd: number;
  /** Mean over groups of |top-k(reference) ∩ top-k(candidate)| / k, k = min(10, documents). */
  topKAgreement: number;
  /** The worst group's. */
  minTopKAgreement: number;
  /** Share of groups whose best document is the same. */
  top1Agreement: number;
  k: number;
}

/** Indices of the k largest values, ties broken by index (so equal scores rank as a stable sort would). */
export function topK(values: Float32Array | readonly number[], k: number): number[] {
  return Array.from(values.keys())
    .sort((a, b) => (values[b] as number) - (values[a] as number) || a - b)
    .slice(0, k);
}

export function agreement(groups: readonly ScoredGroup[], k = 10): Agreement {
  let pairs = 0;
  let maxAbsDelta = 0;
  let sumAbsDelta = 0;
  let sumTopK = 0;
  let minTopK = 1;
  let top1 = 0;
  let sum = 0;
  let sumSquares = 0;
  for (const { reference, candidate } of groups) {
    if (reference.length !== candidate.length) throw new Error(`a group has ${reference.length} reference and ${candidate.length} candidate scores`);
    for (let i = 0; i < reference.length; i += 1) {
      const delta = Math.abs((reference[i] as number) - (candidate[i] as number));
      maxAbsDelta = Math.max(maxAbsDelta, delta);
      sumAbsDelta += delta;
      sum += reference[i] as number;
      sumSquares += (reference[i] as number) ** 2;
    }
    pairs += reference.length;
    const size = Math.min(k, reference.length);
    if (size === 0) continue;
    const wanted = new Set(topK(reference, size));
    const shared = topK(candidate, size).filter((i) => wanted.has(i)).length / size;
    sumTopK += shared;
    minTopK = Math.min(minTopK, shared);
    if (topK(reference, 1)[0] === topK(candidate, 1)[0]) top1 += 1;
  }
  const n = groups.length;
  return {
    pairs,
    groups: n,
    maxAbsDelta,
    meanAbsDelta: pairs === 0 ? 0 : sumAbsDelta / pairs,
    referenceStd: pairs === 0 ? 0 : Math.sqrt(Math.max(0, sumSquares / pairs - (sum / pairs) ** 2)),
    topKAgreement: n === 0 ? 1 : sumTopK / n,
    minTopKAgreement: n === 0 ? 1 : minTopK,
    top1Agreement: n === 0 ? 1 : top1 / n,
    k,
  };
}
