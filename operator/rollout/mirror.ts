import type { RolloutSpec } from '../crd/rollout-spec.ts';
import type { RerankerConfigSpec } from '../crd/spec.ts';
import type { RolloutDecision } from './planner.ts';

/**
 * Mirroring while a rollout runs in router mode: the router (router.yaml `mirror`) sends a share of
 * stable's unpinned requests to the canary as well and compares the rankings, which is what the ranking
 * gates (minTopKOverlap, minKendallTau) read. Only while a step is Progressing and a ranking gate is set:
 * copies cost the canary capacity, and nothing would read their comparison otherwise.
 */

export const DEFAULT_MIRROR_FRACTION = 0.1;
/** The k of the top-k overlap the gates are judged on (router.yaml mirror.topK). */
export const MIRROR_TOP_K = 10;

export interface RolloutMirror {
  from: string;
  to: string;
  fraction: number;
  topK: number;
}

/**
 * The spec in effect carries the mirror to the planner that renders router.yaml under a symbol key: it
 * is no field of the resource (nothing serializes it, JSON and hashes never see it), and a spread of
 * the spec keeps it.
 */
const MIRROR = Symbol('rollout mirror in effect');

type WithMirror = RerankerConfigSpec & { [MIRROR]?: RolloutMirror };

/** Whether a rollout's analysis judges ranking agreement, which needs mirrored requests. */
export function judgesRanking(rollout: RolloutSpec): boolean {
  return rollout.analysis.minTopKOverlap !== undefined || rollout.analysis.minKendallTau !== undefined;
}

/** The mirror this decision needs: stable → canary while Progressing in router mode with a ranking gate; undefined otherwise. */
export function rolloutMirror(spec: RerankerConfigSpec & { rollout: RolloutSpec }, decision: RolloutDecision): RolloutMirror | undefined {
  const { phase, canary, stable } = decision.status;
  if (phase !== 'Progressing' || spec.routing.mode !== 'router' || !judgesRanking(spec.rollout)) return undefined;
  return { from: stable, to: canary, fraction: spec.rollout.analysis.mirrorFraction ?? DEFAULT_MIRROR_FRACTION, topK: MIRROR_TOP_K };
}

/** The spec in effect with this mirror (none: the spec itself). */
export function withMirror(spec: RerankerConfigSpec, mirror: RolloutMirror | undefined): RerankerConfigSpec {
  if (!mirror) return spec;
  const marked: WithMirror = { ...spec };
  marked[MIRROR] = mirror;
  return marked;
}

/** The mirror a spec in effect carries, for router.yaml. */
export function mirrorInEffect(spec: RerankerConfigSpec): RolloutMirror | undefined {
  return (spec as WithMirror)[MIRROR];
}
