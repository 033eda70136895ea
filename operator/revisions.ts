import { createHash } from 'node:crypto';
import { stableStringify } from '../server/config/load.ts';
import type { Clock } from './clock.ts';
import { KIND, type RerankerConfigObject, type RerankerConfigSpecInput } from './crd/spec.ts';
import { describeRef, isApiError, KINDS, refOf, type KubeClient, type KubeObject, type ManagedFieldsEntry } from './kube.ts';
import { ownerLabels, ownerReference, ownerSelector } from './names.ts';

/** `kubectl annotate rrc NAME rerank.dev/rollback-to=<revision number or name>`: read once, then removed. */
export const ROLLBACK_ANNOTATION = 'rerank.dev/rollback-to';
export const DEFAULT_REVISION_HISTORY_LIMIT = 10;

/** What a ControllerRevision of a RerankerConfig keeps: the spec that rendered a config, and who wrote it. */
export interface RevisionData {
  spec: RerankerConfigSpecInput;
  /** Hash of the spec as written (keys sorted): what the revision's name is made from. */
  specHash: string;
  /** status.configHash when the revision was recorded: the config.yaml rendered from it, with the weights then in effect. */
  configHash: string;
  /** The field manager of the newest change to the spec (metadata.managedFields), when the apiserver said. */
  manager?: string;
  appliedAt: string;
}

export type ConfigRevision = KubeObject & { revision: number; data: RevisionData };

export interface RevisionEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** The outcome of a rollback-to annotation: the object as patched (spec restored), and what to tell people. */
export interface Rollback {
  object?: RerankerConfigObject;
  event: RevisionEvent;
}

type Owner = Pick<RerankerConfigObject, 'metadata'>;

/**
 * Hash of a spec as written, keys sorted. Revisions are told apart by it rather than by the rendered
 * config's hash, which also moves with the weights in effect (a version without ready pods gives its
 * share away; a rollout steps): those are not config changes anyone could roll back to.
 */
export function specHash(spec: RerankerConfigSpecInput): string {
  return createHash('sha256').update(stableStringify(spec)).digest('hex');
}

/** ControllerRevision name of a spec: the owner's name and the first 10 characters of the spec's hash. */
export function revisionName(owner: string, hash: string): string {
  return `${owner}-${hash.slice(0, 10)}`;
}

/**
 * The field manager that changed the spec last: of the managedFields entries on the main resource that
 * own a field under spec, the one with the newest time. Undefined when none says.
 */
export function specManager(managedFields: ManagedFieldsEntry[] | undefined): string | undefined {
  let newest: ManagedFieldsEntry | undefined;
  for (const entry of managedFields ?? []) {
    if (entry.subresource) continue;
    const fields = entry.fieldsV1;
    if (!fields || typeof fields !== 'object' || !('f:spec' in fields)) continue;
    if (!newest || (entry.time ?? '') >= (newest.time ?? '')) newest = entry;
  }
  return newest?.manager;
}

/**
 * A JSON merge patch (RFC 7386) that turns `current` into `target`: keys `target` lacks are set to null,
 * objects are patched key by key, anything else (arrays included) is replaced whole.
 */
export function replacingPatch(current: unknown, target: unknown): unknown {
  if (!isPlainObject(current) || !isPlainObject(target)) return target;
  const patch: Record<string, unknown> = {};
  for (const key of Object.keys(current)) if (!(key in target)) patch[key] = null;
  for (const [key, value] of Object.entries(target)) patch[key] = replacingPatch(current[key], value);
  return patch;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A RerankerConfig's config history: one ControllerRevision per rendered config it applied, numbered in
 * order, the oldest pruned beyond spec.revisionHistoryLimit; and the rollback-to annotation that restores
 * a kept revision's spec.
 */
export class ConfigHistory {
  readonly #kube: KubeClient;
  readonly #clock: Clock;

  constructor(deps: { kube: KubeClient; clock: Clock }) {
    this.#kube = deps.kube;
    this.#clock = deps.clock;
  }

  /** The revisions this resource controls, oldest first. */
  async list(owner: Owner): Promise<ConfigRevision[]> {
    const list = await this.#kube.list<ConfigRevision>(KINDS.controllerRevision, {
      namespace: owner.metadata.namespace,
      labelSelector: ownerSelector(owner.metadata.name),
    });
    return list.items
      .filter((r) => r.metadata.ownerReferences?.some((o) => o.kind === KIND && o.uid === owner.metadata.uid && o.controller))
      .sort((a, b) => a.revision - b.revision);
  }

  /**
   * Records that the object's spec is applied (rendering `configHash`): a new revision when no kept one
   * has this spec, else the kept one becomes the newest again (its number moves up, as a Deployment's
   * rollback does with its ReplicaSet). Prunes the oldest beyond `limit`. Returns the name of the
   * current revision.
   */
  async record(object: RerankerConfigObject, configHash: string, limit: number): Promise<string> {
    const revisions = await this.list(object);
    const hash = specHash(object.spec);
    const name = revisionName(object.metadata.name, hash);
    const highest = revisions.at(-1)?.revision ?? 0;
    const kept = revisions.find((r) => r.metadata.name === name);
    let current: ConfigRevision;
    if (kept && kept.revision === highest) {
      current = kept;
    } else if (kept) {
      // The data of a ControllerRevision is immutable; its revision number is not.
      current = await this.#kube.mergePatch<ConfigRevision>(refOf(kept), { revision: highest + 1 });
    } else {
      const manager = specManager(object.metadata.managedFields);
      const data: RevisionData = { spec: object.spec, specHash: hash, configHash, ...(manager ? { manager } : {}), appliedAt: this.#clock.now().toISOString() };
      current = await this.#kube.create<ConfigRevision>({
        ...KINDS.controllerRevision,
        metadata: {
          name,
          namespace: object.metadata.namespace,
          labels: ownerLabels(object.metadata.name),
          ownerReferences: [ownerReference(object.metadata)],
        },
        revision: highest + 1,
        data,
      });
    }
    const others = revisions.filter((r) => r.metadata.name !== name);
    for (const old of others.slice(0, Math.max(0, others.length - (limit - 1)))) {
      await this.#kube.delete(refOf(old));
    }
    return current.metadata.name;
  }

  /**
   * Carries out the rollback-to annotation, if any: the spec of the revision it names (by number or by
   * name) replaces the spec, and the annotation goes in the same patch. A revision not kept, or a spec
   * the apiserver no longer accepts, is a Warning and the annotation is removed all the same.
   */
  async rollback(object: RerankerConfigObject): Promise<Rollback | undefined> {
    const value = object.metadata.annotations?.[ROLLBACK_ANNOTATION];
    if (value === undefined) return undefined;
    const ref = refOf(object as unknown as KubeObject);
    const removeAnnotation = { metadata: { annotations: { [ROLLBACK_ANNOTATION]: null } } };
    const revisions = await this.list(object);
    const wanted = value.trim();
    const found = /^\d+$/.test(wanted) ? revisions.find((r) => r.revision === Number(wanted)) : revisions.find((r) => r.metadata.name === wanted);
    if (!found) {
      await this.#kube.mergePatch(ref, removeAnnotation);
      const kept = revisions.map((r) => `${r.revision} (${r.metadata.name})`).join(', ') || 'none';
      return { event: { type: 'Warning', reason: 'RollbackRevisionUnknown', message: `${ROLLBACK_ANNOTATION}=${value} names no kept revision; kept: ${kept}; annotation removed` } };
    }
    const from = `revision ${found.revision} (${found.metadata.name}, config ${found.data.configHash}${found.data.manager ? `, spec by ${found.data.manager}` : ''})`;
    try {
      const patched = await this.#kube.mergePatch<RerankerConfigObject & KubeObject>(ref, { ...removeAnnotation, spec: replacingPatch(object.spec, found.data.spec) });
      return { object: patched, event: { type: 'Normal', reason: 'RolledBackTo', message: `spec restored from ${from}` } };
    } catch (error) {
      // The CRD moved on since: the old spec is no longer valid. Retrying cannot help; say so and let go.
      if (!isApiError(error, 422)) throw error;
      await this.#kube.mergePatch(ref, removeAnnotation);
      return { event: { type: 'Warning', reason: 'RollbackRefused', message: `${describeRef(ref)}: the spec of ${from} is not accepted: ${error.message}; annotation removed` } };
    }
  }
}
