import { z } from 'zod';
import { ServingConfigSchema } from '../../server/config/schema.ts';

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

/** Version names become parts of Service names: a DNS-1123 label, short enough for `<name>-<version>-cpu`. */
export const VersionNameSchema = z
  .string()
  .min(1)
  .max(20)
  .regex(/^[a-z]([-a-z0-9]*[a-z0-9])?$/)
  .meta({ description: 'DNS label: lower-case letters, digits and "-", starting with a letter.' });

const Quantity = z.union([z.string(), z.number()]).meta({ 'x-kubernetes-int-or-string': true });

const ResourceListSchema = z.strictObject({
  cpu: Quantity.optional(),
  memory: Quantity.optional(),
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
    /** hf://org/repo[@revision], https://host/path.tar.gz, pvc://claim/path, oci://registry/repo:tag */
    source: z
      .string()
      .max(1024)
      .regex(new RegExp('^(hf|https|pvc|oci)://.+$'))
      .meta({ description: 'Where the model comes from: hf://, https://, pvc:// or oci://.' }),
    sha256: z
      .string()
      .regex(/^[a-f0-9]{64}$/)
      .optional()
      .meta({ description: 'Expected sha256 of the fetched model; the init container refuses a mismatch.' }),
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
  count: z.number().int().min(0).max(16).default(0),
  resourceName: z.string().max(253).default('nvidia.com/gpu'),
});

export const TolerationSchema = z.strictObject({
  key: z.string().max(253).optional(),
  operator: z.enum(['Exists', 'Equal']).optional(),
  value: z.string().max(63).optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
  tolerationSeconds: z.number().int().optional(),
});

export const VersionResourcesSchema = z.strictObject({
  gpu: GpuSchema.optional(),
  requests: ResourceListSchema.optional(),
  limits: ResourceListSchema.optional(),
});

export const CpuFallbackSchema = z
  .strictObject({
    replicas: z.number().int().min(0).max(64).default(1),
    resources: z.strictObject({ requests: ResourceListSchema.optional(), limits: ResourceListSchema.optional() }).optional(),
  })
  .meta({ description: 'CPU-only pods that take this version\'s traffic while its GPU pods have no ready endpoints.' });

export const VersionSpecSchema = z
  .strictObject({
    name: VersionNameSchema,
    enabled: z.boolean().default(true),
    description: z.string().max(256).default(''),
    model: ModelSourceSchema,
    replicas: z.number().int().min(0).max(64).default(1),
    resources: VersionResourcesSchema.optional(),
    nodeSelector: z.record(z.string(), z.string()).optional(),
    tolerations: z.array(TolerationSchema).max(16).optional(),
    cpuFallback: CpuFallbackSchema.optional(),
    weight: z.number().int().min(0).max(100).default(0).meta({ description: 'Canary weight, 0-100.' }),
    gpuMemoryThresholdMb: z.number().int().min(0).optional(),
  })
  .refine((v) => !v.cpuFallback || (v.resources?.gpu?.count ?? 0) > 0, {
    path: ['cpuFallback'],
    message: 'cpuFallback only makes sense for a version that requests GPUs',
  })
  .meta({
    'x-kubernetes-validations': [
      { rule: '!has(self.weight) || (self.weight >= 0 && self.weight <= 100)', message: 'weight must be between 0 and 100' },
      {
        rule: '!has(self.cpuFallback) || (has(self.resources) && has(self.resources.gpu) && has(self.resources.gpu.count) && self.resources.gpu.count > 0)',
        message: 'cpuFallback only makes sense for a version that requests GPUs',
      },
    ],
  });

export const ParentRefSchema = z.strictObject({
  group: z.string().max(253).optional(),
  kind: z.string().max(63).optional(),
  namespace: z.string().max(63).optional(),
  name: z.string().min(1).max(253),
  sectionName: z.string().max(253).optional(),
  port: z.number().int().min(1).max(65535).optional(),
});

export const RoutingSchema = z
  .strictObject({
    mode: z.enum(['gateway', 'router']).default('router'),
    headerName: z
      .string()
      .max(256)
      .regex(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/)
      .default('X-Rerank-Version'),
    gateway: z
      .strictObject({
        parentRefs: z.array(ParentRefSchema).max(8).default([]),
        hostnames: z.array(z.string().max(253)).max(16).optional(),
      })
      .optional(),
    router: z.strictObject({ replicas: z.number().int().min(1).max(64).default(2) }).optional(),
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
  server: z.string().max(512).optional(),
  modelFetcher: z.string().max(512).optional(),
  pullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
});

export const RerankerConfigSpecSchema = z
  .strictObject({
    defaultVersion: VersionNameSchema,
    versions: z
      .array(VersionSpecSchema)
      .min(1)
      .max(MAX_VERSIONS)
      .meta({
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
        'x-kubernetes-validations': [
          { rule: 'self.all(v, self.exists_one(w, w.name == v.name))', message: 'version names must be unique' },
        ],
      }),
    routing: RoutingSchema.default(() => RoutingSchema.parse({})),
    serving: ServingConfigSchema.default(() => ServingConfigSchema.parse({})),
    images: ImagesSchema.optional(),
  })
  .superRefine((spec, ctx) => {
    // The same rules as the CEL below, for specs that never went through an apiserver (tests, tools).
    const names = spec.versions.map((v) => v.name);
    const duplicate = names.find((n, i) => names.indexOf(n) !== i);
    if (duplicate) ctx.addIssue({ code: 'custom', path: ['versions'], message: `version names must be unique ("${duplicate}" repeats)` });
    const defaultVersion = spec.versions.find((v) => v.name === spec.defaultVersion);
    if (!defaultVersion) ctx.addIssue({ code: 'custom', path: ['defaultVersion'], message: 'defaultVersion must name one of versions' });
    else if (!defaultVersion.enabled) ctx.addIssue({ code: 'custom', path: ['defaultVersion'], message: 'defaultVersion must name an enabled version' });
  })
  .meta({
    'x-kubernetes-validations': [
      { rule: 'self.versions.exists(v, v.name == self.defaultVersion)', message: 'defaultVersion must name one of versions' },
      {
        rule: 'self.versions.all(v, v.name != self.defaultVersion || !has(v.enabled) || v.enabled)',
        message: 'defaultVersion must name an enabled version',
      },
    ],
  });

export const ConditionSchema = z.strictObject({
  type: z.enum(['Ready', 'ConfigApplied', 'Progressing', 'Degraded']),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().max(1024),
  message: z.string().max(32768),
  lastTransitionTime: z.string().meta({ format: 'date-time' }),
  observedGeneration: z.number().int().min(0).optional(),
});

export const VersionStatusSchema = z.strictObject({
  name: z.string(),
  replicas: z.number().int(),
  readyReplicas: z.number().int(),
  fallbackReadyReplicas: z.number().int().optional(),
  /** The weight this version's unpinned traffic share actually is, after unready versions gave theirs away. */
  weight: z.number().int(),
  /** Where its traffic goes: its GPU (or CPU-only) pods, its CPU fallback pods, or nowhere. */
  device: z.enum(['cuda', 'cpu', 'none']),
  /** Ready pods of this version running the current config hash, as "n/m". */
  configApplied: z.string().optional(),
});

export const RerankerConfigStatusSchema = z.strictObject({
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z
    .array(ConditionSchema)
    .max(8)
    .optional()
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] }),
  versions: z
    .array(VersionStatusSchema)
    .max(MAX_VERSIONS)
    .optional()
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] }),
  /** Hash of the rendered config.yaml (what the router serves; per-version files hash separately). */
  configHash: z.string().optional(),
  /** "n/m" ready version pods running their current config. */
  configApplied: z.string().optional(),
  /** Printer-column summaries: "v2-m3,v2-gemma,v1" and "v2-m3=90,v2-gemma=10,v1=0". */
  versionNames: z.string().optional(),
  weights: z.string().optional(),
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
