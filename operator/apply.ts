import { describeRef, isApiError, refOf, type KubeClient, type KubeObject, type StatusCause } from './kube.ts';
import { FIELD_MANAGER } from './names.ts';

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
    const applied = owners.filter((o) => live?.metadata.managedFields?.some((m) => m.manager === o.manager && m.operation === 'Apply'));
    if (applied.length > 0) throw new FieldConflict(object, applied);
    return kube.apply(object, FIELD_MANAGER, { force: true });
  }
}
