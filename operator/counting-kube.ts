import type { Counter } from 'prom-client';
import { failureKind } from './failures.ts';
import type { EventSpec, KindRef, KubeClient, KubeObject, ListOptions, ObjectList, ObjectRef, WatchCallbacks, WatchHandle } from './kube.ts';

/**
 * A KubeClient that counts every failed call in `rerank_operator_api_errors_total{verb,kind,code}`
 * and passes the error on unchanged: whoever called decides whether it is retried, reported in
 * status or logged; the count is there whatever they decide.
 */
export class CountingKube implements KubeClient {
  readonly #kube: KubeClient;
  readonly #errors: Counter<'verb' | 'kind' | 'code'>;

  constructor(kube: KubeClient, errors: Counter<'verb' | 'kind' | 'code'>) {
    this.#kube = kube;
    this.#errors = errors;
  }

  async #count<T>(verb: string, kind: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      this.#errors.inc({ verb, kind, code: failureKind(error).split(' ')[0] ?? 'unknown' });
      throw error;
    }
  }

  get<T extends KubeObject = KubeObject>(ref: ObjectRef): Promise<T | null> {
    return this.#count('get', ref.kind, () => this.#kube.get<T>(ref));
  }
  list<T extends KubeObject = KubeObject>(kind: KindRef, options?: ListOptions): Promise<ObjectList<T>> {
    return this.#count('list', kind.kind, () => this.#kube.list<T>(kind, options));
  }
  watch<T extends KubeObject = KubeObject>(kind: KindRef, options: ListOptions & { resourceVersion: string; timeoutSeconds?: number }, callbacks: WatchCallbacks<T>): Promise<WatchHandle> {
    return this.#count('watch', kind.kind, () => this.#kube.watch<T>(kind, options, callbacks));
  }
  apply<T extends KubeObject = KubeObject>(object: KubeObject, fieldManager: string, options?: { force?: boolean }): Promise<T> {
    return this.#count('apply', object.kind, () => this.#kube.apply<T>(object, fieldManager, options));
  }
  create<T extends KubeObject = KubeObject>(object: KubeObject): Promise<T> {
    return this.#count('create', object.kind, () => this.#kube.create<T>(object));
  }
  replace<T extends KubeObject = KubeObject>(object: KubeObject): Promise<T> {
    return this.#count('replace', object.kind, () => this.#kube.replace<T>(object));
  }
  mergePatch<T extends KubeObject = KubeObject>(ref: ObjectRef, patch: Record<string, unknown>): Promise<T> {
    return this.#count('patch', ref.kind, () => this.#kube.mergePatch<T>(ref, patch));
  }
  patchStatus<T extends KubeObject = KubeObject>(ref: ObjectRef, status: Record<string, unknown>): Promise<T> {
    return this.#count('patchStatus', ref.kind, () => this.#kube.patchStatus<T>(ref, status));
  }
  delete(ref: ObjectRef): Promise<boolean> {
    return this.#count('delete', ref.kind, () => this.#kube.delete(ref));
  }
  createEvent(event: EventSpec): Promise<void> {
    return this.#count('create', 'Event', () => this.#kube.createEvent(event));
  }
}
