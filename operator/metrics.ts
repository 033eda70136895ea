import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues } from 'prom-client';
import { LATENCY_BUCKETS } from '../server/metrics.ts';
import { ROLLOUT_PHASES } from './crd/rollout-spec.ts';
import type { Condition, RerankerConfigStatus } from './crd/spec.ts';

/** A RerankerConfig, as the namespace and name labels of its series. */
export interface ResourceKey {
  namespace: string;
  name: string;
}

/** Ready pods of one version, and how many of them report the config hash they should run. */
export interface VersionPods {
  readyPods: number;
  appliedPods: number;
}

/** What a reconcile publishes about each RerankerConfig; the Reconciler sees only this much of the metrics. */
export interface ResourceMetrics {
  recordResource(key: ResourceKey, status: RerankerConfigStatus, pods: Readonly<Record<string, VersionPods>>): void;
  recordConditions(key: ResourceKey, conditions: readonly Condition[]): void;
  /** A rollout ended: promoted, held, rolledBack, aborted or failed. */
  recordRolloutEnd(key: ResourceKey, result: string): void;
  /** A rollout could not read some of its figures (a pod's /metrics, Prometheus), by kind of failure. */
  recordRolloutReadFailure(kind: string): void;
  forgetResource(key: ResourceKey): void;
}

type ResourceGauge = Gauge<string>;
type Sample = [gauge: ResourceGauge, labels: LabelValues<string>, value: number];

/** kube-state-metrics' convention: a series for each status value, lower case, the current one 1 and the others 0. */
const CONDITION_STATUSES = ['True', 'False', 'Unknown'] as const;

/** The operator's own metrics, served on its /metrics. */
export class OperatorMetrics implements ResourceMetrics {
  readonly registry: Registry;
  readonly reconciles: Counter<'outcome'>;
  readonly reconcileDuration: Histogram;
  readonly queueDepth: Gauge;
  readonly leader: Gauge;
  readonly watchRestarts: Counter<'kind' | 'reason'>;
  readonly apiErrors: Counter<'verb' | 'kind' | 'code'>;
  readonly leaderElectionFailures: Counter<'reason'>;
  readonly versionWeight: Gauge<'namespace' | 'name' | 'version'>;
  readonly versionReplicas: Gauge<'namespace' | 'name' | 'version'>;
  readonly versionReadyReplicas: Gauge<'namespace' | 'name' | 'version'>;
  readonly versionFallbackReadyReplicas: Gauge<'namespace' | 'name' | 'version'>;
  readonly versionReadyPods: Gauge<'namespace' | 'name' | 'version' | 'config'>;
  readonly condition: Gauge<'namespace' | 'name' | 'type' | 'status'>;
  readonly rollouts: Counter<'namespace' | 'name' | 'result'>;
  readonly rolloutPhase: Gauge<'namespace' | 'name' | 'canary' | 'phase'>;
  readonly rolloutCanaryWeight: Gauge<'namespace' | 'name' | 'canary'>;
  readonly rolloutGate: Gauge<'namespace' | 'name' | 'canary' | 'gate' | 'measure'>;
  readonly rolloutReadFailures: Counter<'kind'>;
  /** Series last set per resource and gauge, so a removed version or a deleted resource leaves none behind. */
  readonly #series = new Map<string, Map<ResourceGauge, Array<LabelValues<string>>>>();

  constructor(options: { registry?: Registry; defaultMetrics?: boolean } = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
    const registers = [registry];
    this.reconciles = new Counter({
      name: 'rerank_operator_reconciles_total',
      help: 'Reconciles by outcome (done, requeue, error).',
      labelNames: ['outcome'],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'rerank_operator_reconcile_duration_seconds',
      help: 'Duration of one reconcile.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueDepth = new Gauge({ name: 'rerank_operator_workqueue_depth', help: 'Keys waiting in the work queue.', registers });
    this.leader = new Gauge({ name: 'rerank_operator_leader', help: '1 while this replica holds the leader Lease.', registers });
    this.watchRestarts = new Counter({
      name: 'rerank_operator_watch_restarts_total',
      help: 'Lists and watches that failed and are retried (with backoff), by kind and reason (HTTP code and Kubernetes reason, or network error code).',
      labelNames: ['kind', 'reason'],
      registers,
    });
    this.apiErrors = new Counter({
      name: 'rerank_operator_api_errors_total',
      help: 'Kubernetes API calls that failed, by verb, kind and code (HTTP status, or the network error code).',
      labelNames: ['verb', 'kind', 'code'],
      registers,
    });
    this.leaderElectionFailures = new Counter({
      name: 'rerank_operator_leader_election_failures_total',
      help: 'Leader election rounds that failed (the Lease could not be read or written), by reason.',
      labelNames: ['reason'],
      registers,
    });
    const versionLabels = ['namespace', 'name', 'version'] as const;
    this.versionWeight = new Gauge({
      name: 'rerank_operator_version_weight',
      help: 'Percent of unpinned traffic a version gets, as rendered into the HTTPRoute or router config (0 while it has no ready endpoints).',
      labelNames: versionLabels,
      registers,
    });
    this.versionReplicas = new Gauge({
      name: 'rerank_operator_version_replicas',
      help: 'Replicas a version\'s main Deployment should run (0 when the version is disabled).',
      labelNames: versionLabels,
      registers,
    });
    this.versionReadyReplicas = new Gauge({
      name: 'rerank_operator_version_ready_replicas',
      help: 'Ready replicas of a version\'s main Deployment.',
      labelNames: versionLabels,
      registers,
    });
    this.versionFallbackReadyReplicas = new Gauge({
      name: 'rerank_operator_version_fallback_ready_replicas',
      help: 'Ready replicas of a version\'s CPU fallback Deployment (versions with cpuFallback only).',
      labelNames: versionLabels,
      registers,
    });
    this.versionReadyPods = new Gauge({
      name: 'rerank_operator_version_ready_pods',
      help: 'Ready server pods of a version by config: "current" reports the config hash it should run, "stale" another or none.',
      labelNames: [...versionLabels, 'config'],
      registers,
    });
    this.condition = new Gauge({
      name: 'rerank_operator_condition',
      help: 'RerankerConfig status conditions: one series per type and status (true, false, unknown), 1 for the current status and 0 for the others.',
      labelNames: ['namespace', 'name', 'type', 'status'],
      registers,
    });
    this.rollouts = new Counter({
      name: 'rerank_operator_rollouts_total',
      help: 'Rollouts (spec.rollout) that ended, by result: promoted, held, rolledBack, aborted, failed.',
      labelNames: ['namespace', 'name', 'result'],
      registers,
    });
    this.rolloutPhase = new Gauge({
      name: 'rerank_operator_rollout_phase',
      help: 'Phase of a RerankerConfig\'s rollout: one series per phase, 1 for the current one and 0 for the others.',
      labelNames: ['namespace', 'name', 'canary', 'phase'],
      registers,
    });
    this.rolloutCanaryWeight = new Gauge({
      name: 'rerank_operator_rollout_canary_weight',
      help: 'Percent of unpinned traffic the rollout gives its canary now.',
      labelNames: ['namespace', 'name', 'canary'],
      registers,
    });
    this.rolloutReadFailures = new Counter({
      name: 'rerank_operator_rollout_read_failures_total',
      help: "Reads of a rollout's figures that failed, by kind: pod metrics (a pod's or router's /metrics), list pods, prometheus (a query), prometheus auth (Prometheus refused the credentials, 401/403), prometheus secret (a Secret of analysis.prometheus missing or lacking its key); the step is judged on what was read, or waits.",
      labelNames: ['kind'],
      registers,
    });
    this.rolloutGate = new Gauge({
      name: 'rerank_operator_rollout_gate',
      help: "The rollout's last judgement per gate: measure=\"value\" what the step measured, \"threshold\" its bound, \"ok\" 1 when it passed.",
      labelNames: ['namespace', 'name', 'canary', 'gate', 'measure'],
      registers,
    });
  }

  recordRolloutReadFailure(kind: string): void {
    this.rolloutReadFailures.inc({ kind });
  }

  recordRolloutEnd(key: ResourceKey, result: string): void {
    this.rollouts.inc({ namespace: key.namespace, name: key.name, result });
  }

  recordResource(key: ResourceKey, status: RerankerConfigStatus, pods: Readonly<Record<string, VersionPods>>): void {
    const { namespace, name } = key;
    const samples: Sample[] = [];
    for (const v of status.versions ?? []) {
      const labels = { namespace, name, version: v.name };
      samples.push([this.versionWeight, labels, v.weight], [this.versionReplicas, labels, v.replicas], [this.versionReadyReplicas, labels, v.readyReplicas]);
      if (v.fallbackReadyReplicas !== undefined) samples.push([this.versionFallbackReadyReplicas, labels, v.fallbackReadyReplicas]);
    }
    for (const [version, seen] of Object.entries(pods)) {
      samples.push(
        [this.versionReadyPods, { namespace, name, version, config: 'current' }, seen.appliedPods],
        [this.versionReadyPods, { namespace, name, version, config: 'stale' }, seen.readyPods - seen.appliedPods],
      );
    }
    const rollout = status.rollout;
    if (rollout) {
      for (const phase of ROLLOUT_PHASES) samples.push([this.rolloutPhase, { namespace, name, canary: rollout.canary, phase }, rollout.phase === phase ? 1 : 0]);
      samples.push([this.rolloutCanaryWeight, { namespace, name, canary: rollout.canary }, rollout.weight]);
      for (const [gate, result] of Object.entries(rollout.lastAnalysis ?? {})) {
        const labels = { namespace, name, canary: rollout.canary, gate };
        samples.push([this.rolloutGate, { ...labels, measure: 'threshold' }, result.threshold], [this.rolloutGate, { ...labels, measure: 'ok' }, result.ok ? 1 : 0]);
        if (result.value !== undefined) samples.push([this.rolloutGate, { ...labels, measure: 'value' }, result.value]);
      }
    }
    this.#publish(
      key,
      [this.versionWeight, this.versionReplicas, this.versionReadyReplicas, this.versionFallbackReadyReplicas, this.versionReadyPods, this.rolloutPhase, this.rolloutCanaryWeight, this.rolloutGate],
      samples,
    );
    this.recordConditions(key, status.conditions ?? []);
  }

  recordConditions(key: ResourceKey, conditions: readonly Condition[]): void {
    const samples: Sample[] = conditions.flatMap((c) =>
      CONDITION_STATUSES.map((status): Sample => [
        this.condition,
        { namespace: key.namespace, name: key.name, type: c.type, status: status.toLowerCase() },
        c.status === status ? 1 : 0,
      ]),
    );
    this.#publish(key, [this.condition], samples);
  }

  forgetResource(key: ResourceKey): void {
    const id = `${key.namespace}/${key.name}`;
    for (const [gauge, series] of this.#series.get(id) ?? []) for (const labels of series) gauge.remove(labels);
    this.#series.delete(id);
  }

  /** Replace a resource's series of these gauges with the samples (synchronously: no scrape sees a gap). */
  #publish(key: ResourceKey, gauges: readonly ResourceGauge[], samples: readonly Sample[]): void {
    const id = `${key.namespace}/${key.name}`;
    const byGauge = this.#series.get(id) ?? new Map<ResourceGauge, Array<LabelValues<string>>>();
    for (const gauge of gauges) {
      for (const labels of byGauge.get(gauge) ?? []) gauge.remove(labels);
      byGauge.set(gauge, []);
    }
    for (const [gauge, labels, value] of samples) {
      gauge.set(labels, value);
      byGauge.get(gauge)?.push(labels);
    }
    this.#series.set(id, byGauge);
  }
}
