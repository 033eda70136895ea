import type { RerankerConfig } from '../crd/spec.ts';
import type { KubeObject } from '../kube.ts';
import { LABEL, SERVER_PORT, names, ownerLabels, ownerReference } from '../names.ts';
import { servingPool, type WeightPlan } from '../weights.ts';

/**
 * Gateway mode: one HTTPRoute. A header-match rule per enabled version pins requests that name it
 * (the more specific match wins over the catch-all); the catch-all rule splits the rest by the weights
 * in effect, so a version with no ready endpoints is never a weighted backend.
 */
export function httpRoute(rrc: RerankerConfig, weights: WeightPlan): KubeObject {
  const owner = rrc.metadata.name;
  const { routing } = rrc.spec;
  const enabled = rrc.spec.versions.filter((v) => v.enabled);
  const backend = (version: string) => ({ group: '', kind: 'Service', name: names.service(owner, version, servingPool(weights, version)), port: SERVER_PORT });
  const pinned = enabled.map((v) => ({
    matches: [{ headers: [{ type: 'Exact', name: routing.headerName, value: v.name }] }],
    backendRefs: [{ ...backend(v.name), weight: 1 }],
  }));
  const weighted = enabled
    .filter((v) => (weights.versions[v.name]?.weight ?? 0) > 0)
    .map((v) => ({ ...backend(v.name), weight: weights.versions[v.name]?.weight ?? 0 }));
  // With nothing ready, the catch-all keeps the default version at weight 0: the gateway answers 500
  // instead of sending traffic to pods that cannot take it.
  const catchAll = weighted.length > 0 ? weighted : [{ ...backend(rrc.spec.defaultVersion), weight: 0 }];
  const spec: Record<string, unknown> = {
    parentRefs: (routing.gateway?.parentRefs ?? []).map((ref) => ({ ...ref })),
    rules: [...pinned, { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: catchAll }],
  };
  if (routing.gateway?.hostnames?.length) spec.hostnames = routing.gateway.hostnames;
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: {
      name: names.httpRoute(owner),
      namespace: rrc.metadata.namespace,
      labels: { ...ownerLabels(owner), [LABEL.component]: 'routing' },
      ownerReferences: [ownerReference(rrc.metadata)],
    },
    spec,
  };
}
