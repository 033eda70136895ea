import type { AgreementFigures, StepFigures, VersionFigures } from './analysis.ts';
import type { Sample } from './exposition.ts';

/**
 * A step's figures from the pods' own counters: two scrapes of each pod's /metrics (the step's baseline
 * and now), their difference per pod, summed over the version's pods. The metric names are the server's
 * (server/metrics.ts); the tests read them from its registry.
 */

export const ROLLOUT_METRICS = {
  requests: 'reranker_requests_total',
  duration: 'reranker_request_duration_seconds',
  mirrored: 'reranker_mirrored_requests_total',
  mirroredDuration: 'reranker_mirrored_request_duration_seconds',
  fallbacks: 'reranker_fallback_count_total',
  loadFailures: 'reranker_version_load_failures_total',
} as const;

/** The router's agreement series (server/router/metrics.ts): a counter and two histograms per (from, to). */
export const AGREEMENT_METRICS = {
  comparisons: 'reranker_router_agreement_comparisons_total',
  topKOverlap: 'reranker_router_agreement_topk_overlap',
  kendallTau: 'reranker_router_agreement_kendall_tau',
} as const;

/** One pod's samples at one moment. */
export interface PodScrape {
  pod: string;
  /** The pod's version; ROUTER_POD for a router pod. */
  version: string;
  samples: Sample[];
}

/**
 * Counter growth of one pod: now minus baseline per series. A series that went down was reset (the
 * container restarted), so all of it is new; a pod or series the baseline lacks started inside the window.
 */
function growth(before: Sample[] | undefined, after: Sample[]): Sample[] {
  const base = new Map((before ?? []).map((s) => [seriesKey(s), s.value]));
  return after.map((s) => {
    const was = base.get(seriesKey(s)) ?? 0;
    return { ...s, value: s.value >= was ? s.value - was : s.value };
  });
}

const seriesKey = (s: Sample): string => `${s.name}${JSON.stringify(Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)))}`;

/** What `version`'s pods did between the two scrapes, summed over its pods. */
export function versionFigures(baseline: PodScrape[], now: PodScrape[], version: string): VersionFigures {
  const grown = now
    .filter((p) => p.version === version)
    .flatMap((p) => growth(baseline.find((b) => b.pod === p.pod)?.samples, p.samples))
    // A failure after the version was chosen (its model threw, its queue refused) is counted under it by the
    // server; `none` holds only what failed before any version (auth, validation), which no version caused.
    .filter((s) => s.labels.version === version);
  const sum = (name: string, keep: (s: Sample) => boolean = () => true) =>
    grown.filter((s) => s.name === name && keep(s)).reduce((total, s) => total + s.value, 0);
  const requests = sum(ROLLOUT_METRICS.requests);
  const is5xx = (s: Sample) => (s.labels.status ?? '').startsWith('5');
  // Client requests and mirrored copies alike: the latency of what the version executed.
  const bucketNames = new Set([`${ROLLOUT_METRICS.duration}_bucket`, `${ROLLOUT_METRICS.mirroredDuration}_bucket`]);
  const buckets = new Map<number, number>();
  for (const s of grown) {
    if (!bucketNames.has(s.name) || s.labels.le === undefined) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + s.value);
  }
  const p99 = quantile(0.99, buckets);
  return {
    requests,
    errors: sum(ROLLOUT_METRICS.requests, is5xx),
    mirrored: sum(ROLLOUT_METRICS.mirrored),
    mirroredErrors: sum(ROLLOUT_METRICS.mirrored, is5xx),
    ...(p99 === undefined ? {} : { p99Ms: Math.round(p99 * 1000 * 10) / 10 }),
    fallbacks: sum(ROLLOUT_METRICS.fallbacks),
    loadFailures: sum(ROLLOUT_METRICS.loadFailures),
  };
}

/** PodScrape.version of a router pod: no version name is empty. */
export const ROUTER_POD = '';

/**
 * Ranking agreement of `to` with `from` on the requests the routers mirrored between the two scrapes,
 * summed over the router pods: the comparisons, and the mean top-k overlap and Kendall's tau as Δsum ÷
 * Δcount of their histograms. A histogram's _sum may fall (tau can be negative), so a router pod's
 * restart shows in its _count going down, and then all of its now-values are the window's.
 */
export function agreementFigures(baseline: PodScrape[], now: PodScrape[], from: string, to: string): AgreementFigures {
  const pair = (s: Sample) => s.labels.from === from && s.labels.to === to;
  const total = { comparisons: 0, overlapSum: 0, overlapCount: 0, tauSum: 0, tauCount: 0 };
  for (const pod of now) {
    const before = baseline.find((b) => b.pod === pod.pod)?.samples ?? [];
    const read = (samples: Sample[], name: string) => samples.filter((s) => s.name === name && pair(s)).reduce((sum, s) => sum + s.value, 0);
    const delta = (name: string) => {
      const [was, is] = [read(before, name), read(pod.samples, name)];
      return is >= was ? is - was : is;
    };
    const histogram = (name: string) => {
      const [wasCount, isCount] = [read(before, `${name}_count`), read(pod.samples, `${name}_count`)];
      const [wasSum, isSum] = [read(before, `${name}_sum`), read(pod.samples, `${name}_sum`)];
      return isCount >= wasCount ? { count: isCount - wasCount, sum: isSum - wasSum } : { count: isCount, sum: isSum };
    };
    total.comparisons += delta(AGREEMENT_METRICS.comparisons);
    const overlap = histogram(AGREEMENT_METRICS.topKOverlap);
    const tau = histogram(AGREEMENT_METRICS.kendallTau);
    total.overlapSum += overlap.sum;
    total.overlapCount += overlap.count;
    total.tauSum += tau.sum;
    total.tauCount += tau.count;
  }
  const mean = (sum: number, count: number) => Math.min(1, Math.max(-1, sum / count));
  return {
    comparisons: total.comparisons,
    ...(total.overlapCount > 0 ? { topKOverlap: mean(total.overlapSum, total.overlapCount) } : {}),
    ...(total.tauCount > 0 ? { kendallTau: mean(total.tauSum, total.tauCount) } : {}),
  };
}

export function stepFigures(baseline: PodScrape[], now: PodScrape[], canary: string, stable: string): StepFigures {
  return { canary: versionFigures(baseline, now, canary), stable: versionFigures(baseline, now, stable) };
}

/**
 * The φ-quantile of cumulative histogram buckets (upper bound → count), as Prometheus'
 * histogram_quantile computes it: linear within the bucket it falls in; in the +Inf bucket, the highest
 * finite bound. Undefined with no observations.
 */
export function quantile(phi: number, buckets: Map<number, number>): number | undefined {
  const sorted = [...buckets.entries()].sort(([a], [b]) => a - b);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const rank = phi * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, count] of sorted) {
    if (count >= rank) {
      if (bound === Infinity) return lowerBound;
      if (count === lowerCount) return bound;
      return lowerBound + ((bound - lowerBound) * (rank - lowerCount)) / (count - lowerCount);
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return lowerBound;
}
