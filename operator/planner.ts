import type { RerankerConfig } from './crd/spec.ts';
import type { KubeObject } from './kube.ts';
import { checkModelSources } from './plan/model-source.ts';
import { httpRoute } from './plan/routing.ts';
import { autoscaler, planScaling, podDisruptionBudget, type ScalingPlan } from './plan/scaling.ts';
import { poolsOf, renderServingConfig, type RenderedConfig } from './plan/serving-config.ts';
import { configMap, routerDeployment, routerService, versionDeployment, versionService, type Images } from './plan/workloads.ts';
import { weightsInEffect, type Availability, type WeightPlan } from './weights.ts';

export type { Images } from './plan/workloads.ts';
export { PlanError } from './plan/serving-config.ts';

export interface Plan {
  objects: KubeObject[];
  weights: WeightPlan;
  config: RenderedConfig;
  scaling: ScalingPlan;
}

/**
 * Every object a RerankerConfig should own, whole (server-side apply sends whole objects), in apply
 * order: the ConfigMap before the pods that mount it, Services before the routes that point at them.
 * Pure: the same spec and readiness give the same objects. `availability` (ready replicas per version)
 * decides the weights in effect; nothing else observed enters the plan.
 */
export function plan(rrc: RerankerConfig, images: Images, availability: Availability): Plan {
  return planWithWeights(rrc, images, weightsInEffect(rrc.spec, availability));
}

/** The same plan with the weights in effect given, e.g. held from the last complete observation. */
export function planWithWeights(rrc: RerankerConfig, images: Images, weights: WeightPlan): Plan {
  checkModelSources(rrc.spec);
  const config = renderServingConfig(rrc, weights);
  const enabled = rrc.spec.versions.filter((v) => v.enabled);
  const objects: KubeObject[] = [configMap(rrc, Object.fromEntries(config.files.map((f) => [f.key, f.text])))];
  for (const version of enabled) {
    for (const pool of poolsOf(version)) objects.push(versionService(rrc, version, pool));
  }
  if (rrc.spec.routing.mode === 'router') objects.push(routerService(rrc));
  const scaling = planScaling(rrc.spec);
  for (const version of enabled) {
    for (const pool of poolsOf(version)) {
      objects.push(versionDeployment(rrc, version, pool, images));
      const bounds = scaling.bounds[version.name]?.[pool];
      if (bounds) objects.push(autoscaler(rrc, version, pool, bounds));
      objects.push(podDisruptionBudget(rrc, version, pool));
    }
  }
  if (rrc.spec.routing.mode === 'router') objects.push(routerDeployment(rrc, images));
  else objects.push(httpRoute(rrc, weights));
  return { objects, weights, config, scaling };
}

export function planDesiredObjects(rrc: RerankerConfig, images: Images, availability: Availability): KubeObject[] {
  return plan(rrc, images, availability).objects;
}
