import { z } from 'zod';

/**
 * Active health checking of each upstream (Envoy's `health_checks`): a GET of `path` every `intervalMs`;
 * a 2xx within `timeoutMs` passes. A new upstream counts as healthy for routing until its first check,
 * which alone decides; after that it takes `unhealthyThreshold` failures in a row to mark it unhealthy
 * and `healthyThreshold` passes in a row to bring it back.
 */
export const HealthCheckSchema = z.strictObject({
  enabled: z.boolean().default(true).meta({ description: 'Check each upstream actively. Off: every upstream counts as passing its checks.' }),
  path: z
    .string()
    .regex(/^\/[^?#\s]*$/, 'must be an absolute path with no query')
    .default('/readyz')
    .meta({ description: "Path requested on each upstream (the rerank server's readiness)." }),
  intervalMs: z.number().int().min(10).default(5000).meta({ description: 'Time between the checks of one upstream.' }),
  timeoutMs: z.number().int().min(10).default(2000).meta({ description: 'A check not answered within this time fails.' }),
  unhealthyThreshold: z.number().int().min(1).default(2).meta({ description: 'Failed checks in a row that mark a healthy upstream unhealthy.' }),
  healthyThreshold: z.number().int().min(1).default(1).meta({ description: 'Passed checks in a row that bring an unhealthy upstream back.' }),
});

/**
 * Passive outlier detection (Envoy's `outlier_detection`): an upstream that answered 5xx or not at all
 * (refused, reset, timed out) `consecutiveFailures` times in a row is ejected, taking no requests for
 * `baseEjectionTimeMs` × the number of times it was ejected (up to `maxEjectionTimeMs`; the count
 * decays by one per base time spent back in rotation). At most `maxEjectionPercent` of the upstreams
 * (at least one; none at 0) are ejected at once, and never the last one still passing its checks.
 */
export const OutlierDetectionSchema = z.strictObject({
  consecutiveFailures: z
    .number()
    .int()
    .min(1)
    .default(5)
    .meta({ description: 'Failures in a row (5xx, refused, reset, timeout) that eject an upstream.' }),
  baseEjectionTimeMs: z.number().int().min(1).default(30_000).meta({ description: 'Ejection time of a first ejection; each repeated ejection adds this much.' }),
  maxEjectionTimeMs: z.number().int().min(1).default(300_000).meta({ description: 'Longest an ejection lasts.' }),
  maxEjectionPercent: z
    .number()
    .min(0)
    .max(100)
    .default(10)
    .meta({ description: 'Most upstreams ejected at once, in percent (at least one; 0: none). Never the last one passing its checks.' }),
});

/**
 * Mirroring for ranking agreement: of the unpinned requests `from` answers (2xx), `fraction` is sent
 * again to `to` after the client has its answer; the client never waits for it and never sees it. The
 * two rankings are compared (top-k overlap, Kendall's tau) into reranker_router_agreement_* per pair.
 */
export const MirrorSchema = z
  .strictObject({
    from: z.string().min(1).meta({ description: 'The version whose answers are mirrored (a rollout\'s stable).' }),
    to: z.string().min(1).meta({ description: 'The version the copies go to, pinned by the version header (a rollout\'s canary).' }),
    fraction: z.number().min(0).max(1).meta({ description: "Share of `from`'s unpinned answered requests mirrored, 0 to 1." }),
    topK: z.number().int().min(1).max(1000).default(10).meta({ description: 'k of the top-k overlap.' }),
    maxInFlight: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(16)
      .meta({ description: 'Most mirrored requests under way at once; past it a mirror is skipped and counted (reason saturated).' }),
  })
  .refine((m) => m.from !== m.to, { path: ['to'], message: 'mirror.from and mirror.to must differ' });

/**
 * router.yaml, the router's part of the serving ConfigMap, in its own key because config.yaml is read
 * by the strict RerankConfigSchema. `rerank-server router` loads it (proxying each request to the
 * upstream of the version it chose: path, then header, then weighted choice from config.yaml's weights,
 * then the default) and the operator renders it, both through this schema. The health sections are
 * optional so that what the operator renders stays what it sets; absent, their defaults apply.
 */
export const RouterConfigSchema = z.strictObject({
  router: z
    .strictObject({
      /** Request header that pins a version. */
      headerName: z.string().min(1).meta({ description: 'Request header that pins a version.' }),
      /** Base URL of each enabled version's Service (its CPU fallback's while only that is ready). */
      upstreams: z
        .record(z.string(), z.url({ protocol: /^https?$/ }))
        .meta({ description: "Base URL of each enabled version's Service (its CPU fallback's while only that is ready)." }),
      healthCheck: HealthCheckSchema.optional().meta({ description: "Active checks of each upstream's readiness." }),
      outlierDetection: OutlierDetectionSchema.optional().meta({ description: 'Ejection of an upstream after failures in a row.' }),
      mirror: MirrorSchema.optional().meta({ description: 'Copies of some requests to a second version, whose ranking is compared with the answer.' }),
    })
    .meta({ description: 'The built-in router: how it pins versions, where each one is served, how it watches their health.' }),
});

export type RouterConfig = z.infer<typeof RouterConfigSchema>;
export type HealthCheckSettings = z.infer<typeof HealthCheckSchema>;
export type OutlierDetectionSettings = z.infer<typeof OutlierDetectionSchema>;
export type MirrorSettings = z.infer<typeof MirrorSchema>;

export interface UpstreamHealthSettings {
  healthCheck: HealthCheckSettings;
  outlierDetection: OutlierDetectionSettings;
}

/** The health settings in force: router.yaml's sections, their defaults where absent. */
export function upstreamHealthSettings(config: RouterConfig | undefined): UpstreamHealthSettings {
  return {
    healthCheck: config?.router.healthCheck ?? HealthCheckSchema.parse({}),
    outlierDetection: config?.router.outlierDetection ?? OutlierDetectionSchema.parse({}),
  };
}
