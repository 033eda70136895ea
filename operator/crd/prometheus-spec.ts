import { z } from 'zod';

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

export const PROMETHEUS_FIGURES = ['requests', 'errors', 'p99Ms', 'fallbacks', 'loadFailures'] as const;
export type PrometheusFigure = (typeof PROMETHEUS_FIGURES)[number];

const matchers = 'namespace="{{namespace}}",version="{{version}}"';
const increase = (metric: string, extra = '') => `sum(increase(${metric}{${matchers}${extra}}[{{window}}]))`;

/**
 * The queries a figure without its own takes. The server's series carry `version`; the scrape adds the
 * pod's `namespace` (as a PodMonitor or the kubernetes_sd relabelling of the Prometheus Helm chart does).
 */
export const DEFAULT_PROMETHEUS_QUERIES: Record<PrometheusFigure, string> = {
  requests: increase('reranker_requests_total'),
  errors: increase('reranker_requests_total', ',status=~"5.."'),
  p99Ms: `1000 * histogram_quantile(0.99, sum by (le) (increase(reranker_request_duration_seconds_bucket{${matchers}}[{{window}}])))`,
  fallbacks: increase('reranker_fallback_count_total'),
  loadFailures: increase('reranker_version_load_failures_total'),
};

const FIGURE_MEANING: Record<PrometheusFigure, string> = {
  requests: 'Rerank requests the version answered in the window, every status (no series: 0)',
  errors: 'Of those, the ones answered with a 5xx (no series: 0)',
  p99Ms: 'p99 latency of its rerank requests in the window, in milliseconds (no series or NaN: no data)',
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

export const PrometheusAnalysisSchema = z
  .strictObject({
    url: z
      .string()
      .max(512)
      .regex(/^https?:\/\/[^/\s?#]+(\/[^\s?#]*)?$/)
      .meta({ description: 'Base URL of the Prometheus HTTP API (GET {url}/api/v1/query), e.g. http://prometheus-operated.monitoring.svc:9090.' }),
    queries: z
      .strictObject({
        requests: template('requests'),
        errors: template('errors'),
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
  .meta({
    description:
      "Take each step's figures of canary and stable from this Prometheus instead of the pods' /metrics; the ranking gates still read the router pods. " +
      'A Prometheus that does not answer, or a query it refuses, leaves the step unjudged (it waits, then fails), never passed.',
  });

export type PrometheusAnalysis = z.infer<typeof PrometheusAnalysisSchema>;
