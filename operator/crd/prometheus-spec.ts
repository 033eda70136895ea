import { z } from 'zod';
import { DurationSchema, durationMs } from './duration.ts';

/**
 * spec.rollout.analysis.prometheus: take a step's figures from a Prometheus that scrapes the server
 * pods instead of from the pods' /metrics. Each figure is one PromQL template; the operator fills in
 * the placeholders and runs it as an instant query at the moment it judges the step.
 */

/** What a template may hold, and what each becomes. */
export const PROMETHEUS_PLACEHOLDERS = {
  version: 'the version judged (the canary, then stable)',
  namespace: "the RerankerConfig's namespace",
  name: "the RerankerConfig's name",
  window: "the step's window so far as a Prometheus duration in seconds, e.g. 120s",
} as const;
export type PrometheusPlaceholder = keyof typeof PROMETHEUS_PLACEHOLDERS;

export const PROMETHEUS_FIGURES = ['requests', 'errors', 'mirrored', 'mirroredErrors', 'p99Ms', 'fallbacks', 'loadFailures'] as const;
export type PrometheusFigure = (typeof PROMETHEUS_FIGURES)[number];

/**
 * The pod label rerank.dev/owner (the RerankerConfig) as a series label: the chart's PodMonitor relabels
 * it to this name, as a `labelmap` of every pod label (the kubernetes-pods job) does too.
 */
export const CONFIG_SERIES_LABEL = 'rerank_dev_owner';
// `=~"name|"` also matches series without the label: a scrape that does not add it still works, but then
// cannot tell two RerankerConfigs of a namespace with the same version names apart.
const matchers = `namespace="{{namespace}}",version="{{version}}",${CONFIG_SERIES_LABEL}=~"{{name}}|"`;
const increase = (metric: string, extra = '') => `sum(increase(${metric}{${matchers}${extra}}[{{window}}]))`;

/**
 * The queries a figure without its own takes. The server's series carry `version`; the scrape adds the
 * pod's `namespace` (as a PodMonitor or the kubernetes_sd relabelling of the Prometheus Helm chart does)
 * and, where it maps the pod's labels, its RerankerConfig.
 */
export const DEFAULT_PROMETHEUS_QUERIES: Record<PrometheusFigure, string> = {
  requests: increase('reranker_requests_total'),
  errors: increase('reranker_requests_total', ',status=~"5.."'),
  mirrored: increase('reranker_mirrored_requests_total'),
  mirroredErrors: increase('reranker_mirrored_requests_total', ',status=~"5.."'),
  // Client requests and mirrored copies alike: the latency of what the version executed. The copies' series
  // get a label of their own so that `or` keeps both where a pod has both.
  p99Ms:
    `1000 * histogram_quantile(0.99, sum by (le) (increase(reranker_request_duration_seconds_bucket{${matchers}}[{{window}}]) or ` +
    `label_replace(increase(reranker_mirrored_request_duration_seconds_bucket{${matchers}}[{{window}}]), "mirrored", "true", "", "")))`,
  fallbacks: increase('reranker_fallback_count_total'),
  loadFailures: increase('reranker_version_load_failures_total'),
};

const FIGURE_MEANING: Record<PrometheusFigure, string> = {
  requests: 'Rerank requests the version answered in the window, every status (no series: 0)',
  errors: 'Of those, the ones answered with a 5xx (no series: 0)',
  mirrored: "Mirrored copies of stable's requests the version answered in the window (router mode with a ranking gate; no series: 0). They count in the error ratio and p99, not toward minRequests",
  mirroredErrors: 'Of those, the ones answered with a 5xx (no series: 0)',
  p99Ms: 'p99 latency in the window, in milliseconds, of its rerank requests and the mirrored copies it answered (no series or NaN: no data)',
  fallbacks: 'Its moves from GPU to CPU in the window (no series: 0)',
  loadFailures: 'Failed loads of its model in the window (no series: 0)',
};

/**
 * A template holds `{{placeholder}}` only for the known placeholders; any other `{{` is refused. A
 * single `{` (a label matcher) is PromQL's own. Written with character classes so that it reads the
 * same in CEL (RE2) and in JavaScript.
 */
const TEMPLATE = `^(?:[^{]|[{][^{]|[{][{](?:${Object.keys(PROMETHEUS_PLACEHOLDERS).join('|')})[}][}])*[{]?$`;
const TEMPLATE_MESSAGE = `a rollout.analysis.prometheus query may use only the placeholders ${Object.keys(PROMETHEUS_PLACEHOLDERS)
  .map((p) => `{{${p}}}`)
  .join(', ')}`;
const templateRe = new RegExp(TEMPLATE);
/** DurationSchema's pattern in character classes, for CEL (whose strings take no \\d) as for JavaScript. */
const DURATION_PATTERN = '^(?:[0-9]+(?:[.][0-9]+)?(?:ms|s|m|h))+$';
const DURATION_RE = new RegExp(DURATION_PATTERN);

const AUTH_MESSAGE = 'rollout.analysis.prometheus.auth takes one of bearerTokenSecret and basicAuthSecret';
const TLS_MESSAGE = 'rollout.analysis.prometheus.tls takes caSecret or insecureSkipVerify, not both';
const TLS_URL_MESSAGE = 'rollout.analysis.prometheus.tls applies to an https:// url';
const HEADER_AUTH_MESSAGE = 'rollout.analysis.prometheus.headers may not set Authorization: use auth';
const HEADER_UNIQUE_MESSAGE = 'rollout.analysis.prometheus.headers names each header once';

const template = (figure: PrometheusFigure) =>
  z
    .string()
    .min(1)
    .max(2048)
    .refine((text) => templateRe.test(text), { message: TEMPLATE_MESSAGE })
    .optional()
    .meta({
      description: `${FIGURE_MEANING[figure]}: a PromQL instant query giving one series or a scalar. Default: \`${DEFAULT_PROMETHEUS_QUERIES[figure]}\`.`,
      'x-kubernetes-validations': [{ rule: `self.matches('${TEMPLATE}')`, message: TEMPLATE_MESSAGE }],
    });

const secretName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/)
  .meta({ description: "Name of the Secret, in the RerankerConfig's namespace." });
const secretKey = (fallback: string, holds: string) =>
  z
    .string()
    .min(1)
    .max(253)
    .regex(/^[-._a-zA-Z0-9]+$/)
    .default(fallback)
    .meta({ description: `Key in the Secret that holds ${holds}; default ${fallback}.` });

/** How long a query may take; the reconcile waits for it, so it is bounded well below a step. */
export const PROMETHEUS_TIMEOUT = { default: '5s', minMs: 100, maxMs: 60_000 } as const;
const TIMEOUT_RULE = `!self.matches('${DURATION_PATTERN}') || (duration(self) >= duration('${PROMETHEUS_TIMEOUT.minMs}ms') && duration(self) <= duration('${PROMETHEUS_TIMEOUT.maxMs / 1000}s'))`;
const TIMEOUT_MESSAGE = 'rollout.analysis.prometheus.timeout must be between 100ms and 60s';

export const PrometheusAuthSchema = z
  .strictObject({
    bearerTokenSecret: z
      .strictObject({ name: secretName, key: secretKey('token', 'the token') })
      .optional()
      .meta({ description: 'Send `Authorization: Bearer <token>`, the token read from this Secret key (surrounding whitespace dropped).' }),
    basicAuthSecret: z
      .strictObject({ name: secretName })
      .optional()
      .meta({ description: 'Send HTTP basic auth with the keys `username` and `password` of this Secret.' }),
  })
  .refine((a) => (a.bearerTokenSecret === undefined) !== (a.basicAuthSecret === undefined), { message: AUTH_MESSAGE })
  .meta({
    description:
      "Credentials for a Prometheus behind authentication, read from Secrets in the RerankerConfig's namespace at each judgement (a rotated Secret takes effect " +
      'at the next step). A Secret or key that is missing leaves the step unjudged, with a Warning Event naming it.',
    'x-kubernetes-validations': [{ rule: 'has(self.bearerTokenSecret) != has(self.basicAuthSecret)', message: AUTH_MESSAGE }],
  });

export const PrometheusTlsSchema = z
  .strictObject({
    caSecret: z
      .strictObject({ name: secretName, key: secretKey('ca.crt', 'the PEM CA bundle') })
      .optional()
      .meta({ description: "Trust the server certificates this PEM bundle signs, instead of the operator image's public CAs." }),
    insecureSkipVerify: z
      .boolean()
      .optional()
      .meta({ description: 'Accept any server certificate; default false. For tests only: anyone on the path can read the queries and the credentials.' }),
  })
  .refine((t) => !(t.caSecret && t.insecureSkipVerify), { message: TLS_MESSAGE })
  .meta({
    description: 'How an https:// Prometheus is trusted.',
    'x-kubernetes-validations': [{ rule: '!has(self.caSecret) || !has(self.insecureSkipVerify) || !self.insecureSkipVerify', message: TLS_MESSAGE }],
  });

export const PrometheusHeaderSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9][-A-Za-z0-9_.]*$/)
    .meta({ description: 'Header name, e.g. X-Scope-OrgID.' }),
  value: z
    .string()
    .max(1024)
    .regex(/^[\t\x20-\x7e]*$/)
    .meta({ description: 'Header value, printable ASCII. Plain text in the spec: put credentials in auth, not here.' }),
});

export const PrometheusAnalysisSchema = z
  .strictObject({
    url: z
      .string()
      .max(512)
      .regex(/^https?:\/\/[^/\s?#]+(\/[^\s?#]*)?$/)
      .meta({ description: 'Base URL of the Prometheus HTTP API (GET {url}/api/v1/query), e.g. http://prometheus-operated.monitoring.svc:9090.' }),
    timeout: DurationSchema.refine((t) => !DURATION_RE.test(t) || (durationMs(t) >= PROMETHEUS_TIMEOUT.minMs && durationMs(t) <= PROMETHEUS_TIMEOUT.maxMs), {
      message: TIMEOUT_MESSAGE,
    })
      .optional()
      .meta({
        // No CRD default: a default would change the spec of rollouts already running, and so their revision.
        description: 'How long one query may take, connecting included, 100ms to 60s; default 5s. A query that takes longer leaves the step unjudged.',
        'x-kubernetes-validations': [{ rule: TIMEOUT_RULE, message: TIMEOUT_MESSAGE }],
      }),
    auth: PrometheusAuthSchema.optional(),
    tls: PrometheusTlsSchema.optional(),
    headers: z
      .array(PrometheusHeaderSchema)
      .max(8)
      .refine((list) => list.every((h) => h.name.toLowerCase() !== 'authorization'), { message: HEADER_AUTH_MESSAGE })
      .refine((list) => new Set(list.map((h) => h.name.toLowerCase())).size === list.length, { message: HEADER_UNIQUE_MESSAGE })
      .optional()
      .meta({
        description:
          'Extra request headers, e.g. `[{name: X-Scope-OrgID, value: team-a}]` for the tenant of a multi-tenant Mimir, Cortex or Thanos. ' +
          'Authorization is set by auth, not here.',
        'x-kubernetes-validations': [
          { rule: "self.all(h, h.name.lowerAscii() != 'authorization')", message: HEADER_AUTH_MESSAGE },
          { rule: 'self.all(h, self.exists_one(g, g.name.lowerAscii() == h.name.lowerAscii()))', message: HEADER_UNIQUE_MESSAGE },
        ],
      }),
    queries: z
      .strictObject({
        requests: template('requests'),
        errors: template('errors'),
        mirrored: template('mirrored'),
        mirroredErrors: template('mirroredErrors'),
        p99Ms: template('p99Ms'),
        fallbacks: template('fallbacks'),
        loadFailures: template('loadFailures'),
      })
      .optional()
      .meta({
        description:
          'PromQL templates of the figures, each optional (a default reads the server\'s own series by namespace and version). Placeholders: ' +
          Object.entries(PROMETHEUS_PLACEHOLDERS)
            .map(([p, meaning]) => `{{${p}}} ${meaning}`)
            .join('; ') +
          '.',
      }),
  })
  .refine((p) => !p.tls || p.url.startsWith('https://'), { path: ['tls'], message: TLS_URL_MESSAGE })
  .meta({
    description:
      "Take each step's figures of canary and stable from this Prometheus instead of the pods' /metrics; the ranking gates still read the router pods. " +
      'A Prometheus that does not answer in time, refuses the credentials or a query, or a Secret of auth or tls that cannot be read, leaves the step unjudged ' +
      '(it waits, then fails), never passed.',
    'x-kubernetes-validations': [{ rule: "!has(self.tls) || self.url.startsWith('https://')", message: TLS_URL_MESSAGE }],
  });

export type PrometheusAnalysis = z.infer<typeof PrometheusAnalysisSchema>;
