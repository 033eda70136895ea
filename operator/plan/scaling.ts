import type { RerankerConfig, RerankerConfigSpec, VersionSpec } from '../crd/spec.ts';
import type { KubeObject } from '../kube.ts';
import { LABEL, names, type Pool } from '../names.ts';
import type { ScalingObservation } from '../status.ts';
import { gpuCount, PlanError } from './serving-config.ts';
import { poolMetadata, versionSelector } from './workloads.ts';

/** The server's gauges (server/metrics.ts) that `metric: queue` and `metric: inflight` scale on, per pod. */
export const POD_METRICS = { queue: 'reranker_queue_depth', inflight: 'reranker_inflight_requests' } as const;

/** How far one pool of a version may scale, after the GPU budget. */
export interface ScaleBounds {
  min: number;
  max: number;
  /** The spec's maxReplicas when spec.gpuBudget cut it down to `max`. */
  askedMax?: number;
}

/** The autoscaled pools of each enabled version, and the GPU budget's word on them. */
export interface ScalingPlan {
  bounds: Record<string, Partial<Record<Pool, ScaleBounds>>>;
  gpuBudget?: number;
}

/**
 * Replica bounds of every autoscaled pool. GPU versions share spec.gpuBudget: the pods they must run
 * (fixed replicas, autoscaling minReplicas) come first and must fit; what is left goes to the autoscaled
 * ones' headroom in spec order. CPU fallback pools use no GPUs: they scale from their replicas to the
 * version's maxReplicas.
 */
export function planScaling(spec: RerankerConfigSpec): ScalingPlan {
  const enabled = spec.versions.filter((v) => v.enabled);
  const budget = spec.gpuBudget;
  const floorOf = (v: VersionSpec) => v.autoscaling?.minReplicas ?? v.replicas;
  const floorGpus = enabled.reduce((sum, v) => sum + floorOf(v) * gpuCount(v), 0);
  if (budget !== undefined && floorGpus > budget) {
    const parts = enabled.filter((v) => gpuCount(v) > 0).map((v) => `${v.name} ${floorOf(v)}x${gpuCount(v)}`);
    throw new PlanError(`gpuBudget ${budget} is less than the ${floorGpus} GPUs the versions' replicas and autoscaling minReplicas need (${parts.join(', ')})`);
  }
  let left = budget === undefined ? Infinity : budget - floorGpus;
  const bounds: ScalingPlan['bounds'] = {};
  for (const version of enabled) {
    const scaling = version.autoscaling;
    if (!scaling) continue;
    const gpus = gpuCount(version);
    let max = scaling.maxReplicas;
    if (gpus > 0) {
      const extra = Math.min(scaling.maxReplicas - scaling.minReplicas, Math.floor(left / gpus));
      left -= extra * gpus;
      max = scaling.minReplicas + extra;
    }
    // An HPA needs maxReplicas >= 1 even where the budget leaves a scale-to-zero version none.
    const gpuBounds: ScaleBounds = { min: scaling.minReplicas, max: Math.max(max, 1) };
    if (max < scaling.maxReplicas) gpuBounds.askedMax = scaling.maxReplicas;
    const entry: Partial<Record<Pool, ScaleBounds>> = { gpu: gpuBounds };
    const fallback = version.cpuFallback?.replicas ?? 0;
    if (fallback > 0 && gpus > 0) entry.cpu = { min: fallback, max: Math.max(fallback, scaling.maxReplicas) };
    bounds[version.name] = entry;
  }
  return budget === undefined ? { bounds } : { bounds, gpuBudget: budget };
}

type Hpa = KubeObject & { status?: { conditions?: Array<{ type: string; status: string; reason?: string }> } };

/**
 * What status says of each autoscaled version: its bounds and autoscaler, the GPU budget's cut, and
 * whether that cut is what holds it now: the HPA reports ScalingLimited/TooManyReplicas when the pods
 * its metric asks for exceed maxReplicas. (A ScaledObject's HPA belongs to KEDA and is not read.)
 */
export function scalingObservations(spec: RerankerConfigSpec, scaling: ScalingPlan, hpas: readonly Hpa[]): Record<string, ScalingObservation> {
  const out: Record<string, ScalingObservation> = {};
  for (const version of spec.versions) {
    const bounds = scaling.bounds[version.name]?.gpu;
    const auto = version.autoscaling;
    if (!bounds || !auto) continue;
    const by = auto.engine === 'keda' ? 'KEDA ScaledObject' : 'HPA';
    const parts = [`${bounds.min}-${bounds.max} pods, ${by} on ${auto.metric} (target ${auto.target})`];
    let heldByBudget = false;
    if (bounds.askedMax !== undefined) {
      parts.push(`gpuBudget ${scaling.gpuBudget} caps maxReplicas at ${bounds.max} (autoscaling.maxReplicas ${bounds.askedMax})`);
      const hpa = hpas.find((h) => h.metadata.labels?.[LABEL.version] === version.name && h.metadata.labels?.[LABEL.pool] === 'gpu');
      heldByBudget = hpa?.status?.conditions?.some((c) => c.type === 'ScalingLimited' && c.status === 'True' && c.reason === 'TooManyReplicas') ?? false;
      if (heldByBudget) parts.push(`the HPA asks for more than ${bounds.max} pods: the budget, not the metric, holds scale-out`);
    }
    out[version.name] = { message: parts.join('; '), heldByBudget };
  }
  return out;
}

function targetRef(owner: string, version: string, pool: Pool) {
  return { apiVersion: 'apps/v1', kind: 'Deployment', name: names.deployment(owner, version, pool) };
}

/** A pool scaled on CPU must request CPU: utilization is a share of the request, and without one the autoscaler has none to compute. */
function requireCpuRequest(rrc: RerankerConfig, version: VersionSpec, pool: Pool): void {
  const requests = pool === 'gpu' ? version.resources?.requests : version.cpuFallback?.resources?.requests;
  if (requests?.cpu !== undefined) return;
  const field = pool === 'gpu' ? 'resources.requests.cpu' : 'cpuFallback.resources.requests.cpu';
  throw new PlanError(`version ${version.name} of ${rrc.metadata.name}: autoscaling on cpu needs ${field}`);
}

function hpaMetric(rrc: RerankerConfig, version: VersionSpec, pool: Pool): unknown {
  const scaling = version.autoscaling!;
  if (scaling.metric === 'cpu') {
    requireCpuRequest(rrc, version, pool);
    return { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: scaling.target } } };
  }
  const name = POD_METRICS[scaling.metric];
  return { type: 'Pods', pods: { metric: { name }, target: { type: 'AverageValue', averageValue: String(scaling.target) } } };
}

function kedaTrigger(rrc: RerankerConfig, version: VersionSpec, pool: Pool): unknown {
  const scaling = version.autoscaling!;
  if (scaling.metric === 'cpu') {
    requireCpuRequest(rrc, version, pool);
    return { type: 'cpu', metricType: 'Utilization', metadata: { value: String(scaling.target) } };
  }
  const deployment = names.deployment(rrc.metadata.name, version.name, pool);
  return {
    type: 'prometheus',
    metadata: {
      serverAddress: scaling.prometheusAddress!,
      query: `sum(${POD_METRICS[scaling.metric]}{namespace="${rrc.metadata.namespace}",pod=~"${deployment}-[a-z0-9]+-[a-z0-9]+"})`,
      threshold: String(scaling.target),
    },
  };
}

/** `engine: hpa`: an autoscaling/v2 HorizontalPodAutoscaler on the pool's Deployment. */
export function horizontalPodAutoscaler(rrc: RerankerConfig, version: VersionSpec, pool: Pool, bounds: ScaleBounds): KubeObject {
  const owner = rrc.metadata.name;
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: poolMetadata(rrc, version, pool),
    spec: {
      scaleTargetRef: targetRef(owner, version.name, pool),
      minReplicas: bounds.min,
      maxReplicas: bounds.max,
      metrics: [hpaMetric(rrc, version, pool)],
    },
  };
}

/**
 * `engine: keda`: a KEDA ScaledObject. The queue or in-flight gauge is read from Prometheus, summed over the pool's pods
 * (pod names are <deployment>-<replicaset hash>-<suffix>, which keeps a version's -cpu pods apart);
 * KEDA divides it by the target per pod, like the HPA's AverageValue.
 */
export function scaledObject(rrc: RerankerConfig, version: VersionSpec, pool: Pool, bounds: ScaleBounds): KubeObject {
  const deployment = names.deployment(rrc.metadata.name, version.name, pool);
  return {
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: poolMetadata(rrc, version, pool),
    spec: {
      scaleTargetRef: { name: deployment },
      minReplicaCount: bounds.min,
      maxReplicaCount: bounds.max,
      triggers: [kedaTrigger(rrc, version, pool)],
    },
  };
}

/** The autoscaler of an autoscaled pool: a ScaledObject with engine keda, else an HPA. */
export function autoscaler(rrc: RerankerConfig, version: VersionSpec, pool: Pool, bounds: ScaleBounds): KubeObject {
  return version.autoscaling?.engine === 'keda' ? scaledObject(rrc, version, pool, bounds) : horizontalPodAutoscaler(rrc, version, pool, bounds);
}

/** A policy/v1 PodDisruptionBudget per Deployment: a node drain takes at most maxUnavailable of its pods at once. */
export function podDisruptionBudget(rrc: RerankerConfig, version: VersionSpec, pool: Pool): KubeObject {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: poolMetadata(rrc, version, pool),
    spec: { maxUnavailable: version.disruption.maxUnavailable, selector: { matchLabels: versionSelector(rrc.metadata.name, version.name, pool) } },
  };
}
