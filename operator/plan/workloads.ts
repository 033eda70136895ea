import type { RerankerConfig, VersionSpec } from '../crd/spec.ts';
import type { KubeObject } from '../kube.ts';
import { CONFIG_DIR, LABEL, MODELS_DIR, SERVER_PORT, names, ownerLabels, ownerReference, type Pool } from '../names.ts';
import { gpuCount } from './serving-config.ts';

/** Images the operator runs unless the resource overrides them (spec.images). */
export interface Images {
  server: string;
  /** Runs `rerank-server models pull`; defaults to the server image. */
  modelFetcher?: string;
  pullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
}

const RUN_AS = 65532;

const containerSecurity = {
  runAsNonRoot: true,
  runAsUser: RUN_AS,
  runAsGroup: RUN_AS,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

const podSecurity = { runAsNonRoot: true, fsGroup: RUN_AS, seccompProfile: { type: 'RuntimeDefault' } };

export function effectiveImages(rrc: RerankerConfig, defaults: Images): Required<Pick<Images, 'server' | 'modelFetcher'>> & Images {
  const server = rrc.spec.images?.server ?? defaults.server;
  const pullPolicy = rrc.spec.images?.pullPolicy ?? defaults.pullPolicy;
  return {
    server,
    modelFetcher: rrc.spec.images?.modelFetcher ?? defaults.modelFetcher ?? server,
    ...(pullPolicy ? { pullPolicy } : {}),
  };
}

function metadata(rrc: RerankerConfig, name: string, labels: Record<string, string>) {
  return {
    name,
    namespace: rrc.metadata.namespace,
    labels: { ...ownerLabels(rrc.metadata.name), ...labels },
    ownerReferences: [ownerReference(rrc.metadata)],
  };
}

/** Metadata of an object that serves one version pool's Deployment (its HPA, ScaledObject, PodDisruptionBudget): the Deployment's name and labels. */
export function poolMetadata(rrc: RerankerConfig, version: VersionSpec, pool: Pool) {
  const owner = rrc.metadata.name;
  return metadata(rrc, names.deployment(owner, version.name, pool), { ...versionSelector(owner, version.name, pool), [LABEL.component]: 'server' });
}

export function versionSelector(owner: string, version: string, pool: Pool): Record<string, string> {
  return { [LABEL.owner]: owner, [LABEL.version]: version, [LABEL.pool]: pool };
}

const probes = {
  readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 5, failureThreshold: 3 },
  livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 3, timeoutSeconds: 5 },
  // Loading and warming a model can take minutes; liveness waits for the first /healthz.
  startupProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 5, failureThreshold: 120 },
};

/**
 * Shutdown, matched to the server's drain (server/http/listen.ts close()): on SIGTERM it fails readiness,
 * stops accepting connections, closes idle keep-alive ones, finishes every request in flight within
 * `serving.drainTimeoutMs` (read from the mounted config), then frees its sessions and exits. The preStop
 * sleep comes first, so that endpoint controllers, kube-proxy, the router and gateways stop sending new
 * requests to a pod that is going away before it stops listening (they learn of it through the API, a few
 * seconds late). kubelet counts the grace period from before preStop, so it is the sleep, the drain, and a
 * margin for releasing the models and exiting: SIGKILL never comes while the server still drains.
 */
export const PRESTOP_SLEEP_SECONDS = 10;
export const EXIT_MARGIN_SECONDS = 5;

/** The pods' terminationGracePeriodSeconds for the resource's drain time (60 s for the default 45 s drain). */
export function terminationGracePeriodSeconds(rrc: RerankerConfig): number {
  return PRESTOP_SLEEP_SECONDS + Math.ceil(rrc.spec.serving.drainTimeoutMs / 1000) + EXIT_MARGIN_SECONDS;
}

/** Pods of one Deployment spread over nodes and zones; soft, so scale-out never waits for a node in another zone. */
function topologySpread(selector: Record<string, string>) {
  return ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: selector },
    // Only the pods of the current rollout count: old ReplicaSet pods on their way out do not skew it.
    matchLabelKeys: ['pod-template-hash'],
  }));
}

/** `pvc://<claim>/<path>` is read from the claim mounted read-only at /mnt/pvc/<claim>. */
export function pvcClaimOf(source: string): string | undefined {
  const match = /^pvc:\/\/([^/]+)/.exec(source);
  return match?.[1];
}

/** The hub token reaches `models pull` as HF_TOKEN straight from the Secret: kubelet resolves it, never the operator. */
function modelPullEnv(version: VersionSpec): { env?: unknown[] } {
  const ref = version.model.tokenSecretRef;
  if (!ref) return {};
  const secretKeyRef = { name: ref.name, key: ref.key, ...(ref.optional !== undefined ? { optional: ref.optional } : {}) };
  return { env: [{ name: 'HF_TOKEN', valueFrom: { secretKeyRef } }] };
}

/**
 * The export the init container fetches: `--variant` for sources that go through the hub (hf:// and
 * catalogue ids; the other sources bring whatever files they hold, and pull ignores the flag for them).
 * A configured variant is passed as it is. `auto` is passed on CPU pods, where `models pull` decides on the
 * pod's own node by the same rule the server applies (int8 on CPUs with VNNI/AMX when the catalogue lists an
 * int8 export, else fp32); on GPU pods it fetches fp32, as before: pull decides for a CPU, and an int8 export
 * alone would leave a CUDA session nothing better to run.
 */
export function modelPullVariantArgs(version: VersionSpec, pool: Pool): string[] {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(version.model.source)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'hf') return [];
  if (version.variant !== 'auto') return ['--variant', version.variant];
  const onGpu = pool === 'gpu' && gpuCount(version) > 0;
  return onGpu ? [] : ['--variant', 'auto'];
}

/**
 * One Deployment per (version, pool). The pod template carries nothing that changes with the serving
 * knobs: those arrive through the mounted ConfigMap and are hot-reloaded, so a knob change restarts no pod.
 */
export function versionDeployment(rrc: RerankerConfig, version: VersionSpec, pool: Pool, images: Images): KubeObject {
  const owner = rrc.metadata.name;
  const image = effectiveImages(rrc, images);
  const selector = versionSelector(owner, version.name, pool);
  // Pods carry the owner labels too: the operator finds a resource's pods by them.
  const labels = { ...ownerLabels(owner), ...selector, [LABEL.component]: 'server' };
  const gpus = pool === 'gpu' ? gpuCount(version) : 0;
  const gpuResource = version.resources?.gpu?.resourceName ?? 'nvidia.com/gpu';
  const cpuResources = pool === 'gpu' ? version.resources : version.cpuFallback?.resources;
  const requests: Record<string, string | number> = { ...(cpuResources?.requests ?? {}) };
  const limits: Record<string, string | number> = { ...(cpuResources?.limits ?? {}) };
  if (gpus > 0) {
    requests[gpuResource] = gpus;
    limits[gpuResource] = gpus;
  }
  const modelDir = `${MODELS_DIR}/${version.name}`;
  const claim = pvcClaimOf(version.model.source);
  const pullPolicy = image.pullPolicy ? { imagePullPolicy: image.pullPolicy } : {};
  const podSpec: Record<string, unknown> = {
    securityContext: podSecurity,
    automountServiceAccountToken: false,
    terminationGracePeriodSeconds: terminationGracePeriodSeconds(rrc),
    initContainers: [
      {
        name: 'model',
        image: image.modelFetcher,
        ...pullPolicy,
        command: ['rerank-server'],
        args: [
          'models', 'pull', version.model.source, '--dir', modelDir,
          ...(version.model.sha256 ? ['--sha256', version.model.sha256] : []),
          ...modelPullVariantArgs(version, pool),
        ],
        ...modelPullEnv(version),
        securityContext: containerSecurity,
        volumeMounts: [
          { name: 'models', mountPath: MODELS_DIR },
          { name: 'tmp', mountPath: '/tmp' },
          ...(claim ? [{ name: 'model-source', mountPath: `/mnt/pvc/${claim}`, readOnly: true }] : []),
        ],
      },
    ],
    containers: [
      {
        name: 'server',
        image: image.server,
        ...pullPolicy,
        command: ['rerank-server'],
        args: ['start', '--config', `${CONFIG_DIR}/${names.versionConfigKey(version.name, pool)}`, '--port', String(SERVER_PORT)],
        ports: [{ name: 'http', containerPort: SERVER_PORT, protocol: 'TCP' }],
        ...probes,
        lifecycle: { preStop: { sleep: { seconds: PRESTOP_SLEEP_SECONDS } } },
        resources: { ...(Object.keys(requests).length ? { requests } : {}), ...(Object.keys(limits).length ? { limits } : {}) },
        securityContext: containerSecurity,
        volumeMounts: [
          // The whole directory, never subPath: kubelet swaps the ..data symlink and the server sees it.
          { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
          { name: 'models', mountPath: MODELS_DIR, readOnly: true },
          { name: 'tmp', mountPath: '/tmp' },
        ],
      },
    ],
    volumes: [
      { name: 'config', configMap: { name: names.configMap(owner) } },
      { name: 'models', emptyDir: {} },
      // Also the server's state directory (/tmp/rerank-server, its default): the last good config, which a
      // restarted container starts on when the mounted ConfigMap is broken. An emptyDir outlives container restarts.
      { name: 'tmp', emptyDir: {} },
      ...(claim ? [{ name: 'model-source', persistentVolumeClaim: { claimName: claim, readOnly: true } }] : []),
    ],
  };
  if (pool === 'gpu' && version.nodeSelector) podSpec.nodeSelector = version.nodeSelector;
  if (pool === 'gpu' && version.tolerations) podSpec.tolerations = version.tolerations;
  if (version.priorityClassName) podSpec.priorityClassName = version.priorityClassName;
  const replicas = pool === 'gpu' ? version.replicas : (version.cpuFallback?.replicas ?? 0);
  if (Math.max(replicas, version.autoscaling?.maxReplicas ?? 0) > 1) podSpec.topologySpreadConstraints = topologySpread(selector);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(rrc, names.deployment(owner, version.name, pool), labels),
    spec: {
      // An autoscaled Deployment's replica count is the autoscaler's: the operator's apply leaves the
      // field out, so it neither owns nor resets it (server-side apply field ownership).
      ...(version.autoscaling ? {} : { replicas }),
      selector: { matchLabels: selector },
      // GPUs are scarce: a new pod may not find a free one until the old one goes.
      strategy: gpus > 0 ? { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } } : { type: 'RollingUpdate' },
      template: { metadata: { labels }, spec: podSpec },
    },
  };
}

export function versionService(rrc: RerankerConfig, version: VersionSpec, pool: Pool): KubeObject {
  const owner = rrc.metadata.name;
  const selector = versionSelector(owner, version.name, pool);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(rrc, names.service(owner, version.name, pool), { ...selector, [LABEL.component]: 'server' }),
    spec: {
      type: 'ClusterIP',
      selector,
      ports: [{ name: 'http', port: SERVER_PORT, targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

const routerSelector = (owner: string) => ({ [LABEL.owner]: owner, [LABEL.component]: 'router' });

/**
 * The router listens within a second or two of starting (it loads no model), but not at once: without a
 * startup probe its readiness probe failed (connection refused) before it listened. Checked every
 * second, the first success lets the readiness and liveness probes begin; 30 s is ample.
 */
const routerStartupProbe = { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1, failureThreshold: 30 };

/** Router mode: `rerank-server router` in front of the version Services, reading config.yaml and router.yaml. */
export function routerDeployment(rrc: RerankerConfig, images: Images): KubeObject {
  const owner = rrc.metadata.name;
  const image = effectiveImages(rrc, images);
  const selector = routerSelector(owner);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(rrc, names.router(owner), selector),
    spec: {
      replicas: rrc.spec.routing.router?.replicas ?? 2,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: { ...ownerLabels(owner), ...selector } },
        spec: {
          securityContext: podSecurity,
          automountServiceAccountToken: false,
          // The router drains like the server (same listener, same serving.drainTimeoutMs).
          terminationGracePeriodSeconds: terminationGracePeriodSeconds(rrc),
          containers: [
            {
              name: 'router',
              image: image.server,
              ...(image.pullPolicy ? { imagePullPolicy: image.pullPolicy } : {}),
              command: ['rerank-server'],
              args: [
                'router',
                '--config', `${CONFIG_DIR}/${names.fullConfigKey}`,
                '--router-config', `${CONFIG_DIR}/${names.routerConfigKey}`,
                '--port', String(SERVER_PORT),
              ],
              ports: [{ name: 'http', containerPort: SERVER_PORT, protocol: 'TCP' }],
              // Readiness is /readyz: the files loaded and some upstream healthy. Until the process listens, only the startup probe runs.
              readinessProbe: probes.readinessProbe,
              livenessProbe: probes.livenessProbe,
              lifecycle: { preStop: { sleep: { seconds: PRESTOP_SLEEP_SECONDS } } },
              startupProbe: routerStartupProbe,
              resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
              securityContext: containerSecurity,
              volumeMounts: [
                { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            },
          ],
          volumes: [
            { name: 'config', configMap: { name: names.configMap(owner) } },
            { name: 'tmp', emptyDir: {} },
          ],
        },
      },
    },
  };
}

export function routerService(rrc: RerankerConfig): KubeObject {
  const owner = rrc.metadata.name;
  const selector = routerSelector(owner);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(rrc, names.routerService(owner), selector),
    spec: { type: 'ClusterIP', selector, ports: [{ name: 'http', port: SERVER_PORT, targetPort: 'http', protocol: 'TCP' }] },
  };
}

export function configMap(rrc: RerankerConfig, data: Record<string, string>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: metadata(rrc, names.configMap(rrc.metadata.name), { [LABEL.component]: 'config' }),
    data,
  };
}
