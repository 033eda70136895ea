import { describeRef, isApiError, refOf, type KubeClient, type KubeObject, type StatusCause } from './kube.ts';
import { FIELD_MANAGER, REPLICAS_HANDOVER_MANAGER } from './names.ts';

/** A field of a child that another manager declared by server-side apply, and who. */
export interface FieldOwner {
  field: string;
  manager: string;
}

/** Another manager applied fields the operator wants to set: reported, never taken from it. */
export class FieldConflict extends Error {
  readonly owners: FieldOwner[];
  constructor(object: KubeObject, owners: FieldOwner[]) {
    const list = owners.map((o) => `${o.field} (applied by "${o.manager}")`).join(', ');
    super(`${describeRef(refOf(object))}: ${list}: another manager applied ${owners.length === 1 ? 'this field' : 'these fields'}; the operator leaves ${owners.length === 1 ? 'it' : 'them'} alone until that manager stops applying ${owners.length === 1 ? 'it' : 'them'}`);
    this.name = 'FieldConflict';
    this.owners = owners;
  }
}

/** `conflict with "kubectl-patch" using v1: .data.a` → the manager's name. */
function ownerOf(cause: StatusCause): FieldOwner | undefined {
  const manager = /conflict with "([^"]+)"/.exec(cause.message ?? '')?.[1];
  return manager ? { manager, field: cause.field ?? '?' } : undefined;
}

/**
 * Server-side apply of one child, without forcing first. A field another manager holds is then a 409
 * naming it, and who holds it decides:
 * - set by an Update (kubectl edit, patch, scale; a script's PUT): drift from the spec, so the apply
 *   is repeated with force and the spec's value comes back;
 * - declared by another Apply (another controller, `kubectl apply --server-side`): a standing claim.
 *   Forcing would start a tug of war, each writing in turn, so it is reported as a FieldConflict and
 *   the rest of the object is left as it is.
 */
export async function applyChild(kube: KubeClient, object: KubeObject): Promise<KubeObject> {
  try {
    return await kube.apply(object, FIELD_MANAGER, { force: false });
  } catch (error) {
    if (!isApiError(error, 409) || error.causes.length === 0) throw error;
    const owners = error.causes.map(ownerOf).filter((o): o is FieldOwner => o !== undefined);
    const live = await kube.get(refOf(object));
    // The handover manager is the operator's own (see handOverReplicas): never a standing claim against it.
    const applied = owners.filter(
      (o) => o.manager !== REPLICAS_HANDOVER_MANAGER && live?.metadata.managedFields?.some((m) => m.manager === o.manager && m.operation === 'Apply'),
    );
    if (applied.length > 0) throw new FieldConflict(object, applied);
    return kube.apply(object, FIELD_MANAGER, { force: true });
  }
}

type Scalable = KubeObject & { spec?: { replicas?: number } };

/**
 * Before the operator first applies a Deployment without spec.replicas (an autoscaler took it over),
 * the field it owned is handed to a second manager at its live value. Server-side apply removes a
 * field its only applier stops sending, and the Deployment's default would put it back at 1 pod until
 * the autoscaler scales up again; co-owned, it keeps its value, and the autoscaler's first write of
 * the scale takes it over (an Update moves ownership). This is the handover the Kubernetes docs give
 * for moving a Deployment to an HPA with server-side apply.
 */
export async function handOverReplicas(kube: KubeClient, desired: KubeObject, live: Scalable | undefined): Promise<void> {
  if (desired.kind !== 'Deployment' || (desired as Scalable).spec?.replicas !== undefined) return;
  const replicas = live?.spec?.replicas;
  if (replicas === undefined || !live?.metadata.managedFields?.some((m) => m.manager === FIELD_MANAGER && m.operation === 'Apply' && ownsReplicas(m.fieldsV1))) return;
  const { apiVersion, kind, metadata } = desired;
  await kube.apply({ apiVersion, kind, metadata: { name: metadata.name, namespace: metadata.namespace }, spec: { replicas } }, REPLICAS_HANDOVER_MANAGER, { force: true });
}

function ownsReplicas(fieldsV1: unknown): boolean {
  const spec = (fieldsV1 as { 'f:spec'?: Record<string, unknown> } | undefined)?.['f:spec'];
  return spec !== undefined && 'f:replicas' in spec;
}
