import { API_VERSION, KIND } from './crd/spec.ts';

/** The one field manager every server-side apply of this operator uses. */
export const FIELD_MANAGER = 'rerank-operator';
export const MANAGED_BY = 'rerank-operator';
/** Holds an autoscaled Deployment's replicas for a moment while the operator lets go of them (operator/apply.ts handOverReplicas). */
export const REPLICAS_HANDOVER_MANAGER = 'rerank-operator-handover';

export const LABEL = {
  name: 'app.kubernetes.io/name',
  component: 'app.kubernetes.io/component',
  managedBy: 'app.kubernetes.io/managed-by',
  /** Name of the owning RerankerConfig: the label owned objects are found (and pruned) by. */
  owner: 'rerank.dev/owner',
  version: 'rerank.dev/version',
  /** `gpu` for a version's main pods (which may be CPU-only), `cpu` for its CPU fallback pods. */
  pool: 'rerank.dev/pool',
} as const;

export const ANNOTATION = {
  /** Touched on version pods when their config changes, so kubelet refreshes the mounted ConfigMap at once. */
  configHash: 'rerank.dev/config-hash',
} as const;

export const SERVER_PORT = 8080;
export const CONFIG_DIR = '/etc/rerank';
export const MODELS_DIR = '/models';

export type Pool = 'gpu' | 'cpu';

export const names = {
  configMap: (owner: string) => `${owner}-config`,
  deployment: (owner: string, version: string, pool: Pool) => (pool === 'gpu' ? `${owner}-${version}` : `${owner}-${version}-cpu`),
  service: (owner: string, version: string, pool: Pool) => (pool === 'gpu' ? `${owner}-${version}` : `${owner}-${version}-cpu`),
  router: (owner: string) => `${owner}-router`,
  /** The router's Service takes the resource's own name: it is what clients call. */
  routerService: (owner: string) => owner,
  httpRoute: (owner: string) => owner,
  /** ConfigMap key a version's pods load. */
  versionConfigKey: (version: string, pool: Pool) => (pool === 'gpu' ? `version-${version}.yaml` : `version-${version}.cpu.yaml`),
  routerConfigKey: 'router.yaml',
  fullConfigKey: 'config.yaml',
};

/** Labels every owned object carries. */
export function ownerLabels(owner: string): Record<string, string> {
  return { [LABEL.name]: 'reranker', [LABEL.managedBy]: MANAGED_BY, [LABEL.owner]: owner };
}

export function ownerSelector(owner: string): string {
  return `${LABEL.managedBy}=${MANAGED_BY},${LABEL.owner}=${owner}`;
}

export function ownerReference(owner: { name: string; uid?: string }) {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: owner.name,
    uid: owner.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}
