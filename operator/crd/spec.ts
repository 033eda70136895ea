import { z } from 'zod';
import { FaultsSchema } from '../../server/config/faults.ts';
import { HeadSchema } from '../../server/config/head.ts';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import type { ManagedFieldsEntry } from '../kube.ts';
import { RolloutSpecSchema, RolloutStatusSchema } from './rollout-spec.ts';
import { VersionNameSchema } from './version-name.ts';
import { VARIANT_SETTINGS } from '../../server/engine/variant-choice.ts';

/**
 * The RerankerConfig spec and status, written once. The TypeScript types are inferred from these
 * schemas and the CRD's openAPIV3Schema is generated from them (operator/crd/definition.ts), so the two
 * cannot drift. CEL rules for what a structural schema cannot say ride along as `x-kubernetes-validations`
 * metadata; the apiserver evaluates them, and test/operator/crd-cel.test.ts runs them with a CEL evaluator.
 * `serving` IS the server's own ServingConfigSchema: a knob added there appears in the CRD.
 */

export const GROUP = 'rerank.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'RerankerConfig';
export const PLURAL = 'rerankerconfigs';

const MAX_VERSIONS = 16;

export { VersionNameSchema };

const Quantity = z.union([z.string(), z.number()]).meta({ 'x-kubernetes-int-or-string': true });

/** Replicas of a version's Deployment: 0 to 64, one unless set. */
const podCount = (description: string) => z.number().int().min(0).max(64).default(1).meta({ description });

const ResourceListSchema = z.strictObject({
  cpu: Quantity.optional().meta({ description: 'CPU, as a Kubernetes quantity: cores (2) or millicores (500m).' }),
  memory: Quantity.optional().meta({ description: 'Memory, as a Kubernetes quantity in bytes (4Gi, 512Mi).' }),
});

/** A key of a Secret in the resource's namespace; kubelet reads it, so the operator needs no access to Secrets. */
export const SecretKeyRefSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/)
    .meta({ description: 'Name of the Secret.' }),
  key: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[-._a-zA-Z0-9]+$/)
    .default('HF_TOKEN')
    .meta({ description: 'Key in the Secret that holds the token.' }),
  optional: z.boolean().optional().meta({ description: 'Start the pod even when the Secret or key is missing (the model is then pulled anonymously).' }),
});

export const ModelSourceSchema = z
  .strictObject({
    source: z
      .string()
      .max(1024)
      .regex(new RegExp('^(hf|https?|pvc|oci)://.+$'))
      .meta({
        description:
          'Where the model-pull init container fetches the model from: hf://org/repo[@revision] (Hugging Face Hub; revision ' +
          'defaults to main), https://host/path (one file, an .onnx saved as model.onnx; or a .tar.gz, .tgz or .tar of a model ' +
          'directory, extracted; http:// for in-cluster mirrors), pvc://claim/path (a model ' +
          'directory or .onnx file on a PersistentVolumeClaim in this namespace, mounted read-only), or ' +
          'oci://registry/repo[:tag|@sha256:digest] (an ORAS artifact: one file per layer, or one packed directory).',
      }),
    sha256: z
      .string()
      .regex(/^[a-f0-9]{64}$/)
      .optional()
      .meta({
        description:
          'Expected sha256 of the ONNX graph (model.onnx); for an archive source, of the archive; for an oci:// packed ' +
          'directory, of that layer. 64 lower-case hex digits; on a mismatch the model-pull init ' +
          'container fails and the pod does not start.',
      }),
    tokenSecretRef: SecretKeyRefSchema.optional().meta({
      description: 'Hugging Face access token for a private or gated hf:// repo, given to the init container as HF_TOKEN.',
    }),
  })
  .refine((m) => !m.tokenSecretRef || m.source.startsWith('hf://'), {
    path: ['tokenSecretRef'],
    message: 'tokenSecretRef applies to hf:// sources',
  })
  .meta({
    description: 'Model delivered by the init container into /models/<version>.',
    'x-kubernetes-validations': [
      { rule: "!has(self.tokenSecretRef) || self.source.startsWith('hf://')", message: 'tokenSecretRef applies to hf:// sources' },
    ],
  });

export const GpuSchema = z.strictObject({
  count: z
    .number()
    .int()
    .min(0)
    .max(16)
    .default(0)
    .meta({
      description:
        'GPUs per pod, requested and limited as resourceName. Above 0 the version runs on CUDA and rollouts replace its pods ' +
        'one at a time without surge; 0 runs it on CPU.',
    }),
  resourceName: z
    .string()
    .max(253)
    .default('nvidia.com/gpu')
    .meta({ description: 'Extended resource the GPUs are requested as, e.g. nvidia.com/gpu or a MIG profile such as nvidia.com/mig-1g.10gb.' }),
});

export const TolerationSchema = z.strictObject({
  key: z.string().max(253).optional().meta({ description: 'Taint key the toleration matches; empty with operator Exists matches every taint.' }),
  operator: z
    .enum(['Exists', 'Equal'])
    .optional()
    .meta({ description: 'Equal matches a taint whose value equals value; Exists matches any value. Kubernetes defaults it to Equal.' }),
  value: z.string().max(63).optional().meta({ description: 'Taint value the toleration matches, with operator Equal.' }),
  effect: z
    .enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute'])
    .optional()
    .meta({ description: 'Taint effect the toleration matches; empty matches every effect.' }),
  tolerationSeconds: z
    .number()
    .int()
    .optional()
    .meta({ description: 'With effect NoExecute: seconds the pod stays on a node after the taint appears; absent: forever.' }),
});

export const VersionResourcesSchema = z.strictObject({
  gpu: GpuSchema.optional().meta({ description: 'GPUs for each of the version\'s main pods; absent: none (the version runs on CPU).' }),
  requests: ResourceListSchema.optional().meta({ description: 'CPU and memory requests of the server container.' }),
  limits: ResourceListSchema.optional().meta({ description: 'CPU and memory limits of the server container.' }),
});

export const CpuFallbackSchema = z
  .strictObject({
    replicas: podCount('Fallback pods (Deployment and Service <resource>-<version>-cpu); 0 runs none.'),
    resources: z
      .strictObject({
        requests: ResourceListSchema.optional().meta({ description: 'CPU and memory requests of each fallback pod\'s server container.' }),
        limits: ResourceListSchema.optional().meta({ description: 'CPU and memory limits of each fallback pod\'s server container.' }),
      })
      .optional()
      .meta({ description: 'CPU and memory of each fallback pod; absent: none requested. resources, nodeSelector and tolerations of the version do not apply.' }),
  })
  .meta({ description: 'CPU-only pods that take this version\'s traffic while its GPU pods have no ready endpoints.' });

/**
 * What the autoscaler of a version scales on: CPU, or one of the server's own per-pod gauges
 * (server/metrics.ts), which reach the autoscaler through Prometheus.
 */
export const AUTOSCALING_METRICS = ['cpu', 'queue', 'inflight'] as const;

/** The metrics read from Prometheus (through a metrics adapter with engine hpa, by KEDA with engine keda). */
const fromPrometheus = (metric: (typeof AUTOSCALING_METRICS)[number]): boolean => metric !== 'cpu';

export const AutoscalingSchema = z
  .strictObject({
    minReplicas: z
      .number()
      .int()
      .min(0)
      .max(64)
      .default(1)
      .meta({
        description:
          'Fewest main pods. 0 (scale to zero) needs engine keda, metric queue or inflight, and weight 0: a version with weight takes traffic and keeps at least one pod.',
      }),
    maxReplicas: z
      .number()
      .int()
      .min(1)
      .max(64)
      .meta({ description: 'Most main pods; for a GPU version also bounded by spec.gpuBudget (status says when the budget is what holds it).' }),
    metric: z
      .enum(AUTOSCALING_METRICS)
      .default('cpu')
      .meta({
        description:
          'cpu: average CPU utilization of the server containers, percent of their CPU request (needs resources.requests.cpu). ' +
          'queue: average pairs waiting per pod (reranker_queue_depth). inflight: average rerank requests in flight per pod ' +
          '(reranker_inflight_requests). Both are read as Pods metrics through a metrics adapter (prometheus-adapter, ' +
          'rules in charts/rerank-operator/prometheus-adapter-values.yaml) with engine hpa, or straight from Prometheus with engine keda.',
      }),
    target: z
      .number()
      .int()
      .min(1)
      .max(100000)
      .meta({ description: 'Value the autoscaler holds the metric at: percent CPU utilization (cpu), queued pairs per pod (queue) or requests in flight per pod (inflight).' }),
    engine: z
      .enum(['hpa', 'keda'])
      .default('hpa')
      .meta({
        description:
          'hpa: an autoscaling/v2 HorizontalPodAutoscaler per Deployment. keda: a KEDA ScaledObject instead (KEDA must be installed), ' +
          'which can scale a weight-0 version to zero.',
      }),
    prometheusAddress: z
      .string()
      .max(512)
      .regex(/^https?:\/\/.+$/)
      .optional()
      .meta({ description: "Prometheus KEDA queries for the queue and inflight metrics, e.g. http://prometheus-operated.monitoring.svc:9090; engine keda with either needs it." }),
  })
  .refine((a) => a.minReplicas <= a.maxReplicas, { path: ['minReplicas'], message: 'minReplicas must not exceed maxReplicas' })
  .refine((a) => a.minReplicas > 0 || (a.engine === 'keda' && fromPrometheus(a.metric)), {
    path: ['minReplicas'],
    message: 'minReplicas 0 (scale to zero) needs engine keda and metric queue or inflight',
  })
  .refine((a) => a.engine !== 'keda' || !fromPrometheus(a.metric) || a.prometheusAddress !== undefined, {
    path: ['prometheusAddress'],
    message: 'engine keda with metric queue or inflight needs prometheusAddress',
  })
  .meta({
    description:
      "Scale the version's main pods (and its CPU fallback pods, on the same metric) between minReplicas and maxReplicas; replicas is then " +
      'ignored and the operator leaves the Deployments\' replica counts to the autoscaler.',
    'x-kubernetes-validations': [
      { rule: '!has(self.minReplicas) || self.minReplicas <= self.maxReplicas', message: 'minReplicas must not exceed maxReplicas' },
      {
        rule: "!has(self.minReplicas) || self.minReplicas > 0 || (has(self.engine) && self.engine == 'keda' && has(self.metric) && self.metric != 'cpu')",
        message: 'minReplicas 0 (scale to zero) needs engine keda and metric queue or inflight',
      },
      {
        rule: "!has(self.engine) || self.engine != 'keda' || !has(self.metric) || self.metric == 'cpu' || has(self.prometheusAddress)",
        message: 'engine keda with metric queue or inflight needs prometheusAddress',
      },
    ],
  });

export const DisruptionSchema = z.strictObject({
  maxUnavailable: z
    .number()
    .int()
    .min(0)
    .max(64)
    .default(1)
    .meta({ description: "Pods of each of the version's Deployments a voluntary disruption (node drain) may take down at once; 0 blocks drains." }),
});

/** CEL for what HeadSchema's refinement checks (server/config/head.ts headIssues), so the apiserver refuses it too. */
const HEAD_RULES = [
  { rule: "(has(self.type) && self.type == 'causal-lm-yes-no') || (!has(self.template) && !has(self.yesToken) && !has(self.noToken) && !has(self.yesTokenId) && !has(self.noTokenId) && !has(self.normalize) && !has(self.instruction))", message: 'template, tokens, normalize and instruction apply to type causal-lm-yes-no' },
  { rule: "(has(self.template) && self.template == 'custom') || (!has(self.prefix) && !has(self.body) && !has(self.suffix))", message: 'prefix, body and suffix apply to template custom' },
  { rule: "!has(self.template) || self.template != 'custom' || (has(self.body) && self.body.contains('{query}') && self.body.contains('{document}'))", message: 'template custom needs a body holding {query} and {document}' },
  { rule: "!has(self.template) || self.template != 'custom' || has(self.yesToken) || has(self.yesTokenId)", message: 'template custom needs yesToken or yesTokenId' },
  { rule: '!has(self.yesToken) || !has(self.yesTokenId)', message: 'give yesToken or yesTokenId, not both' },
  { rule: '!has(self.noToken) || !has(self.noTokenId)', message: 'give noToken or noTokenId, not both' },
];

export const VersionSpecSchema = z
  .strictObject({
    name: VersionNameSchema.meta({
      description:
        'Version name, unique in the resource: the value of routing.headerName that pins a request to it, and part of its ' +
        'Deployment and Service names (<resource>-<version>). A DNS label: lower-case letters, digits and "-", starting with a letter.',
    }),
    enabled: z
      .boolean()
      .default(true)
      .meta({ description: 'Run this version. A disabled version keeps its place in the spec but gets no pods, Services or traffic.' }),
    description: z.string().max(256).default('').meta({ description: "Free text, shown in the server's GET /info." }),
    model: ModelSourceSchema,
    replicas: podCount('Main pods of this version (Deployment <resource>-<version>), CPU fallback pods not counted.'),
    resources: VersionResourcesSchema.optional().meta({ description: "Resources of each of the version's main pods (not its CPU fallback pods)." }),
    nodeSelector: z
      .record(z.string(), z.string())
      .optional()
      .meta({ description: "Node labels the version's main pods must match, e.g. a GPU node pool; not applied to its CPU fallback pods." }),
    tolerations: z
      .array(TolerationSchema)
      .max(16)
      .optional()
      .meta({ description: "Tolerations of the version's main pods, e.g. for tainted GPU nodes; not applied to its CPU fallback pods." }),
    cpuFallback: CpuFallbackSchema.optional(),
    weight: z
      .number()
      .int()
      .min(0)
      .max(100)
      .default(0)
      .meta({
        description:
          'Canary weight: the share of unpinned traffic (requests that name no version) this version gets, relative to the ' +
          'weights of the other enabled versions. A version with no ready pods passes its share to the others in proportion ' +
          'to their weights. When every version that can serve has weight 0, defaultVersion takes it all (or, if it cannot ' +
          'serve, they share it evenly).',
      }),
    gpuMemoryThresholdMb: z
      .number()
      .int()
      .min(0)
      .optional()
      .meta({
        description:
          "Free GPU memory in MiB under which a GPU pod moves this version to CPU until memory recovers; absent: the server's default (1024).",
      }),
    variant: z
      .enum(VARIANT_SETTINGS)
      .default('auto')
      .meta({
        description:
          'Which export of the model the pods run: fp32, int8, fp16, or auto (int8 on CPUs with VNNI/AMX, fp16 on CUDA, else fp32, ' +
          "among the exports the model directory has). The server's GET /info says per version what it chose and why.",
      }),
    autoscaling: AutoscalingSchema.optional(),
    disruption: DisruptionSchema.default(() => DisruptionSchema.parse({})).meta({
      description: "The PodDisruptionBudget of each of the version's Deployments (<resource>-<version>, <resource>-<version>-cpu).",
    }),
    priorityClassName: z
      .string()
      .max(253)
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/)
      .optional()
      .meta({ description: "PriorityClass of the version's pods (main and CPU fallback), e.g. to preempt batch work on GPU nodes." }),
    head: HeadSchema.optional().meta({
      description:
        "How the server scores with the version's model, passed to its serving config as it is: cross-encoder, or causal-lm-yes-no " +
        '(LLM rerankers) with a prompt template. Absent: the model catalogue\'s head when model.source is an hf:// repo it knows ' +
        '(e.g. BAAI/bge-reranker-v2-gemma), else cross-encoder.',
      'x-kubernetes-validations': HEAD_RULES,
    }),
    faults: FaultsSchema.optional().meta({
      description:
        "Fault injection in the version's pods, passed to its serving config as it is: `delayRatio` of its requests wait " +
        '`delayMs`, `errorRatio` of them fail with `errorStatus` (500 or 503) unscored, counted in its metrics like any other ' +
        "request and in reranker_injected_faults_total. For trying a rollout's gates on a canary known to be bad; not for production traffic.",
    }),
  })
  .refine((v) => !v.cpuFallback || (v.resources?.gpu?.count ?? 0) > 0, {
    path: ['cpuFallback'],
    message: 'cpuFallback only makes sense for a version that requests GPUs',
  })
  .refine((v) => !v.autoscaling || v.weight === 0 || v.autoscaling.minReplicas >= 1, {
    path: ['autoscaling', 'minReplicas'],
    message: 'a version with weight keeps at least one pod: autoscaling.minReplicas must be 1 or more while weight > 0',
  })
  .meta({
    'x-kubernetes-validations': [
      { rule: '!has(self.weight) || (self.weight >= 0 && self.weight <= 100)', message: 'weight must be between 0 and 100' },
      {
        rule: '!has(self.cpuFallback) || (has(self.resources) && has(self.resources.gpu) && has(self.resources.gpu.count) && self.resources.gpu.count > 0)',
        message: 'cpuFallback only makes sense for a version that requests GPUs',
      },
      {
        rule: '!has(self.autoscaling) || !has(self.weight) || self.weight == 0 || !has(self.autoscaling.minReplicas) || self.autoscaling.minReplicas >= 1',
        message: 'a version with weight keeps at least one pod: autoscaling.minReplicas must be 1 or more while weight > 0',
      },
    ],
  });

/** Copied as is into the HTTPRoute's parentRefs, so absent fields take the Gateway API defaults. */
export const ParentRefSchema = z.strictObject({
  group: z.string().max(253).optional().meta({ description: 'API group of the parent; absent: gateway.networking.k8s.io.' }),
  kind: z.string().max(63).optional().meta({ description: 'Kind of the parent; absent: Gateway.' }),
  namespace: z.string().max(63).optional().meta({ description: "Namespace of the parent; absent: the RerankerConfig's namespace." }),
  name: z.string().min(1).max(253).meta({ description: 'Name of the parent, usually a Gateway.' }),
  sectionName: z.string().max(253).optional().meta({ description: 'Listener of the Gateway to attach to; absent: every listener that allows the route.' }),
  port: z.number().int().min(1).max(65535).optional().meta({ description: 'Listener port of the Gateway to attach to; absent: any.' }),
});

export const RoutingSchema = z
  .strictObject({
    mode: z
      .enum(['gateway', 'router'])
      .default('router')
      .meta({
        description:
          'router: the operator runs the built-in router (rerank-server router) behind a Service named after this resource. ' +
          'gateway: it writes a Gateway API HTTPRoute named after this resource, attached to gateway.parentRefs. Both pin ' +
          'requests by headerName and split the rest by the weights in effect.',
      }),
    headerName: z
      .string()
      .max(256)
      .regex(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/)
      .default('X-Rerank-Version')
      .meta({ description: 'Request header whose value, a version name, pins the request to that version regardless of weights.' }),
    gateway: z
      .strictObject({
        parentRefs: z
          .array(ParentRefSchema)
          .max(8)
          .default([])
          .meta({ description: 'Gateways (or their listeners) the HTTPRoute attaches to; gateway mode needs at least one.' }),
        hostnames: z
          .array(z.string().max(253))
          .max(16)
          .optional()
          .meta({ description: 'Hostnames the HTTPRoute matches; absent: every hostname its listeners accept.' }),
      })
      .optional()
      .meta({ description: 'The HTTPRoute of gateway mode; ignored in router mode.' }),
    router: z
      .strictObject({
        replicas: z.number().int().min(1).max(64).default(2).meta({ description: 'Router pods (Deployment <resource>-router).' }),
      })
      .optional()
      .meta({ description: 'The built-in router of router mode; ignored in gateway mode.' }),
  })
  .refine((r) => r.mode !== 'gateway' || (r.gateway?.parentRefs.length ?? 0) > 0, {
    path: ['gateway', 'parentRefs'],
    message: 'gateway mode needs gateway.parentRefs',
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "!has(self.mode) || self.mode != 'gateway' || (has(self.gateway) && has(self.gateway.parentRefs) && size(self.gateway.parentRefs) > 0)",
        message: 'gateway mode needs gateway.parentRefs',
      },
    ],
  });

export const ImagesSchema = z.strictObject({
  server: z
    .string()
    .max(512)
    .optional()
    .meta({ description: "Image of the server and router containers; absent: the operator's default (RERANK_SERVER_IMAGE)." }),
  modelFetcher: z
    .string()
    .max(512)
    .optional()
    .meta({
      description:
        "Image of the init container that runs rerank-server models pull; absent: the operator's default " +
        '(RERANK_MODEL_FETCHER_IMAGE), else the server image.',
    }),
  pullPolicy: z
    .enum(['Always', 'IfNotPresent', 'Never'])
    .optional()
    .meta({ description: "imagePullPolicy of every container; absent: Kubernetes' default for the image's tag." }),
});

export const RerankerConfigSpecSchema = z
  .strictObject({
    defaultVersion: VersionNameSchema.meta({
      description: 'Version that takes the unpinned traffic when every version that can serve has weight 0; must name an enabled version.',
    }),
    versions: z
      .array(VersionSpecSchema)
      .min(1)
      .max(MAX_VERSIONS)
      .meta({
        description: `The reranker versions, 1 to ${MAX_VERSIONS}, names unique. Each enabled one runs as its own Deployment and Service.`,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        'x-kubernetes-validations': [
          { rule: 'self.all(v, self.exists_one(w, w.name == v.name))', message: 'version names must be unique' },
        ],
      }),
    routing: RoutingSchema.default(() => RoutingSchema.parse({})).meta({ description: 'How requests reach the versions: the router or a Gateway API HTTPRoute.' }),
    serving: ServingConfigSchema.default(() => ServingConfigSchema.parse({})),
    images: ImagesSchema.optional().meta({ description: "Images of this resource's pods, overriding the operator's defaults." }),
    gpuBudget: z
      .number()
      .int()
      .min(0)
      .max(4096)
      .optional()
      .meta({
        description:
          "GPUs this resource's versions may use together (GPUs per pod x pods). Fixed replicas and autoscaling minReplicas must " +
          "fit; what is left caps the autoscaled GPU versions' maxReplicas, in spec order. Absent: no cap.",
      }),
    rollout: RolloutSpecSchema.optional(),
    revisionHistoryLimit: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(10)
      .meta({
        description:
          'Applied specs kept as ControllerRevisions (<resource>-<hash of the spec>); the oldest beyond this are deleted. ' +
          'Annotate rerank.dev/rollback-to=<revision number or name> to restore the spec of one.',
      }),
  })
  .superRefine((spec, ctx) => {
    // The same rules as the CEL below, for specs that never went through an apiserver (tests, tools).
    const names = spec.versions.map((v) => v.name);
    const duplicate = names.find((n, i) => names.indexOf(n) !== i);
    if (duplicate) ctx.addIssue({ code: 'custom', path: ['versions'], message: `version names must be unique ("${duplicate}" repeats)` });
    const defaultVersion = spec.versions.find((v) => v.name === spec.defaultVersion);
    if (!defaultVersion) ctx.addIssue({ code: 'custom', path: ['defaultVersion'], message: 'defaultVersion must name one of versions' });
    else if (!defaultVersion.enabled) ctx.addIssue({ code: 'custom', path: ['defaultVersion'], message: 'defaultVersion must name an enabled version' });
    const rollout = spec.rollout;
    if (!rollout) return;
    const canary = spec.versions.find((v) => v.name === rollout.canary);
    if (!canary) ctx.addIssue({ code: 'custom', path: ['rollout', 'canary'], message: 'rollout.canary must name one of versions' });
    else if (!canary.enabled) ctx.addIssue({ code: 'custom', path: ['rollout', 'canary'], message: 'rollout.canary must name an enabled version' });
    if (rollout.stable !== undefined && !names.includes(rollout.stable)) {
      ctx.addIssue({ code: 'custom', path: ['rollout', 'stable'], message: 'rollout.stable must name one of versions' });
    }
    if (rollout.stable === undefined && rollout.canary === spec.defaultVersion) {
      ctx.addIssue({ code: 'custom', path: ['rollout', 'canary'], message: 'rollout.canary must differ from the stable version (rollout.stable, else defaultVersion)' });
    }
  })
  .meta({
    'x-kubernetes-validations': [
      { rule: 'self.versions.exists(v, v.name == self.defaultVersion)', message: 'defaultVersion must name one of versions' },
      {
        rule: 'self.versions.all(v, v.name != self.defaultVersion || !has(v.enabled) || v.enabled)',
        message: 'defaultVersion must name an enabled version',
      },
      { rule: '!has(self.rollout) || self.versions.exists(v, v.name == self.rollout.canary)', message: 'rollout.canary must name one of versions' },
      {
        rule: '!has(self.rollout) || self.versions.all(v, v.name != self.rollout.canary || !has(v.enabled) || v.enabled)',
        message: 'rollout.canary must name an enabled version',
      },
      {
        rule: '!has(self.rollout) || !has(self.rollout.stable) || self.versions.exists(v, v.name == self.rollout.stable)',
        message: 'rollout.stable must name one of versions',
      },
      {
        rule: '!has(self.rollout) || has(self.rollout.stable) || self.rollout.canary != self.defaultVersion',
        message: 'rollout.canary must differ from the stable version (rollout.stable, else defaultVersion)',
      },
    ],
  });

export const ConditionSchema = z.strictObject({
  type: z
    .enum(['Ready', 'ConfigApplied', 'Progressing', 'Degraded'])
    .meta({
      description:
        'Ready: the last reconcile succeeded and every enabled version has ready pods. ConfigApplied: every ready pod runs ' +
        'the current config. Progressing: a Deployment is rolling out or pods are taking up a new config. Degraded: a ' +
        'reconcile failed, or a version with weight has no ready pods or serves from its CPU fallback.',
    }),
  status: z.enum(['True', 'False', 'Unknown']).meta({ description: 'Whether the condition holds: True, False or Unknown.' }),
  reason: z.string().max(1024).meta({ description: 'Why, in one CamelCase word, e.g. VersionsNotReady or InvalidSpec.' }),
  message: z.string().max(32768).meta({ description: 'Details for people, e.g. which versions have no ready endpoints.' }),
  lastTransitionTime: z.string().meta({ format: 'date-time', description: 'When status last changed.' }),
  observedGeneration: z.number().int().min(0).optional().meta({ description: 'metadata.generation of the spec this condition was computed from.' }),
});

export const VersionStatusSchema = z.strictObject({
  name: z.string().meta({ description: 'Version name, as in spec.versions.' }),
  replicas: z
    .number()
    .int()
    .meta({ description: "Main pods wanted: spec replicas, or for an autoscaled version what its autoscaler set; 0 for a disabled version." }),
  readyReplicas: z.number().int().meta({ description: 'Ready main pods.' }),
  fallbackReadyReplicas: z.number().int().optional().meta({ description: 'Ready CPU fallback pods; absent when the version runs none.' }),
  weight: z
    .number()
    .int()
    .meta({
      description:
        'Percent of unpinned traffic this version gets now: its weight after versions with no ready pods gave theirs away. ' +
        'The weights of all versions sum to 100, or to 0 when none can serve.',
    }),
  device: z
    .enum(['cuda', 'cpu', 'none'])
    .meta({ description: 'Where its traffic goes: cuda (its GPU pods), cpu (its CPU-only or CPU fallback pods) or none (nothing ready, or disabled).' }),
  configApplied: z.string().optional().meta({ description: 'Ready pods of this version running their current config, as "n/m".' }),
  scaling: z
    .string()
    .optional()
    .meta({
      description:
        'For an autoscaled version: its bounds and autoscaler, whether spec.gpuBudget cut maxReplicas, and whether the budget, ' +
        'not the metric, is what holds scale-out now (the HPA wants more pods than the capped maximum).',
    }),
});

export const RerankerConfigStatusSchema = z.strictObject({
  observedGeneration: z.number().int().min(0).optional().meta({ description: 'metadata.generation of the spec this status was computed from.' }),
  conditions: z
    .array(ConditionSchema)
    .max(8)
    .optional()
    .meta({
      description: 'Ready, ConfigApplied, Progressing and Degraded, one of each.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    }),
  versions: z
    .array(VersionStatusSchema)
    .max(MAX_VERSIONS)
    .optional()
    .meta({ description: 'One entry per version of the spec.', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] }),
  configHash: z
    .string()
    .optional()
    .meta({ description: 'Hash of the rendered config.yaml (every version, with the weights in effect); the per-version files the pods load hash separately.' }),
  configApplied: z.string().optional().meta({ description: 'Ready version pods running their current config, as "n/m".' }),
  versionNames: z.string().optional().meta({ description: 'Enabled versions, comma-separated, e.g. "v2-m3,v2-gemma" (printer column).' }),
  weights: z
    .string()
    .optional()
    .meta({ description: 'Weights in effect of the enabled versions, e.g. "v2-m3=90,v2-gemma=10" (printer column).' }),
  rollout: RolloutStatusSchema.optional().meta({ description: 'The rollout of spec.rollout: its phase, step, the canary weight in effect and the last judgement.' }),
  currentRevision: z
    .string()
    .optional()
    .meta({ description: 'The ControllerRevision of the config applied last (kubectl get controllerrevisions lists the kept ones).' }),
});

export type RerankerConfigSpec = z.infer<typeof RerankerConfigSpecSchema>;
export type RerankerConfigSpecInput = z.input<typeof RerankerConfigSpecSchema>;
export type VersionSpec = z.infer<typeof VersionSpecSchema>;
export type RerankerConfigStatus = z.infer<typeof RerankerConfigStatusSchema>;
export type Condition = z.infer<typeof ConditionSchema>;
export type ConditionType = Condition['type'];
export type VersionStatus = z.infer<typeof VersionStatusSchema>;

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  /** Who set which fields (server-side apply's record): the config history names who changed the spec. */
  managedFields?: ManagedFieldsEntry[];
}

/** A RerankerConfig as read from the apiserver (spec not yet defaulted by zod). */
export interface RerankerConfigObject {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: RerankerConfigSpecInput;
  status?: RerankerConfigStatus;
}

/** A RerankerConfig whose spec passed validation, defaults filled. */
export interface RerankerConfig extends Omit<RerankerConfigObject, 'spec'> {
  spec: RerankerConfigSpec;
}
