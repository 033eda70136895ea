import type { RerankerConfigSpec, RerankerConfigStatus } from './crd/spec.ts';
import type { Pool } from './names.ts';

/** Ready replicas observed for one version: its main pods and its CPU fallback pods. */
export interface VersionReadiness {
  primary: number;
  fallback: number;
}

export type Availability = Readonly<Record<string, VersionReadiness>>;

export interface VersionRouting {
  /** Share of unpinned traffic, in percent; the weights of all versions sum to 100 (or 0 when none can serve). */
  weight: number;
  /** Which pods take this version's traffic: its main pods, its CPU fallback, or none are ready. */
  target: Pool | 'none';
}

export interface WeightPlan {
  versions: Record<string, VersionRouting>;
  /** Enabled versions that wanted traffic and got none because nothing of theirs is ready. */
  unavailable: string[];
  /** Versions whose traffic is served by their CPU fallback. */
  onFallback: string[];
}

/** The pods that take a version's traffic: its CPU fallback while that serves it, else its main pods. */
export function servingPool(weights: WeightPlan, version: string): Pool {
  return weights.versions[version]?.target === 'cpu' ? 'cpu' : 'gpu';
}

/**
 * Weights in effect: a version with no ready endpoints gets no traffic, and its share goes to the others
 * in proportion to their own weights. When every version that can serve has weight 0, the default
 * version takes it all (or, if it cannot serve, the servable ones share it evenly) — the server's own
 * version choice falls back the same way.
 */
export function weightsInEffect(spec: RerankerConfigSpec, availability: Availability): WeightPlan {
  const versions: Record<string, VersionRouting> = {};
  const unavailable: string[] = [];
  const onFallback: string[] = [];
  const servable: Array<{ name: string; weight: number }> = [];
  for (const version of spec.versions) {
    const ready = availability[version.name] ?? { primary: 0, fallback: 0 };
    const target: VersionRouting['target'] = !version.enabled
      ? 'none'
      : ready.primary > 0
        ? 'gpu'
        : ready.fallback > 0 && version.cpuFallback
          ? 'cpu'
          : 'none';
    versions[version.name] = { weight: 0, target };
    if (!version.enabled) continue;
    if (target === 'none') {
      if (version.weight > 0) unavailable.push(version.name);
      continue;
    }
    if (target === 'cpu') onFallback.push(version.name);
    servable.push({ name: version.name, weight: version.weight });
  }
  let shares = servable;
  if (shares.length > 0 && shares.every((s) => s.weight === 0)) {
    const fallbackTo = shares.find((s) => s.name === spec.defaultVersion);
    shares = fallbackTo ? [{ name: fallbackTo.name, weight: 1 }] : shares.map((s) => ({ name: s.name, weight: 1 }));
  }
  for (const [name, weight] of Object.entries(toPercent(shares))) {
    const routing = versions[name];
    if (routing) routing.weight = weight;
  }
  return { versions, unavailable, onFallback };
}

/** Largest-remainder rounding: integer percentages that sum to exactly 100; ties go to the earlier entry. */
export function toPercent(shares: ReadonlyArray<{ name: string; weight: number }>): Record<string, number> {
  const total = shares.reduce((sum, s) => sum + s.weight, 0);
  if (total <= 0) return {};
  const exact = shares.map((s, index) => ({ name: s.name, index, value: (s.weight * 100) / total }));
  const out: Record<string, number> = {};
  let given = 0;
  for (const e of exact) {
    out[e.name] = Math.floor(e.value);
    given += Math.floor(e.value);
  }
  const byRemainder = [...exact].sort((a, b) => b.value - Math.floor(b.value) - (a.value - Math.floor(a.value)) || a.index - b.index);
  for (const e of byRemainder.slice(0, 100 - given)) out[e.name] = (out[e.name] ?? 0) + 1;
  return out;
}

/**
 * Fail static: the weights last rendered from a complete observation, as the status recorded them,
 * for a reconcile that could not observe which versions are ready. A version the status does not
 * know (added since) gets none. Undefined when nothing was ever rendered: then nothing that routes
 * traffic may be written on a guess.
 */
export function heldWeights(spec: RerankerConfigSpec, status: RerankerConfigStatus | undefined): WeightPlan | undefined {
  if (!status?.versions?.length) return undefined;
  const versions: Record<string, VersionRouting> = {};
  const onFallback: string[] = [];
  for (const version of spec.versions) {
    const seen = status.versions.find((v) => v.name === version.name);
    const hasGpus = (version.resources?.gpu?.count ?? 0) > 0;
    const target: VersionRouting['target'] =
      !version.enabled || !seen || seen.device === 'none' ? 'none' : seen.device === 'cpu' && hasGpus ? 'cpu' : 'gpu';
    versions[version.name] = { weight: target === 'none' ? 0 : seen?.weight ?? 0, target };
    if (target === 'cpu') onFallback.push(version.name);
  }
  return { versions, unavailable: [], onFallback };
}
