/* eslint-disable @typescript-eslint/no-explicit-any -- test helpers hand back loosely typed objects, as kubectl would */
import { isDeepStrictEqual } from 'node:util';
import {
  KubeApiError,
  type EventSpec,
  type KindRef,
  type KubeClient,
  type KubeObject,
  type ListOptions,
  type ObjectList,
  type ObjectRef,
  type StatusCause,
  type WatchCallbacks,
  type WatchHandle,
} from '../../../operator/kube.ts';
import type { AppliedConfig, PodConfigReader } from '../../../operator/pod-config.ts';
import { ANNOTATION } from '../../../operator/names.ts';

type Verb = 'get' | 'list' | 'watch' | 'apply' | 'create' | 'replace' | 'mergePatch' | 'patchStatus' | 'delete' | 'createEvent';

interface Fault {
  verb: Verb;
  match: (target: { kind: string; name?: string }) => boolean;
  error: KubeApiError;
  times: number;
}

interface Watcher {
  kind: KindRef;
  options: ListOptions;
  callbacks: WatchCallbacks;
  open: boolean;
}

const keyOf = (kind: KindRef, namespace: string | undefined, name: string) => `${kind.apiVersion}|${kind.kind}|${namespace ?? ''}|${name}`;
const clone = <T>(value: T): T => structuredClone(value);

function matchesSelector(labels: Record<string, string> | undefined, selector: string | undefined): boolean {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const [k, v] = term.split('=');
    return labels?.[k!] === v;
  });
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** A Lease's times are MicroTime: the API server refuses anything but six fractional digits. */
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;

function validate(object: KubeObject): void {
  if (object.kind !== 'Lease') return;
  const spec = (object.spec ?? {}) as Record<string, unknown>;
  for (const field of ['acquireTime', 'renewTime']) {
    const value = spec[field];
    if (value !== undefined && (typeof value !== 'string' || !MICRO_TIME.test(value))) {
      throw new KubeApiError(400, 'BadRequest', `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(value)} as "2006-01-02T15:04:05.000000Z07:00"`);
    }
  }
}

/**
 * An in-memory apiserver behind the operator's KubeClient: resourceVersions, generations, label
 * selectors, watches (which tests can expire with 410), optimistic concurrency (409), owner-reference
 * garbage collection, kinds that are not installed (404), and faults injected per verb and kind.
 * Server-side apply is modelled for a single field manager: sent fields replace, status and fields
 * it never sends (others' annotations) stay.
 */
export class FakeKube implements KubeClient {
  readonly objects = new Map<string, KubeObject>();
  readonly events: EventSpec[] = [];
  readonly calls: string[] = [];
  readonly missingKinds = new Set<string>();
  #resourceVersion = 1;
  #uid = 1;
  #faults: Fault[] = [];
  #watchers: Watcher[] = [];

  /** Make the next `times` calls of `verb` on `kind` (and name) fail with `code`. */
  fail(verb: Verb, kind: string, code: number, options: { name?: string; times?: number; message?: string; causes?: StatusCause[] } = {}): void {
    const message = options.message ?? `injected ${code}`;
    this.#faults.push({
      verb,
      match: (t) => t.kind === kind && (options.name === undefined || t.name === options.name),
      error: new KubeApiError(code, String(code), message, options.causes),
      times: options.times ?? 1,
    });
  }

  #check(verb: Verb, target: { kind: string; name?: string }): void {
    this.calls.push(`${verb} ${target.kind}${target.name ? `/${target.name}` : ''}`);
    if (this.missingKinds.has(target.kind)) throw new KubeApiError(404, 'NotFound', `the server could not find the requested resource (${target.kind})`);
    const fault = this.#faults.find((f) => f.verb === verb && f.match(target) && f.times > 0);
    if (fault) {
      fault.times -= 1;
      throw fault.error;
    }
  }

  #bump(object: KubeObject): void {
    object.metadata.resourceVersion = String(++this.#resourceVersion);
  }

  #emit(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: KubeObject): void {
    for (const w of this.#watchers) {
      if (!w.open || w.kind.kind !== object.kind || w.kind.apiVersion !== object.apiVersion) continue;
      if (w.options.namespace && w.options.namespace !== object.metadata.namespace) continue;
      if (!matchesSelector(object.metadata.labels, w.options.labelSelector)) continue;
      const copy = clone(object);
      queueMicrotask(() => w.open && w.callbacks.onEvent(type, copy));
    }
  }

  #store(object: KubeObject, type: 'ADDED' | 'MODIFIED'): KubeObject {
    this.#bump(object);
    this.objects.set(keyOf(object, object.metadata.namespace, object.metadata.name), object);
    this.#emit(type, object);
    return clone(object);
  }

  async get<T extends KubeObject>(ref: ObjectRef): Promise<T | null> {
    this.#check('get', ref);
    const found = this.objects.get(keyOf(ref, ref.namespace, ref.name));
    return found ? (clone(found) as T) : null;
  }

  async list<T extends KubeObject>(kind: KindRef, options: ListOptions = {}): Promise<ObjectList<T>> {
    this.#check('list', kind);
    const items = [...this.objects.values()].filter(
      (o) =>
        o.kind === kind.kind &&
        o.apiVersion === kind.apiVersion &&
        (!options.namespace || o.metadata.namespace === options.namespace) &&
        matchesSelector(o.metadata.labels, options.labelSelector),
    );
    return { items: clone(items) as T[], resourceVersion: String(this.#resourceVersion) };
  }

  async watch<T extends KubeObject>(kind: KindRef, options: ListOptions & { resourceVersion: string }, callbacks: WatchCallbacks<T>): Promise<WatchHandle> {
    this.#check('watch', kind);
    const watcher: Watcher = { kind, options, callbacks: callbacks as unknown as WatchCallbacks, open: true };
    this.#watchers.push(watcher);
    return { stop: () => void (watcher.open = false) };
  }

  /** End every open watch with 410 Gone, as an apiserver does when a watch's resourceVersion is too old. */
  expireWatches(): void {
    for (const w of this.#watchers.filter((x) => x.open)) {
      w.open = false;
      queueMicrotask(() => w.callbacks.onDone(new KubeApiError(410, 'Expired', 'too old resource version')));
    }
    this.#watchers = [];
  }

  get openWatches(): number {
    return this.#watchers.filter((w) => w.open).length;
  }

  async apply<T extends KubeObject>(object: KubeObject, fieldManager: string): Promise<T> {
    this.#check('apply', { kind: object.kind, name: object.metadata.name });
    if (!fieldManager) throw new KubeApiError(422, 'Invalid', 'fieldManager is required for apply');
    validate(object);
    const key = keyOf(object, object.metadata.namespace, object.metadata.name);
    const existing = this.objects.get(key);
    if (!existing) {
      const created = clone(object);
      created.metadata.uid = `uid-${this.#uid++}`;
      created.metadata.generation = 1;
      created.metadata.creationTimestamp = new Date(0).toISOString();
      return this.#store(created, 'ADDED') as T;
    }
    const next: KubeObject = { ...clone(existing), ...clone(object), metadata: clone(existing.metadata) };
    if (existing.status !== undefined) next.status = clone(existing.status);
    next.metadata.labels = { ...existing.metadata.labels, ...object.metadata.labels };
    next.metadata.annotations = { ...existing.metadata.annotations, ...object.metadata.annotations };
    if (object.metadata.ownerReferences) next.metadata.ownerReferences = clone(object.metadata.ownerReferences);
    const strip = (o: KubeObject) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
    if (isDeepStrictEqual(strip(next), strip(existing))) return clone(existing) as T;
    if (!isDeepStrictEqual(next.spec, existing.spec)) next.metadata.generation = (existing.metadata.generation ?? 1) + 1;
    return this.#store(next, 'MODIFIED') as T;
  }

  async create<T extends KubeObject>(object: KubeObject): Promise<T> {
    this.#check('create', { kind: object.kind, name: object.metadata.name });
    validate(object);
    const key = keyOf(object, object.metadata.namespace, object.metadata.name);
    if (this.objects.has(key)) throw new KubeApiError(409, 'AlreadyExists', `${object.kind} ${object.metadata.name} already exists`);
    const created = clone(object);
    created.metadata.uid = `uid-${this.#uid++}`;
    created.metadata.generation = 1;
    return this.#store(created, 'ADDED') as T;
  }

  async replace<T extends KubeObject>(object: KubeObject): Promise<T> {
    this.#check('replace', { kind: object.kind, name: object.metadata.name });
    validate(object);
    const key = keyOf(object, object.metadata.namespace, object.metadata.name);
    const existing = this.objects.get(key);
    if (!existing) throw new KubeApiError(404, 'NotFound', `${object.kind} ${object.metadata.name} not found`);
    if (object.metadata.resourceVersion !== existing.metadata.resourceVersion) {
      throw new KubeApiError(409, 'Conflict', `Operation cannot be fulfilled on ${object.kind} "${object.metadata.name}": the object has been modified`);
    }
    const next = clone(object);
    next.metadata.uid = existing.metadata.uid;
    return this.#store(next, 'MODIFIED') as T;
  }

  async mergePatch<T extends KubeObject>(ref: ObjectRef, patch: Record<string, unknown>): Promise<T> {
    this.#check('mergePatch', ref);
    const existing = this.objects.get(keyOf(ref, ref.namespace, ref.name));
    if (!existing) throw new KubeApiError(404, 'NotFound', `${ref.kind} ${ref.name} not found`);
    const { status: _ignored, ...rest } = patch;
    const next = mergePatch(existing, rest) as KubeObject;
    if (!isDeepStrictEqual(next.spec, existing.spec)) next.metadata.generation = (existing.metadata.generation ?? 1) + 1;
    return this.#store(next, 'MODIFIED') as T;
  }

  async patchStatus<T extends KubeObject>(ref: ObjectRef, status: Record<string, unknown>): Promise<T> {
    this.#check('patchStatus', ref);
    const existing = this.objects.get(keyOf(ref, ref.namespace, ref.name));
    if (!existing) throw new KubeApiError(404, 'NotFound', `${ref.kind} ${ref.name} not found`);
    const next = clone(existing);
    next.status = mergePatch(existing.status, status);
    if (isDeepStrictEqual(next.status, existing.status)) return clone(existing) as T;
    return this.#store(next, 'MODIFIED') as T;
  }

  async delete(ref: ObjectRef): Promise<boolean> {
    this.#check('delete', ref);
    return this.#remove(keyOf(ref, ref.namespace, ref.name));
  }

  /** Delete as a user would, bypassing faults: children follow through their owner references. */
  remove(ref: ObjectRef): boolean {
    return this.#remove(keyOf(ref, ref.namespace, ref.name));
  }

  #remove(key: string): boolean {
    const existing = this.objects.get(key);
    if (!existing) return false;
    this.objects.delete(key);
    this.#bump(existing);
    this.#emit('DELETED', existing);
    for (const [childKey, child] of [...this.objects]) {
      if (child.metadata.ownerReferences?.some((o) => o.uid === existing.metadata.uid)) this.#remove(childKey);
    }
    return true;
  }

  async createEvent(event: EventSpec): Promise<void> {
    this.#check('createEvent', { kind: 'Event' });
    this.events.push(clone(event));
  }

  // ---- what the cluster's own controllers and users do, for tests ----

  find<T extends KubeObject = KubeObject & { spec: any; status?: any; data?: Record<string, string> }>(kind: string, namespace: string, name: string): T | undefined {
    const found = [...this.objects.values()].find((o) => o.kind === kind && o.metadata.namespace === namespace && o.metadata.name === name);
    return found ? (clone(found) as T) : undefined;
  }

  all(kind: string): KubeObject[] {
    return [...this.objects.values()].filter((o) => o.kind === kind).map(clone);
  }

  /** A user's edit (kubectl edit): writes through, bumps generation when spec moves. */
  edit(kind: string, namespace: string, name: string, change: (o: KubeObject & { spec: any; status?: any }) => void): void {
    const found = [...this.objects.values()].find((o) => o.kind === kind && o.metadata.namespace === namespace && o.metadata.name === name);
    if (!found) throw new Error(`no ${kind} ${namespace}/${name}`);
    const before = clone(found.spec);
    change(found as KubeObject & { spec: any });
    if (!isDeepStrictEqual(before, found.spec)) found.metadata.generation = (found.metadata.generation ?? 1) + 1;
    this.#bump(found);
    this.#emit('MODIFIED', found);
  }

  /**
   * The Deployment controller and kubelet, reduced to what the operator reads: every Deployment gets
   * `ready(deployment)` ready replicas (default: all), and that many ready pods with IPs.
   */
  settleDeployments(ready: (d: KubeObject & { spec: any }) => number = (d) => d.spec.replicas): void {
    for (const d of this.all('Deployment') as Array<KubeObject & { spec: any }>) {
      const n = Math.min(ready(d), d.spec.replicas);
      this.edit('Deployment', d.metadata.namespace!, d.metadata.name, (live) => {
        live.status = { replicas: live.spec.replicas, readyReplicas: n, updatedReplicas: live.spec.replicas, observedGeneration: live.metadata.generation };
      });
      const podLabels = d.spec.template.metadata.labels as Record<string, string>;
      const existing = [...this.objects.values()].filter((o) => o.kind === 'Pod' && o.metadata.labels?.['rerank.dev/deployment'] === d.metadata.name);
      for (const pod of existing) this.#remove(keyOf(pod, pod.metadata.namespace, pod.metadata.name));
      for (let i = 0; i < d.spec.replicas; i++) {
        const pod: KubeObject = {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: {
            name: `${d.metadata.name}-${i}`,
            namespace: d.metadata.namespace!,
            uid: `uid-${this.#uid++}`,
            labels: { ...podLabels, 'rerank.dev/deployment': d.metadata.name },
            ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata.name, uid: d.metadata.uid!, controller: true }],
          },
          status: { podIP: `10.0.0.${this.#uid}`, conditions: [{ type: 'Ready', status: i < n ? 'True' : 'False' }] },
        };
        this.#store(pod, 'ADDED');
      }
    }
  }
}

/**
 * Pods that answer GET /config/hash. With `refreshOnTouch`, a pod applies the hash the operator touched onto
 * it (kubelet refreshed its volume, the server reloaded); otherwise it keeps what it last applied.
 */
export class FakePodConfigReader implements PodConfigReader {
  readonly applied = new Map<string, string>();
  readonly unreachable = new Set<string>();
  refreshOnTouch = true;
  readonly #kube: FakeKube;
  constructor(kube: FakeKube) {
    this.#kube = kube;
  }

  async read(pod: KubeObject): Promise<AppliedConfig> {
    if (this.unreachable.has(pod.metadata.name)) throw new Error(`connect ECONNREFUSED ${pod.metadata.name}`);
    const live = this.#kube.find('Pod', pod.metadata.namespace!, pod.metadata.name);
    const touched = live?.metadata.annotations?.[ANNOTATION.configHash];
    if (this.refreshOnTouch && touched) this.applied.set(pod.metadata.name, touched);
    const hash = this.applied.get(pod.metadata.name);
    if (!hash) throw new Error(`pod ${pod.metadata.name} has loaded no config yet`);
    return { hash, appliedAt: new Date(0).toISOString() };
  }
}
