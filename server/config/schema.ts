import { z } from 'zod';
import { normaliseConfigKeys } from './aliases.ts';
import { DEFAULT_MAX_PADDING_RATIO } from '../engine/batch-packer.ts';
import { VARIANT_SETTINGS } from '../engine/variant-choice.ts';
import { FaultsSchema } from './faults.ts';
import { HeadSchema } from './head.ts';

/**
 * The serving config: one source of truth. The server loads it, the CLI checks it, and the operator
 * renders its ConfigMap through it, so the three cannot drift.
 */

const versionName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be lower-case letters, digits, "-" or "." (DNS-safe)')
  .max(63);

/**
 * Shadow scoring: a share of the requests a version answers are scored again, in the background, by a
 * second version this server hosts, and the two rankings are compared (reranker_shadow_agreement_*).
 * The in-process counterpart of the router's mirroring (router.yaml `mirror`).
 */
export const ShadowSchema = z
  .strictObject({
    version: versionName.meta({ description: 'The version that scores the copies: another enabled version of this config.' }),
    fraction: z
      .number()
      .min(0)
      .max(1)
      .meta({ description: 'Share of the requests this version answers that are scored again by `version`, 0 to 1.' }),
    topK: z.number().int().min(1).max(1000).default(10).meta({ description: 'k of the top-k overlap.' }),
    maxInFlight: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(4)
      .meta({ description: 'Most shadow scorings of this version under way at once; past it one is skipped and counted (reason saturated).' }),
  })
  .meta({
    description:
      'Compare this version with another on live traffic: after a request is answered, `fraction` of them are scored again by ' +
      '`version` in the background (the client never waits for it) and the two rankings compared into reranker_shadow_agreement_*.',
  });

export const VersionConfigSchema = z.strictObject({
  enabled: z
    .boolean()
    .default(true)
    .meta({ description: 'Load this version and give it traffic. Disabling one drains its queue and frees its session.' }),
  description: z.string().default('').meta({ description: 'Free text shown in `GET /info`.' }),
  model: z
    .string()
    .min(1, 'must name a model directory')
    .optional()
    .meta({
      description:
        "Model directory (model.onnx + tokenizer.json; model/ + tokenizer/; or a Hugging Face repo's onnx/model.onnx), or the .onnx file; " +
        "a relative path resolves against the config file's directory. Absent: the directory named like the version, beside the config file.",
    }),
  device: z
    .enum(['cpu', 'cuda'])
    .default('cpu')
    .meta({ description: 'Execution provider wanted; `cuda` falls back to CPU when CUDA is absent or GPU memory runs low.' }),
  variant: z
    .enum(VARIANT_SETTINGS)
    .default('auto')
    .meta({
      description:
        'Which export of the model to run: `fp32` (model.onnx), `int8` (model_int8.onnx, model_qint8_avx512_vnni.onnx or model_quantized.onnx), ' +
        '`fp16` (model_fp16.onnx), or `auto`: int8 on CPUs with VNNI/AMX, fp16 on CUDA, else fp32, among the exports the model directory has. ' +
        '`GET /info` says per version what was chosen and why.',
    }),
  weight: z
    .number()
    .min(0)
    .max(100)
    .default(0)
    .meta({ description: 'Canary weight: the share of unpinned traffic this version gets, relative to the other enabled versions.' }),
  fallbackToCpu: z
    .boolean()
    .default(true)
    .meta({ description: 'Let a `cuda` version move to CPU while free GPU memory is under gpuMemoryThresholdMb, and back once it recovers.' }),
  gpuMemoryThresholdMb: z
    .number()
    .int()
    .min(0)
    .default(1024)
    .meta({ description: 'Free GPU memory (MiB) under which a `cuda` version moves to CPU, when fallbackToCpu is on.' }),
  endpoint: z
    .string()
    .regex(/^\/[A-Za-z0-9/_.-]*$/, 'must be an absolute URL path')
    .optional()
    .meta({
      description:
        "Extra path this version answers on (TEI shape), besides /rerank/{version}; not one of the server's own routes. " +
        'Its own /rerank/{version} is accepted and changes nothing.',
    }),
  head: HeadSchema.optional(),
  shadow: ShadowSchema.optional(),
  faults: FaultsSchema.optional(),
});

/** Paths of the server's own routes, which a version's `endpoint` may not take. */
const RESERVED_PATHS = ['/rerank', '/v1/rerank', '/v2/rerank', '/healthz', '/readyz', '/info', '/config', '/metrics', '/openapi.json'];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

export const ServingConfigSchema = z
  .strictObject({
    topK: z
      .number()
      .int()
      .min(1)
      .optional()
      .meta({ description: 'Results returned when a request names no top_n / top_k; absent: all.' }),
    threshold: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .meta({ description: 'Results whose normalized (sigmoid) score is below this are dropped.' }),
    maxLength: z
      .number()
      .int()
      .min(8)
      .max(8192)
      .default(512)
      .meta({ description: 'Tokens per (query, document) pair; longer pairs are truncated longest-first.' }),
    maxBatchTokens: z
      .number()
      .int()
      .min(64)
      .default(16384)
      .meta({ description: "Padded tokens in one inference batch (TEI's max-batch-tokens)." }),
    maxBatchSize: z.number().int().min(1).max(4096).default(32).meta({ description: 'Pairs in one inference batch.' }),
    maxPaddingRatio: z
      .number()
      .min(0)
      .max(1)
      .default(DEFAULT_MAX_PADDING_RATIO)
      .meta({
        description:
          "Largest share of a batch's padded token slots that may be padding. A pair that would pass it waits for a batch nearer " +
          'its own length: on CPU a padding slot costs as much as a token. 1: no cap (a GPU, which wants large batches, may prefer a higher one).',
      }),
    maxQueuedPairs: z
      .number()
      .int()
      .min(1)
      .default(8192)
      .meta({ description: "Pairs waiting in a version's queue before requests are answered 429." }),
    maxQueueWaitMs: z
      .number()
      .int()
      .min(0)
      .default(10_000)
      .meta({
        description:
          "Longest expected wait in a version's queue, in milliseconds, from a request's admission (before it is tokenized) " +
          'until its first batch, past which it is answered 429 with an honest Retry-After: the work ahead of it at the measured ' +
          'cost per padded token, times an upper estimate of how much longer requests have actually waited. 0: no limit (only maxQueuedPairs).',
      }),
    maxDocuments: z.number().int().min(1).default(1000).meta({ description: 'Documents one request may carry.' }),
    maxBodyBytes: z
      .number()
      .int()
      .min(1024)
      .default(8 * 1024 * 1024)
      .meta({ description: 'Request body size limit in bytes.' }),
    maxDocumentBytes: z
      .number()
      .int()
      .min(1024)
      .default(256 * 1024)
      .meta({
        description:
          'UTF-8 bytes of one document, and of the query. A longer one is cut to this many bytes before it is tokenized ' +
          '(the default is 32 bytes for each of 8192 tokens, the largest maxLength), or with `truncate: false` answered 413 ' +
          'naming it. Long texts are cut to what maxLength keeps anyway; this bounds the work on a text with no whitespace to cut at.',
      }),
    receiveTimeoutMs: z
      .number()
      .int()
      .min(1000)
      .max(3_600_000)
      .default(30_000)
      .meta({
        description:
          'Time a client has to send a whole request, headers and body; past it the request is answered 408 and its ' +
          'connection closed. It does not bound the work once the request is in: a long rerank is never cut by it.',
      }),
    drainTimeoutMs: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(45_000)
      .meta({
        description:
          'On SIGTERM: how long the requests in flight may take to finish (readiness fails and keep-alive connections ' +
          "close at once); past it the connections left are cut and the process exits. The operator keeps the pods' " +
          'terminationGracePeriodSeconds above the preStop sleep plus this.',
      }),
    warmup: z
      .enum(['light', 'full'])
      .default('light')
      .meta({
        // `full` is TEI's warm-up: the allocator reaches its working size and an out-of-memory shows at
        // start rather than under the first heavy load.
        description:
          'Warm-up before a version takes traffic. `light`: one short pair. `full`: also one batch at the full ' +
          'token budget, so an out-of-memory shows at start, at the cost of one full batch of start-up time.',
      }),
    useFp16: z
      .boolean()
      .default(false)
      .meta({
        description:
          'On CUDA, run the fp16 export beside the model when there is one (model_fp16.onnx beside model.onnx). ' +
          'Does not apply on CPU, nor without such a file: `GET /info` says so per version (`fp16`).',
      }),
    logLevel: z.enum(LOG_LEVELS).default('info').meta({ description: 'Lowest level of log lines written.' }),
  })
  .meta({ description: 'Request limits, batching, warm-up and logging, shared by every version.' });

const RerankConfigObjectSchema = z
  .strictObject({
    defaultVersion: versionName.meta({
      description: 'Version that answers when neither path, header, `model` nor weights pick one; must name an enabled version.',
    }),
    versions: z
      .record(versionName, VersionConfigSchema)
      .refine((v) => Object.keys(v).length > 0, { message: 'must define at least one version' })
      .meta({ description: 'The reranker versions, by name; at least one. Version endpoints must differ.' }),
    serving: ServingConfigSchema.default(() => ServingConfigSchema.parse({})),
  })
  .superRefine((config, ctx) => {
    const endpoints = new Map<string, string>();
    for (const [name, v] of Object.entries(config.versions)) {
      if (v.endpoint === undefined) continue;
      const path = ['versions', name, 'endpoint'];
      if (v.endpoint.startsWith('/rerank/')) {
        ctx.addIssue({
          code: 'custom',
          path,
          message: `"${v.endpoint}" is not this version's path: version ${name} answers on /rerank/${name}; other /rerank/ paths belong to other versions`,
        });
      } else if (RESERVED_PATHS.includes(v.endpoint)) {
        ctx.addIssue({ code: 'custom', path, message: `"${v.endpoint}" is one of the server's own routes` });
      }
      const other = endpoints.get(v.endpoint);
      if (other !== undefined) ctx.addIssue({ code: 'custom', path, message: `"${v.endpoint}" is also the endpoint of version ${other}` });
      endpoints.set(v.endpoint, name);
    }
    for (const [name, v] of Object.entries(config.versions)) {
      if (v.shadow === undefined) continue;
      const target = v.shadow.version;
      const path = ['versions', name, 'shadow', 'version'];
      if (target === name) ctx.addIssue({ code: 'custom', path, message: `names "${target}", the version itself: a shadow must be another version` });
      else if (!config.versions[target]) {
        ctx.addIssue({ code: 'custom', path, message: `names "${target}", which is not among versions (${Object.keys(config.versions).join(', ')})` });
      } else if (!config.versions[target].enabled) ctx.addIssue({ code: 'custom', path, message: `names "${target}", which is disabled` });
    }
    const version = config.versions[config.defaultVersion];
    if (!version) {
      ctx.addIssue({
        code: 'custom',
        path: ['defaultVersion'],
        message: `names "${config.defaultVersion}", which is not among versions (${Object.keys(config.versions).join(', ')})`,
      });
    } else if (!version.enabled) {
      ctx.addIssue({ code: 'custom', path: ['defaultVersion'], message: `names "${config.defaultVersion}", which is disabled` });
    }
  });

/**
 * The config file. Keys written for the BGE reranker image (`default_version`, `global_config`,
 * snake_case knobs; see CONFIG_KEY_ALIASES) are renamed first; a version without `model` is read from
 * the directory named like it (resolved against the config file's directory by the loader).
 */
export const RerankConfigSchema = z.preprocess(
  normaliseConfigKeys,
  RerankConfigObjectSchema.transform((config) => ({
    ...config,
    versions: Object.fromEntries(Object.entries(config.versions).map(([name, version]) => [name, { ...version, model: version.model ?? name }])),
  })),
);

export type ServingConfig = z.infer<typeof ServingConfigSchema>;
export type RerankConfig = z.output<typeof RerankConfigSchema>;
export type VersionConfig = RerankConfig['versions'][string];
export type ShadowSettings = z.infer<typeof ShadowSchema>;
/** The config as written by a user, before defaults are filled in (the schema's own keys, not the aliases). */
export type RerankConfigInput = z.input<typeof RerankConfigObjectSchema>;
