import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BUCKETS } from '../server/metrics.ts';

/** The operator's own metrics, served on its /metrics. */
export class OperatorMetrics {
  readonly registry: Registry;
  readonly reconciles: Counter<'outcome'>;
  readonly reconcileDuration: Histogram;
  readonly queueDepth: Gauge;
  readonly leader: Gauge;
  readonly watchRestarts: Counter<'kind'>;

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
      help: 'Watches that failed and were re-listed, by kind.',
      labelNames: ['kind'],
      registers,
    });
  }
}
