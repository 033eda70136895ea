import type { AnalysisSpec, GateResult } from '../crd/rollout-spec.ts';

/** What one version did in a step's window, summed over its ready pods. */
export interface VersionFigures {
  /** Client requests it answered (reranker_requests_total), every status: what minRequests counts. */
  requests: number;
  /** Of those, answered with a 5xx. */
  errors: number;
  /**
   * Mirrored copies of stable's requests it answered (reranker_mirrored_requests_total, router mode with a
   * ranking gate): real executions, so they count in the error ratio and the p99, but no client's traffic,
   * so not in minRequests. Absent where the source has no such series (Prometheus queries).
   */
  mirrored?: number;
  /** Of those, answered with a 5xx. */
  mirroredErrors?: number;
  /** p99 in the window, in ms, of reranker_request_duration_seconds and reranker_mirrored_request_duration_seconds together; absent with no requests. */
  p99Ms?: number;
  /** GPU → CPU moves (reranker_fallback_count_total). */
  fallbacks: number;
  /** Failed model loads (reranker_version_load_failures_total). */
  loadFailures: number;
}

/** Ranking agreement of canary and stable on mirrored requests (router mode with mirroring). */
export interface AgreementFigures {
  /** Requests compared in the window; 0: the gates have no data. */
  comparisons: number;
  topKOverlap?: number;
  kendallTau?: number;
}

export interface StepFigures {
  canary: VersionFigures;
  stable: VersionFigures;
  agreement?: AgreementFigures;
}

export const GATES = ['errorRatio', 'errorRatioDelta', 'p99Ms', 'p99Ratio', 'fallbacks', 'loadFailures', 'topKOverlap', 'kendallTau'] as const;
export type Gate = (typeof GATES)[number];

export interface Judgement {
  gates: Partial<Record<Gate, GateResult>>;
  /** The gates that failed, each with its figure, for Degraded, the Event and the log. */
  failed: string[];
}

/** 5xx ÷ all of what the version executed in the window: its client requests and the mirrored copies it answered. */
const ratio = (figures: VersionFigures): number | undefined => {
  const executed = figures.requests + (figures.mirrored ?? 0);
  return executed > 0 ? (figures.errors + (figures.mirroredErrors ?? 0)) / executed : undefined;
};

/**
 * Each gate the analysis sets, judged on one step's figures. A gate without data (no stable requests to
 * compare with, no mirrored requests) passes and says so by having no value: only evidence fails a step.
 */
export function judge(analysis: AnalysisSpec, figures: StepFigures): Judgement {
  const { canary, stable, agreement } = figures;
  const measured: Record<Gate, { value: number | undefined; threshold: number | undefined; atMost: boolean; unit?: string }> = {
    errorRatio: { value: ratio(canary), threshold: analysis.maxErrorRatio, atMost: true },
    errorRatioDelta: {
      value: ratio(canary) !== undefined && ratio(stable) !== undefined ? ratio(canary)! - ratio(stable)! : undefined,
      threshold: analysis.maxErrorRatioDelta,
      atMost: true,
    },
    p99Ms: { value: canary.p99Ms, threshold: analysis.maxP99Ms, atMost: true, unit: 'ms' },
    p99Ratio: {
      value: canary.p99Ms !== undefined && stable.p99Ms !== undefined && stable.p99Ms > 0 ? canary.p99Ms / stable.p99Ms : undefined,
      threshold: analysis.maxP99Ratio,
      atMost: true,
    },
    fallbacks: { value: canary.fallbacks, threshold: analysis.maxFallbacks, atMost: true },
    loadFailures: { value: canary.loadFailures, threshold: analysis.maxLoadFailures, atMost: true },
    topKOverlap: { value: agreement?.comparisons ? agreement.topKOverlap : undefined, threshold: analysis.minTopKOverlap, atMost: false },
    kendallTau: { value: agreement?.comparisons ? agreement.kendallTau : undefined, threshold: analysis.minKendallTau, atMost: false },
  };
  const gates: Judgement['gates'] = {};
  const failed: string[] = [];
  for (const gate of GATES) {
    const { value, threshold, atMost, unit = '' } = measured[gate];
    if (threshold === undefined) continue;
    const ok = value === undefined || (atMost ? value <= threshold : value >= threshold);
    gates[gate] = value === undefined ? { threshold, ok } : { value: round(value), threshold, ok };
    if (!ok) failed.push(`${gate} ${round(value!)}${unit} ${atMost ? '>' : '<'} ${threshold}${unit}`);
  }
  return { gates, failed };
}

const round = (value: number): number => Math.round(value * 10_000) / 10_000;
