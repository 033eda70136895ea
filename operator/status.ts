import type { RolloutStatus } from './crd/rollout-spec.ts';
import type { Condition, ConditionType, RerankerConfigSpec, RerankerConfigStatus, VersionStatus } from './crd/spec.ts';
import type { Pool } from './names.ts';
import type { WeightPlan } from './weights.ts';

/** What one reconcile saw of a version pool's Deployment. */
export interface PoolObservation {
  desired: number;
  ready: number;
  updated: number;
  /** The Deployment controller has seen the latest template (status.observedGeneration >= metadata.generation). */
  current: boolean;
}

export interface VersionObservation {
  pools: Partial<Record<Pool, PoolObservation>>;
  /** Ready pods of the version, and how many of them report the config hash they should run. */
  readyPods: number;
  appliedPods: number;
  /** Ready pods whose GET /config/hash failed, each "pod: why". */
  unanswered?: string[];
}

export interface Observation {
  generation: number;
  spec: RerankerConfigSpec;
  weights: WeightPlan;
  versions: Record<string, VersionObservation>;
  configHash: string;
  /** Failures of this reconcile, each saying what was being done ("apply Deployment ns/name: ..."). */
  errors: string[];
  /** Fields of children that another manager applied, left to it (see operator/apply.ts). */
  conflicts?: string[];
  /** Per autoscaled version: what bounds it, and whether the GPU budget holds its scale-out now. */
  scaling?: Record<string, ScalingObservation>;
  /** The rollout of spec.rollout, as this reconcile decided it. */
  rollout?: RolloutStatus;
}

export interface ScalingObservation {
  message: string;
  /** The autoscaler wants more pods than the maximum spec.gpuBudget left it. */
  heldByBudget: boolean;
}

/** A condition without its transition time; setConditions supplies it. */
export type ConditionValue = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

const cond = (type: ConditionType, ok: boolean | 'Unknown', reason: string, message: string): ConditionValue => ({
  type,
  status: ok === 'Unknown' ? 'Unknown' : ok ? 'True' : 'False',
  reason,
  message,
});

function enabledVersions(o: Observation) {
  return o.spec.versions.filter((v) => v.enabled);
}

function podsApplied(o: Observation): { applied: number; ready: number } {
  let applied = 0;
  let ready = 0;
  for (const v of Object.values(o.versions)) {
    applied += v.appliedPods;
    ready += v.readyPods;
  }
  return { applied, ready };
}

export function configAppliedCondition(o: Observation): ConditionValue {
  const { applied, ready } = podsApplied(o);
  if (ready === 0) return cond('ConfigApplied', false, 'NoReadyPods', `no ready pods to run config ${o.configHash}`);
  if (applied < ready) {
    const unanswered = Object.values(o.versions).flatMap((v) => v.unanswered ?? []);
    const why = unanswered.length ? `; no answer to GET /config/hash from ${unanswered.slice(0, 3).join('; ')}${unanswered.length > 3 ? ` and ${unanswered.length - 3} more` : ''}` : '';
    return cond('ConfigApplied', false, 'Rollout', `${applied}/${ready} ready pods run config ${o.configHash}${why}`);
  }
  return cond('ConfigApplied', true, 'Applied', `${applied}/${ready} ready pods run config ${o.configHash}`);
}

export function progressingCondition(o: Observation): ConditionValue {
  const rolling: string[] = [];
  for (const version of enabledVersions(o)) {
    for (const [pool, p] of Object.entries(o.versions[version.name]?.pools ?? {})) {
      if (!p.current || p.updated < p.desired || p.ready < p.desired) {
        rolling.push(`${version.name}${pool === 'cpu' ? ' (cpu fallback)' : ''} ${p.ready}/${p.desired} ready`);
      }
    }
  }
  const { applied, ready } = podsApplied(o);
  if (rolling.length > 0) return cond('Progressing', true, 'RollingOut', rolling.join(', '));
  if (applied < ready) return cond('Progressing', true, 'ConfigRollout', `${applied}/${ready} ready pods run config ${o.configHash}`);
  if (o.rollout?.phase === 'Progressing') return cond('Progressing', true, 'RolloutProgressing', o.rollout.message);
  return cond('Progressing', false, 'Stable', 'every Deployment is rolled out and every ready pod runs the current config');
}

export function degradedCondition(o: Observation): ConditionValue {
  if (o.errors.length > 0) return cond('Degraded', true, 'ReconcileFailed', o.errors.join('; '));
  if (o.conflicts?.length) return cond('Degraded', true, 'FieldConflict', o.conflicts.join('; '));
  if (o.rollout?.phase === 'RolledBack') return cond('Degraded', true, 'RolloutRolledBack', o.rollout.message);
  if (o.rollout?.phase === 'Failed') return cond('Degraded', true, 'RolloutFailed', o.rollout.message);
  const parts: string[] = [];
  if (o.weights.unavailable.length > 0) {
    const lost = o.weights.unavailable.map((name) => `${name} (weight ${o.spec.versions.find((v) => v.name === name)?.weight ?? 0})`);
    const to = Object.entries(o.weights.versions).filter(([, r]) => r.weight > 0).map(([name, r]) => `${name}=${r.weight}`);
    parts.push(`no ready endpoints: ${lost.join(', ')}; weight in effect: ${to.length ? to.join(', ') : 'none (nothing can serve)'}`);
  }
  if (o.weights.onFallback.length > 0) parts.push(`serving on CPU fallback: ${o.weights.onFallback.join(', ')}`);
  if (parts.length > 0) return cond('Degraded', true, o.weights.unavailable.length > 0 ? 'VersionUnavailable' : 'CpuFallback', parts.join('; '));
  return cond('Degraded', false, 'AsExpected', 'every version with weight has ready endpoints');
}

/** Ready: everything applied, and every enabled version can take traffic. Never claimed on a failed reconcile. */
export function readyCondition(o: Observation): ConditionValue {
  if (o.errors.length > 0) return cond('Ready', false, 'ReconcileFailed', o.errors.join('; '));
  const notReady = enabledVersions(o).filter((v) => o.weights.versions[v.name]?.target === 'none').map((v) => v.name);
  if (notReady.length > 0) return cond('Ready', false, 'VersionsNotReady', `no ready endpoints: ${notReady.join(', ')}`);
  const held = Object.entries(o.scaling ?? {}).filter(([, s]) => s.heldByBudget).map(([name, s]) => `${name}: ${s.message}`);
  const limits = held.length ? `; scale-out held by the GPU budget, not the metric: ${held.join('; ')}` : '';
  return cond('Ready', true, 'Ready', `${enabledVersions(o).length} version(s) serving${limits}`);
}

/** For a spec the operator cannot act on: nothing applied, nothing Ready. */
export function invalidSpecConditions(message: string): ConditionValue[] {
  return [
    cond('Ready', false, 'InvalidSpec', message),
    cond('ConfigApplied', 'Unknown', 'InvalidSpec', message),
    cond('Progressing', false, 'InvalidSpec', message),
    cond('Degraded', true, 'InvalidSpec', message),
  ];
}

/** For a first reconcile that could not see the Deployments: nothing was applied, nothing is known. */
export function unobservedConditions(message: string): ConditionValue[] {
  return [
    cond('Ready', false, 'ReconcileFailed', message),
    cond('ConfigApplied', 'Unknown', 'ReconcileFailed', message),
    cond('Progressing', 'Unknown', 'ReconcileFailed', message),
    cond('Degraded', true, 'ReconcileFailed', message),
  ];
}

/** Merge new condition values into the previous ones; lastTransitionTime moves only when status changes. */
export function setConditions(previous: readonly Condition[] | undefined, values: readonly ConditionValue[], generation: number, now: Date): Condition[] {
  return values.map((value) => {
    const before = previous?.find((c) => c.type === value.type);
    const lastTransitionTime = before && before.status === value.status ? before.lastTransitionTime : now.toISOString();
    return { ...value, lastTransitionTime, observedGeneration: generation };
  });
}

export function computeStatus(o: Observation, previous: RerankerConfigStatus | undefined, now: Date): RerankerConfigStatus {
  const conditions = setConditions(
    previous?.conditions,
    [readyCondition(o), configAppliedCondition(o), progressingCondition(o), degradedCondition(o)],
    o.generation,
    now,
  );
  const versions: VersionStatus[] = o.spec.versions.map((v) => {
    const seen = o.versions[v.name];
    const routing = o.weights.versions[v.name];
    const status: VersionStatus = {
      name: v.name,
      replicas: v.enabled ? (v.autoscaling ? (seen?.pools.gpu?.desired ?? 0) : v.replicas) : 0,
      readyReplicas: seen?.pools.gpu?.ready ?? 0,
      weight: routing?.weight ?? 0,
      device: routing?.target === 'gpu' ? ((v.resources?.gpu?.count ?? 0) > 0 ? 'cuda' : 'cpu') : routing?.target === 'cpu' ? 'cpu' : 'none',
    };
    if (seen?.pools.cpu) status.fallbackReadyReplicas = seen.pools.cpu.ready;
    if (seen) status.configApplied = `${seen.appliedPods}/${seen.readyPods}`;
    const scaling = o.scaling?.[v.name];
    if (scaling) status.scaling = scaling.message;
    return status;
  });
  const { applied, ready } = podsApplied(o);
  return {
    observedGeneration: o.generation,
    conditions,
    versions,
    configHash: o.configHash,
    configApplied: `${applied}/${ready}`,
    versionNames: o.spec.versions.filter((v) => v.enabled).map((v) => v.name).join(','),
    weights: versions.filter((v) => o.spec.versions.find((s) => s.name === v.name)?.enabled).map((v) => `${v.name}=${v.weight}`).join(','),
    ...(o.rollout ? { rollout: o.rollout } : {}),
  };
}
