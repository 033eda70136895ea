import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

/** Histogram buckets, defined once. Seconds. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The labels of http_request_duration_seconds. */
export type HttpRequestLabels = 'method' | 'route' | 'status';

/** What the HTTP shell records requests into and serves at /metrics: ServerMetrics and RouterMetrics alike. */
export interface HttpMetrics {
  readonly registry: Registry;
  readonly httpRequestDuration: Histogram<HttpRequestLabels>;
}

/**
 * http_request_duration_seconds{method,route,status}: one name, labels and buckets in the server and the
 * router, so one canary query reads the router and the pods alike.
 */
export function httpRequestDurationHistogram(registry: Registry, help = 'HTTP request duration by method, route and status code.'): Histogram<HttpRequestLabels> {
  return new Histogram({ name: 'http_request_duration_seconds', help, labelNames: ['method', 'route', 'status'], buckets: LATENCY_BUCKETS, registers: [registry] });
}

/**
 * http_connection_errors_total{kind}: requests answered and closed by the listener before the app saw them
 * (server/http/client-errors.ts), in the server and the router alike.
 */
export function httpConnectionErrorsCounter(registry: Registry): Counter<'kind'> {
  return new Counter({
    name: 'http_connection_errors_total',
    help: 'Connections answered and closed before the app saw their request: receive_timeout (408: not received within serving.receiveTimeoutMs), headers_too_large (431), malformed (400).',
    labelNames: ['kind'],
    registers: [registry],
  });
}

/** Buckets of the ranking-agreement histograms (the router's mirroring, the server's shadow scoring): top-k overlap, 0 to 1. */
export const AGREEMENT_OVERLAP_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1];
/** Kendall's tau-b, -1 to 1. */
export const AGREEMENT_TAU_BUCKETS = [-0.5, 0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 1];

const SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
const TOKEN_BUCKETS = [64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
const RATIO_BUCKETS = [0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1];
/** Actual over expected wait: 1 is the bound admission keeps. */
const WAIT_RATIO_BUCKETS = [0.25, 0.5, 0.75, 0.9, 1, 1.1, 1.25, 1.5, 2, 3, 4];

/** Every metric the server exports. One instance per process (or per test, with its own registry). */
export class ServerMetrics implements HttpMetrics {
  readonly registry: Registry;
  readonly httpRequestDuration: Histogram<HttpRequestLabels>;
  readonly connectionErrors: Counter<'kind'>;
  readonly requests: Counter<'version' | 'status'>;
  readonly requestDuration: Histogram<'version'>;
  readonly mirroredRequests: Counter<'version' | 'status'>;
  readonly mirroredRequestDuration: Histogram<'version'>;
  readonly injectedFaults: Counter<'version' | 'kind'>;
  readonly inferenceDuration: Histogram<'version'>;
  readonly tokenizationDuration: Histogram<'version'>;
  readonly queueDuration: Histogram<'version'>;
  readonly batchSize: Histogram<'version'>;
  readonly batchTokens: Histogram<'version'>;
  readonly paddingRatio: Histogram<'version'>;
  readonly queueDepth: Gauge<'version'>;
  readonly queueExpectedWait: Gauge<'version'>;
  readonly queueWaitRatio: Histogram<'version'>;
  readonly queueRefusals: Counter<'version' | 'reason'>;
  readonly deadlineDrops: Counter<'version'>;
  readonly deadlineDroppedPairs: Counter<'version'>;
  readonly inflight: Gauge<'version'>;
  readonly tokens: Counter<'version'>;
  readonly versionInfo: Gauge<'version' | 'device' | 'state'>;
  readonly configReloads: Counter<'result'>;
  readonly configInfo: Gauge<'hash'>;
  readonly configLastReloadSuccess: Gauge;
  readonly configLastGoodSaveFailures: Counter;
  readonly fallbacks: Counter<'version'>;
  readonly gpuMemoryUsed: Gauge<'version'>;
  readonly versionLoadFailures: Counter<'version'>;
  readonly shadowComparisons: Counter<'from' | 'to'>;
  readonly shadowTopKOverlap: Histogram<'from' | 'to'>;
  readonly shadowKendallTau: Histogram<'from' | 'to'>;
  readonly shadowFailures: Counter<'from' | 'to' | 'reason'>;

  constructor(options: { registry?: Registry; defaultMetrics?: boolean } = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
    const registers = [registry];
    this.httpRequestDuration = httpRequestDurationHistogram(registry);
    this.connectionErrors = httpConnectionErrorsCounter(registry);
    this.requests = new Counter({
      name: 'reranker_requests_total',
      help: 'Rerank requests by answering version and HTTP status.',
      labelNames: ['version', 'status'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'reranker_request_duration_seconds',
      help: 'Duration of a rerank request a version answered, from arrival to response (tokenization, queue, inference): what a canary is compared by.',
      labelNames: ['version'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    // A router's mirrored copies (X-Rerank-Mirror: 1) are real executions of this version, but no client waits
    // for their answers: counted apart, so served traffic (and a rollout step's minRequests) is not inflated.
    this.mirroredRequests = new Counter({
      name: 'reranker_mirrored_requests_total',
      help:
        "Mirrored copies of other versions' requests (the router's mirroring, X-Rerank-Mirror: 1) this version answered, by HTTP status. " +
        'Not client traffic: not in reranker_requests_total; a rollout counts them in the canary\'s error ratio and p99, not in minRequests.',
      labelNames: ['version', 'status'],
      registers,
    });
    this.mirroredRequestDuration = new Histogram({
      name: 'reranker_mirrored_request_duration_seconds',
      help: 'Duration of a mirrored copy this version answered (see reranker_mirrored_requests_total), from arrival to response. Not in reranker_request_duration_seconds.',
      labelNames: ['version'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.injectedFaults = new Counter({
      name: 'reranker_injected_faults_total',
      help:
        "Faults injected by a version's `faults` config, by kind: delay (the request waited delayMs), error (it failed with errorStatus unscored). " +
        'The requests are also counted as any other, with their status and duration.',
      labelNames: ['version', 'kind'],
      registers,
    });
    this.inferenceDuration = new Histogram({
      name: 'reranker_inference_duration_seconds',
      help: 'Duration of one model run (one batch).',
      labelNames: ['version'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.tokenizationDuration = new Histogram({
      name: 'reranker_tokenization_duration_seconds',
      help: 'Time to tokenize one request.',
      labelNames: ['version'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueDuration = new Histogram({
      name: 'reranker_queue_duration_seconds',
      help: 'Time a pair waited in the queue before its batch ran.',
      labelNames: ['version'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.batchSize = new Histogram({
      name: 'reranker_batch_size',
      help: 'Pairs in one model run.',
      labelNames: ['version'],
      buckets: SIZE_BUCKETS,
      registers,
    });
    this.batchTokens = new Histogram({
      name: 'reranker_batch_tokens',
      help: 'Padded token slots in one model run (batch size x longest pair).',
      labelNames: ['version'],
      buckets: TOKEN_BUCKETS,
      registers,
    });
    this.paddingRatio = new Histogram({
      name: 'reranker_batch_padding_ratio',
      help: 'Share of padded token slots in one model run that hold padding.',
      labelNames: ['version'],
      buckets: RATIO_BUCKETS,
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'reranker_queue_depth',
      help: 'Pairs waiting for a model run.',
      labelNames: ['version'],
      registers,
    });
    this.queueExpectedWait = new Gauge({
      name: 'reranker_queue_expected_wait_seconds',
      help: "Expected wait of a request arriving now before its first batch runs: the queued and running work times the version's measured cost per padded token. 0 until a batch has been measured. Admission compares it with serving.maxQueueWaitMs.",
      labelNames: ['version'],
      registers,
    });
    this.queueWaitRatio = new Histogram({
      name: 'reranker_queue_wait_ratio',
      help: 'Per admitted request that queued behind other work, its wait from admission until its first batch divided by the expected wait that admitted it (expected waits of 50 ms and more). At most 1: the bound admission keeps held; the 0.99 quantile is what maxQueueWaitMs bounds.',
      labelNames: ['version'],
      buckets: WAIT_RATIO_BUCKETS,
      registers,
    });
    this.queueRefusals = new Counter({
      name: 'reranker_queue_refusals_total',
      help: 'Requests refused before queueing, by reason: queue_full (maxQueuedPairs, 429), wait (expected wait over maxQueueWaitMs, 429), deadline (expected wait past the X-Request-Timeout-Ms deadline, 504).',
      labelNames: ['version', 'reason'],
      registers,
    });
    this.deadlineDrops = new Counter({
      name: 'reranker_deadline_drops_total',
      help: 'Queued requests answered 504 because their X-Request-Timeout-Ms deadline passed before their last pair ran.',
      labelNames: ['version'],
      registers,
    });
    this.deadlineDroppedPairs = new Counter({
      name: 'reranker_deadline_dropped_pairs_total',
      help: 'Pairs of those requests dropped from the queue without running: the work the deadline saved.',
      labelNames: ['version'],
      registers,
    });
    this.inflight = new Gauge({
      name: 'reranker_inflight_requests',
      help: 'Rerank requests a version is working on: picked, not yet answered (tokenizing, queued or running).',
      labelNames: ['version'],
      registers,
    });
    this.tokens = new Counter({
      name: 'reranker_tokens_total',
      help: 'Tokens fed to the model (before padding).',
      labelNames: ['version'],
      registers,
    });
    this.versionInfo = new Gauge({
      name: 'reranker_version_info',
      help: 'One series per version with its device and state; value 1.',
      labelNames: ['version', 'device', 'state'],
      registers,
    });
    this.configReloads = new Counter({
      name: 'reranker_config_reloads_total',
      help: 'Config reloads by result: ok (applied), unchanged (same config), error (rejected; the last good config keeps serving).',
      labelNames: ['result'],
      registers,
    });
    this.configInfo = new Gauge({
      name: 'reranker_config_info',
      help: 'The applied config: one series, labelled with its hash; value 1.',
      labelNames: ['hash'],
      registers,
    });
    this.configLastReloadSuccess = new Gauge({
      name: 'reranker_config_last_reload_successful',
      help: '1 when the last reload attempt was applied, 0 when it was rejected.',
      registers,
    });
    this.configLastGoodSaveFailures = new Counter({
      name: 'reranker_config_last_good_save_failures_total',
      help: 'Applied configs that could not be kept on disk as the last good copy (beside the file, or in the state directory).',
      registers,
    });
    this.fallbacks = new Counter({
      name: 'reranker_fallback_count_total',
      help: 'Times a version moved from the GPU to the CPU execution provider (low GPU memory or CUDA unavailable).',
      labelNames: ['version'],
      registers,
    });
    this.gpuMemoryUsed = new Gauge({
      name: 'reranker_gpu_memory_used_bytes',
      help: 'Used memory of the GPU a version is placed on, as last probed.',
      labelNames: ['version'],
      registers,
    });
    this.versionLoadFailures = new Counter({
      name: 'reranker_version_load_failures_total',
      help: 'Model loads that failed, by version.',
      labelNames: ['version'],
      registers,
    });
    // Shadow scoring (a version's `shadow`): same shapes as the router's reranker_router_agreement_*, so one
    // reading of Δsum / Δcount serves both.
    const pair = ['from', 'to'] as const;
    const notARequest =
      ' Shadow scorings are not requests: they are not in reranker_requests_total nor reranker_request_duration_seconds of `to`, ' +
      "but their tokenization, queueing and batches are in `to`'s inference metrics.";
    this.shadowComparisons = new Counter({
      name: 'reranker_shadow_agreement_comparisons_total',
      help: 'Requests answered by `from` whose ranking was compared with the one its shadow version `to` gave the same query and documents.' + notARequest,
      labelNames: pair,
      registers,
    });
    this.shadowTopKOverlap = new Histogram({
      name: 'reranker_shadow_agreement_topk_overlap',
      help: "Top-k overlap of each shadow comparison: the share of `from`'s first k documents that are also in `to`'s first k, 0 to 1. Not observed when both rank the same k or fewer documents (the overlap could only be 1).",
      labelNames: pair,
      buckets: AGREEMENT_OVERLAP_BUCKETS,
      registers,
    });
    this.shadowKendallTau = new Histogram({
      name: 'reranker_shadow_agreement_kendall_tau',
      help: "Kendall's tau-b of each shadow comparison where it is defined (two or more documents, not all tied): the two orders, -1 to 1.",
      labelNames: pair,
      buckets: AGREEMENT_TAU_BUCKETS,
      registers,
    });
    this.shadowFailures = new Counter({
      name: 'reranker_shadow_failures_total',
      help:
        'Shadow scorings that gave no comparison, by reason: saturated (shadow.maxInFlight under way, skipped), unavailable (`to` not ready, skipped), ' +
        "refused (`to`'s queue refused it: maxQueuedPairs or maxQueueWaitMs), error (`to` failed to score it)." +
        notARequest,
      labelNames: [...pair, 'reason'],
      registers,
    });
  }

  /**
   * Removes every series of a version: of each metric in the registry that carries a `version` label
   * (or `from` / `to`, the pairs of shadow comparisons), whatever its other labels. The metrics are read
   * from the registry, not from a list, so a per-version metric added later is covered without being
   * named here.
   */
  async forgetVersion(version: string): Promise<void> {
    for (const { name } of this.registry.getMetricsAsArray()) {
      const metric = this.registry.getSingleMetric(name);
      const labelNames = metric ? labelNamesOf(metric) : [];
      const versionLabels = labelNames.filter((label) => VERSION_LABELS.includes(label));
      if (!metric || versionLabels.length === 0) continue;
      const { values } = await metric.get();
      for (const { labels } of values) {
        if (!versionLabels.some((label) => String(labels[label]) === version)) continue;
        // Histogram buckets add `le`: the series is named by the metric's own labels.
        metric.remove(Object.fromEntries(labelNames.filter((label) => labels[label] !== undefined).map((label) => [label, labels[label]])));
      }
    }
  }
}

/** Labels that name a version: a series with the version in any of them goes with it. */
const VERSION_LABELS: readonly string[] = ['version', 'from', 'to'];

/** The label names a metric was made with: prom-client keeps its configuration on the metric, which its typings do not say. */
function labelNamesOf(metric: Metric): readonly string[] {
  const names = (metric as { labelNames?: unknown }).labelNames;
  return Array.isArray(names) ? (names as string[]) : [];
}
