/**
 * The small slice of the Kubernetes API the operator uses. operator/kube-client.ts implements it over
 * @kubernetes/client-node; test/operator/support/fake-kube.ts implements it in memory with the same
 * error codes (404, 409, 410, 422...), so the reconciler, informers and leader election are tested
 * without an apiserver. Objects are plain JSON, keys exactly as on the wire.
 */

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  creationTimestamp?: string;
  deletionTimestamp?: string;
  /** Server-side apply's record of who set which fields, by Apply or by Update. */
  managedFields?: ManagedFieldsEntry[];
}

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion?: string;
  time?: string;
  fieldsType?: string;
  fieldsV1?: unknown;
  subresource?: string;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMetadata;
  [field: string]: unknown;
}

/** Which kind: apiVersion + kind, as in an object. */
export interface KindRef {
  apiVersion: string;
  kind: string;
}

export interface ObjectRef extends KindRef {
  namespace?: string;
  name: string;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
}

export interface ObjectList<T extends KubeObject = KubeObject> {
  items: T[];
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchHandle {
  stop(): void;
}

export interface WatchCallbacks<T extends KubeObject = KubeObject> {
  onEvent(type: WatchEventType, object: T): void;
  /** The watch ended: normally (undefined), or with an error; a KubeApiError with code 410 means "re-list". */
  onDone(error?: unknown): void;
}

export interface EventSpec {
  involvedObject: ObjectRef & { uid?: string };
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface KubeClient {
  /** null when absent (404). */
  get<T extends KubeObject = KubeObject>(ref: ObjectRef): Promise<T | null>;
  list<T extends KubeObject = KubeObject>(kind: KindRef, options?: ListOptions): Promise<ObjectList<T>>;
  /**
   * Watch from `resourceVersion`. The server ends the watch after `timeoutSeconds` (onDone without an
   * error; the caller watches again from the last resourceVersion it saw), as client-go's reflector asks.
   */
  watch<T extends KubeObject = KubeObject>(
    kind: KindRef,
    options: ListOptions & { resourceVersion: string; timeoutSeconds?: number },
    callbacks: WatchCallbacks<T>,
  ): Promise<WatchHandle>;
  /**
   * Server-side apply of a whole object under `fieldManager`. With `force` (the default) it takes the
   * fields it sends from whoever owns them; without, a field another manager owns is a 409 whose
   * `causes` name the fields and managers.
   */
  apply<T extends KubeObject = KubeObject>(object: KubeObject, fieldManager: string, options?: { force?: boolean }): Promise<T>;
  /** Create; 409 when it exists. */
  create<T extends KubeObject = KubeObject>(object: KubeObject): Promise<T>;
  /** Update guarded by metadata.resourceVersion; 409 when it moved on. */
  replace<T extends KubeObject = KubeObject>(object: KubeObject): Promise<T>;
  /** JSON merge patch of the main resource (e.g. a pod annotation). */
  mergePatch<T extends KubeObject = KubeObject>(ref: ObjectRef, patch: Record<string, unknown>): Promise<T>;
  /** JSON merge patch of the status subresource. */
  patchStatus<T extends KubeObject = KubeObject>(ref: ObjectRef, status: Record<string, unknown>): Promise<T>;
  /** Delete; resolves false when it was already gone. */
  delete(ref: ObjectRef): Promise<boolean>;
  createEvent(event: EventSpec): Promise<void>;
}

/** One cause of an API error, as in a Status's details: e.g. a field another manager owns. */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/** An error from the API with its HTTP status: 404 not found, 409 conflict, 410 expired, 422 invalid... */
export class KubeApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly causes: StatusCause[];
  constructor(code: number, reason: string, message: string, causes: StatusCause[] = []) {
    super(message);
    this.name = 'KubeApiError';
    this.code = code;
    this.reason = reason;
    this.causes = causes;
  }
}

export function isApiError(error: unknown, code?: number): error is KubeApiError {
  return error instanceof KubeApiError && (code === undefined || error.code === code);
}

export function refOf(object: KubeObject): ObjectRef {
  const ref: ObjectRef = { apiVersion: object.apiVersion, kind: object.kind, name: object.metadata.name };
  if (object.metadata.namespace !== undefined) ref.namespace = object.metadata.namespace;
  return ref;
}

export function describeRef(ref: ObjectRef): string {
  return `${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
}

export const KINDS = {
  configMap: { apiVersion: 'v1', kind: 'ConfigMap' },
  service: { apiVersion: 'v1', kind: 'Service' },
  pod: { apiVersion: 'v1', kind: 'Pod' },
  /** Read only: the credentials and CA of a rollout's Prometheus (operator/rollout/prometheus-target.ts). */
  secret: { apiVersion: 'v1', kind: 'Secret' },
  deployment: { apiVersion: 'apps/v1', kind: 'Deployment' },
  controllerRevision: { apiVersion: 'apps/v1', kind: 'ControllerRevision' },
  httpRoute: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute' },
  horizontalPodAutoscaler: { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler' },
  podDisruptionBudget: { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget' },
  scaledObject: { apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject' },
  lease: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease' },
  rerankerConfig: { apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig' },
} as const satisfies Record<string, KindRef>;

/** The kinds the operator creates and prunes, in apply order (config before the pods that mount it). */
export const OWNED_KINDS: readonly KindRef[] = [
  KINDS.configMap, KINDS.service, KINDS.deployment, KINDS.horizontalPodAutoscaler, KINDS.scaledObject, KINDS.podDisruptionBudget, KINDS.httpRoute,
];

/**
 * Owned kinds that come with an add-on's CRDs (Gateway API, KEDA): a cluster without the add-on has no
 * such kind, and so nothing of it to list, watch or prune.
 */
export const ADD_ON_KINDS: readonly KindRef[] = [KINDS.httpRoute, KINDS.scaledObject];
