import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  Watch,
  dumpYaml,
  loadYaml,
  setHeaderOptions,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { JSON_SCHEMA, load } from 'js-yaml';
import { messageOf } from './failures.ts';
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
  type WatchEventType,
} from './kube.ts';

/** The longest a watch asks the server to run; client-go's reflector asks for 5–10 minutes. */
export const MAX_WATCH_SECONDS = 600;

/** client-node's Watch ends a watch that received nothing for `requestTimeoutMs` (30 s by default). */
export interface WatchInternals {
  requestTimeoutMs: number;
}
export const WATCH_INACTIVITY_MS = (MAX_WATCH_SECONDS + 30) * 1000;

/** 5 to 10 minutes at random, so watches of many kinds do not all end together. */
export function watchTimeoutSeconds(random: () => number = Math.random): number {
  return 300 + Math.floor(random() * 300);
}

/** Resource names (plurals) of the kinds the operator watches; watch paths are built from them. */
const PLURALS: Record<string, string> = {
  ConfigMap: 'configmaps',
  Service: 'services',
  Pod: 'pods',
  Deployment: 'deployments',
  HTTPRoute: 'httproutes',
  HorizontalPodAutoscaler: 'horizontalpodautoscalers',
  PodDisruptionBudget: 'poddisruptionbudgets',
  ScaledObject: 'scaledobjects',
  Lease: 'leases',
  RerankerConfig: 'rerankerconfigs',
  Event: 'events',
};

/**
 * client-node serializes every object of a built-in API group through its typed models, which name
 * some keys differently from the wire (`x_kubernetes_preserve_unknown_fields` for
 * `x-kubernetes-preserve-unknown-fields`, `_enum` for `enum`, ...) and drop keys they do not know. So a
 * plain wire object is first read into the typed model (loadYaml does exactly that for its kind), and
 * what the client then sends is the wire object again. test/operator/kube-client.test.ts checks it.
 */
export function toClientModel(object: KubeObject): KubernetesObject {
  return loadYaml(JSON.stringify(object)) as KubernetesObject;
}

/** The inverse: a typed client model back to plain wire JSON (dates as RFC 3339 strings). */
export function toWire<T extends KubeObject>(object: unknown): T {
  return load(dumpYaml(object, { lineWidth: -1 }), { schema: JSON_SCHEMA }) as T;
}

export function apiError(error: unknown, what: string): unknown {
  if (error instanceof ApiException) {
    const body = (typeof error.body === 'string' ? safeJson(error.body) : error.body) as
      | { reason?: string; message?: string; details?: { causes?: StatusCause[] } }
      | undefined;
    const reason = body?.reason ?? String(error.code);
    return new KubeApiError(error.code, reason, `${what}: ${body?.message ?? `HTTP ${error.code}`} (${error.code} ${reason})`, body?.details?.causes ?? []);
  }
  if (error instanceof Error && /^Unrecognized API version and kind/.test(error.message)) {
    return new KubeApiError(404, 'NotFound', `${what}: ${error.message}`);
  }
  const statusCode = (error as { statusCode?: number } | undefined)?.statusCode;
  if (typeof statusCode === 'number') return new KubeApiError(statusCode, String(statusCode), `${what}: ${(error as Error).message}`);
  // Not an answer from the API server (refused, timed out, TLS...): say what was being done, keep the cause.
  return new Error(`${what}: ${messageOf(error)}`, { cause: error });
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The KubeClient over @kubernetes/client-node: in-cluster or from a kubeconfig. */
export class ClientNodeKube implements KubeClient {
  readonly #objects: KubernetesObjectApi;
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  readonly #watch: Watch;
  readonly #component: string;

  constructor(config: KubeConfig, options: { component?: string } = {}) {
    this.#objects = KubernetesObjectApi.makeApiClient(config);
    this.#custom = config.makeApiClient(CustomObjectsApi);
    this.#core = config.makeApiClient(CoreV1Api);
    this.#watch = new Watch(config);
    // client-node ends a watch that has been silent this long as a failure. Watches here ask the server
    // to end them first (timeoutSeconds, at most MAX_WATCH_SECONDS), so a quiet kind is not a failing one.
    // (The field is private in client-node's types; test/operator/kube-client.test.ts checks it is there.)
    (this.#watch as unknown as WatchInternals).requestTimeoutMs = WATCH_INACTIVITY_MS;
    this.#component = options.component ?? 'rerank-operator';
  }

  async get<T extends KubeObject>(ref: ObjectRef): Promise<T | null> {
    try {
      const object = await this.#objects.read({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } });
      return toWire<T>(object);
    } catch (error) {
      const mapped = apiError(error, `get ${ref.kind} ${ref.name}`);
      if (mapped instanceof KubeApiError && mapped.code === 404) return null;
      throw mapped;
    }
  }

  async list<T extends KubeObject>(kind: KindRef, options: ListOptions = {}): Promise<ObjectList<T>> {
    try {
      const list = await this.#objects.list(kind.apiVersion, kind.kind, options.namespace, undefined, undefined, undefined, undefined, options.labelSelector);
      // Items of a list carry no apiVersion/kind on the wire; the serializer needs them to know the model.
      const items = list.items.map((item) => toWire<T>({ ...item, apiVersion: kind.apiVersion, kind: kind.kind }));
      return { items, resourceVersion: list.metadata?.resourceVersion ?? '' };
    } catch (error) {
      throw apiError(error, `list ${kind.kind}`);
    }
  }

  async watch<T extends KubeObject>(kind: KindRef, options: ListOptions & { resourceVersion: string; timeoutSeconds?: number }, callbacks: WatchCallbacks<T>): Promise<WatchHandle> {
    const plural = PLURALS[kind.kind];
    if (!plural) throw new Error(`watch ${kind.kind}: unknown resource`);
    const base = kind.apiVersion.includes('/') ? `/apis/${kind.apiVersion}` : `/api/${kind.apiVersion}`;
    const path = `${base}${options.namespace ? `/namespaces/${options.namespace}` : ''}/${plural}`;
    const timeoutSeconds = Math.min(MAX_WATCH_SECONDS, options.timeoutSeconds ?? watchTimeoutSeconds());
    const query: Record<string, string | number | boolean> = { resourceVersion: options.resourceVersion, allowWatchBookmarks: true, timeoutSeconds };
    if (options.labelSelector) query.labelSelector = options.labelSelector;
    let ended = false;
    const controller = await this.#watch.watch(
      path,
      query,
      (type: string, object: unknown) => {
        if (ended) return;
        if (type === 'ERROR') {
          const status = object as { code?: number; reason?: string; message?: string };
          ended = true;
          controller?.abort();
          callbacks.onDone(new KubeApiError(status.code ?? 500, status.reason ?? 'Error', `watch ${kind.kind}: ${status.message ?? 'error'}`));
          return;
        }
        callbacks.onEvent(type as WatchEventType, object as T);
      },
      (error: unknown) => {
        if (ended) return;
        ended = true;
        callbacks.onDone(error ? apiError(error, `watch ${kind.kind}`) : undefined);
      },
    );
    return {
      stop: () => {
        ended = true;
        controller.abort();
      },
    };
  }

  async apply<T extends KubeObject>(object: KubeObject, fieldManager: string, options: { force?: boolean } = {}): Promise<T> {
    try {
      return toWire<T>(await this.#objects.patch(toClientModel(object), undefined, undefined, fieldManager, options.force ?? true, PatchStrategy.ServerSideApply));
    } catch (error) {
      throw apiError(error, `apply ${object.kind} ${object.metadata.name}`);
    }
  }

  async create<T extends KubeObject>(object: KubeObject): Promise<T> {
    try {
      return toWire<T>(await this.#objects.create(toClientModel(object)));
    } catch (error) {
      throw apiError(error, `create ${object.kind} ${object.metadata.name}`);
    }
  }

  async replace<T extends KubeObject>(object: KubeObject): Promise<T> {
    try {
      return toWire<T>(await this.#objects.replace(toClientModel(object)));
    } catch (error) {
      throw apiError(error, `replace ${object.kind} ${object.metadata.name}`);
    }
  }

  async mergePatch<T extends KubeObject>(ref: ObjectRef, patch: Record<string, unknown>): Promise<T> {
    const metadata = { ...((patch.metadata as object | undefined) ?? {}), name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) };
    try {
      const body = { ...patch, apiVersion: ref.apiVersion, kind: ref.kind, metadata };
      return toWire<T>(await this.#objects.patch(body, undefined, undefined, this.#component, undefined, PatchStrategy.MergePatch));
    } catch (error) {
      throw apiError(error, `patch ${ref.kind} ${ref.name}`);
    }
  }

  async patchStatus<T extends KubeObject>(ref: ObjectRef, status: Record<string, unknown>): Promise<T> {
    const [group, version] = ref.apiVersion.split('/');
    const plural = PLURALS[ref.kind];
    if (!group || !version || !plural || !ref.namespace) throw new Error(`patch status of ${ref.kind} ${ref.name}: not a namespaced custom resource`);
    try {
      const result = await this.#custom.patchNamespacedCustomObjectStatus(
        { group, version, plural, namespace: ref.namespace, name: ref.name, body: { status }, fieldManager: this.#component },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return result as T;
    } catch (error) {
      throw apiError(error, `patch status of ${ref.kind} ${ref.name}`);
    }
  }

  async delete(ref: ObjectRef): Promise<boolean> {
    try {
      await this.#objects.delete({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } }, undefined, undefined, undefined, undefined, 'Background');
      return true;
    } catch (error) {
      const mapped = apiError(error, `delete ${ref.kind} ${ref.name}`);
      if (mapped instanceof KubeApiError && mapped.code === 404) return false;
      throw mapped;
    }
  }

  async createEvent(event: EventSpec): Promise<void> {
    const namespace = event.involvedObject.namespace ?? 'default';
    const now = new Date();
    try {
      await this.#core.createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${event.involvedObject.name}.`, namespace },
          involvedObject: event.involvedObject,
          type: event.type,
          reason: event.reason,
          message: event.message.slice(0, 1024),
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
          source: { component: this.#component },
          reportingComponent: this.#component,
          reportingInstance: process.env.HOSTNAME ?? this.#component,
        },
      });
    } catch (error) {
      throw apiError(error, `create Event for ${event.involvedObject.name}`);
    }
  }
}

export function loadKubeConfig(): KubeConfig {
  const config = new KubeConfig();
  config.loadFromDefault();
  return config;
}

/** Where a loaded KubeConfig points, for the startup log; `found: false` when none was found at all. */
export interface KubeConfigSummary {
  context: string;
  server: string;
  user: string;
  /** The context's namespace (in a cluster: the service account's). */
  namespace: string | undefined;
  /** false when neither $KUBECONFIG, ~/.kube/config nor an in-cluster service account was there. */
  found: boolean;
}

export function describeKubeConfig(config: KubeConfig): KubeConfigSummary {
  const context = config.getContextObject(config.getCurrentContext());
  const cluster = config.getCurrentCluster();
  const user = config.getCurrentUser();
  const server = cluster?.server ?? '';
  // loadFromDefault's last resort, when nothing was found: an unauthenticated http://localhost:8080.
  const found = !(cluster?.name === 'cluster' && server === 'http://localhost:8080' && user?.name === 'user');
  return { context: config.getCurrentContext(), server, user: user?.name ?? '', namespace: context?.namespace || undefined, found };
}
