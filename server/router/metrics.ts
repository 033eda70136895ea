import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import {
  AGREEMENT_OVERLAP_BUCKETS,
  AGREEMENT_TAU_BUCKETS,
  httpConnectionErrorsCounter,
  httpRequestDurationHistogram,
  type HttpMetrics,
  type HttpRequestLabels,
} from '../metrics.ts';

export type UpstreamFailureKind = 'refused' | 'reset' | 'timeout' | 'unresolved' | 'other';

/** Which of the router's two files: config.yaml (versions, weights) or router.yaml (upstreams). */
export type RouterFile = 'config' | 'router';

/**
 * The router's metrics. `http_request_duration_seconds` has the server's name, labels and buckets, so
 * one canary query reads the router and the pods alike.
 */
export class RouterMetrics implements HttpMetrics {
  readonly registry: Registry;
  readonly httpRequestDuration: Histogram<HttpRequestLabels>;
  readonly connectionErrors: Counter<'kind'>;
  readonly requests: Counter<'version' | 'status'>;
  readonly upstreamErrors: Counter<'version' | 'kind'>;
  readonly configReloads: Counter<'file' | 'result'>;
  readonly configInfo: Gauge<'file' | 'hash'>;
  readonly upstreamEjections: Counter<'upstream'>;
  readonly healthCheckFailures: Counter<'upstream' | 'kind'>;
  readonly upstreamHealthy: Gauge<'upstream'>;
  readonly mirrored: Counter<'from' | 'to'>;
  readonly mirrorFailures: Counter<'from' | 'to' | 'reason'>;
  readonly agreementComparisons: Counter<'from' | 'to'>;
  readonly agreementTopKOverlap: Histogram<'from' | 'to'>;
  readonly agreementKendallTau: Histogram<'from' | 'to'>;
  /** Each upstream's health at scrape time; set by whoever tracks it (startRouter). */
  upstreamHealthSource: (() => ReadonlyArray<{ upstream: string; healthy: boolean }>) | undefined;

  constructor(options: { registry?: Registry; defaultMetrics?: boolean } = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
    const registers = [registry];
    this.httpRequestDuration = httpRequestDurationHistogram(
      registry,
      'HTTP request duration by method, route and status code (until the upstream response headers, for proxied requests).',
    );
    this.connectionErrors = httpConnectionErrorsCounter(registry);
    this.requests = new Counter({
      name: 'reranker_router_requests_total',
      help: 'Rerank requests the router handled, by chosen version and HTTP status (the upstream\'s, or the router\'s own on failure).',
      labelNames: ['version', 'status'],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'reranker_router_upstream_errors_total',
      help: 'Upstream requests that got no response, by version and kind (refused, reset, timeout, unresolved, other).',
      labelNames: ['version', 'kind'],
      registers,
    });
    this.configReloads = new Counter({
      name: 'reranker_router_config_reloads_total',
      help: 'Reloads of the router\'s files (config: config.yaml, router: router.yaml) by result: ok, unchanged, error (rejected; the last good one stays).',
      labelNames: ['file', 'result'],
      registers,
    });
    this.configInfo = new Gauge({
      name: 'reranker_router_config_info',
      help: 'The applied content of each file: one series per file, labelled with its hash; value 1.',
      labelNames: ['file', 'hash'],
      registers,
    });
    this.upstreamEjections = new Counter({
      name: 'reranker_router_upstream_ejections_total',
      help: 'Times an upstream was ejected (taken out of rotation for a while) after failures in a row: 5xx, refused, reset, timeout.',
      labelNames: ['upstream'],
      registers,
    });
    this.healthCheckFailures = new Counter({
      name: 'reranker_router_health_check_failures_total',
      help: "Failed active checks of an upstream's readiness path, by upstream and kind (status: answered not 2xx; refused, reset, timeout, unresolved, other: no answer).",
      labelNames: ['upstream', 'kind'],
      registers,
    });
    const pair = ['from', 'to'] as const;
    this.mirrored = new Counter({
      name: 'reranker_router_mirrored_requests_total',
      help: 'Requests answered by `from` that were sent again to `to` (router.yaml mirror), after the client had its answer.',
      labelNames: pair,
      registers,
    });
    this.mirrorFailures = new Counter({
      name: 'reranker_router_mirror_failures_total',
      help:
        'Mirrors that gave no comparison, by reason: saturated (maxInFlight under way, not sent), unavailable (`to` has no upstream taking requests), ' +
        'status (`to` answered not 2xx), refused, reset, timeout, unresolved, other (no answer), too_large (an answer over 8 MiB), ' +
        'unparsable (`to`\'s answer is no ranking), from_unparsable (`from`\'s answer is no ranking; not sent).',
      labelNames: [...pair, 'reason'],
      registers,
    });
    this.agreementComparisons = new Counter({
      name: 'reranker_router_agreement_comparisons_total',
      help: 'Mirrored requests whose two rankings were compared.',
      labelNames: pair,
      registers,
    });
    // Histograms: their _sum and _count give a window's mean as Δsum / Δcount (tau may be negative, which a counter cannot add).
    this.agreementTopKOverlap = new Histogram({
      name: 'reranker_router_agreement_topk_overlap',
      help: "Top-k overlap of each comparison: the share of `from`'s first k documents that are also in `to`'s first k, 0 to 1. Not observed when both rank the same k or fewer documents (the overlap could only be 1).",
      labelNames: pair,
      buckets: AGREEMENT_OVERLAP_BUCKETS,
      registers,
    });
    this.agreementKendallTau = new Histogram({
      name: 'reranker_router_agreement_kendall_tau',
      help: "Kendall's tau-b of each comparison where it is defined (two or more documents both ranked, not all tied): the two orders over those documents, -1 to 1.",
      labelNames: pair,
      buckets: AGREEMENT_TAU_BUCKETS,
      registers,
    });
    const healthSource = () => this.upstreamHealthSource;
    this.upstreamHealthy = new Gauge({
      name: 'reranker_router_upstream_healthy',
      help: 'Whether an upstream passes its health checks and is not ejected (1) or not (0); one series per upstream of router.yaml.',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const { upstream, healthy } of healthSource()?.() ?? []) this.set({ upstream }, healthy ? 1 : 0);
      },
    });
  }
}
