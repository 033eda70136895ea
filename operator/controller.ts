import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import { FailureReporter, failureKind } from './failures.ts';
import { Informer } from './informer.ts';
import { KINDS, isApiError, type KindRef, type KubeClient, type KubeObject } from './kube.ts';
import type { OperatorMetrics } from './metrics.ts';
import { LABEL, MANAGED_BY } from './names.ts';
import type { Key, Reconciler } from './reconciler.ts';
import { WorkQueue } from './workqueue.ts';

export interface ControllerOptions {
  kube: KubeClient;
  reconciler: Pick<Reconciler, 'reconcile'>;
  clock: Clock;
  logger: Logger;
  metrics?: OperatorMetrics;
  /** Watch one namespace; all when absent. */
  namespace?: string;
  workers?: number;
  /** Reconcile every resource this often even when nothing changed: drift the watches missed is repaired. */
  resyncMs?: number;
  queue?: WorkQueue;
}

// ScaledObjects are not watched: KEDA is an add-on that most clusters lack, and the periodic resync
// repairs one edited by hand. HPAs are, so their status (scaling limited) reaches status soon.
const WATCHED_CHILDREN: readonly KindRef[] = [
  KINDS.deployment, KINDS.service, KINDS.configMap, KINDS.pod, KINDS.horizontalPodAutoscaler, KINDS.podDisruptionBudget, KINDS.httpRoute,
];

export const keyString = (key: Key) => `${key.namespace}/${key.name}`;
export function parseKey(key: string): Key {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** Informers on RerankerConfigs and their children feed one keyed queue; workers reconcile from it. */
export class Controller {
  readonly queue: WorkQueue;
  readonly #options: ControllerOptions;
  readonly #informers: Informer[] = [];
  #workers: Promise<void>[] = [];
  #stopped = false;

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.queue = options.queue ?? new WorkQueue({ clock: options.clock });
  }

  async start(): Promise<void> {
    const { kube, clock, namespace, logger } = this.#options;
    const scope = namespace ? { namespace } : {};
    this.#informers.push(
      new Informer({
        kube, clock, ...scope,
        kind: KINDS.rerankerConfig,
        onEvent: (_event, object) => this.queue.add(keyString({ namespace: object.metadata.namespace ?? '', name: object.metadata.name })),
        onError: (error) => this.#watchFailed(KINDS.rerankerConfig, error),
        onRecovered: () => this.#reporter(KINDS.rerankerConfig).succeeded(),
      }),
    );
    for (const kind of WATCHED_CHILDREN) {
      this.#informers.push(
        new Informer({
          kube, clock, ...scope, kind,
          labelSelector: `${LABEL.managedBy}=${MANAGED_BY}`,
          onEvent: (_event, object) => this.#enqueueOwner(object),
          onError: (error) => this.#watchFailed(kind, error),
          onRecovered: () => this.#reporter(kind).succeeded(),
        }),
      );
    }
    await Promise.all(this.#informers.map((i) => i.start()));
    logger.info({ informers: this.#informers.length }, 'informers started');
    for (let i = 0; i < (this.#options.workers ?? 2); i++) this.#workers.push(this.#work());
  }

  /** Stop taking work, let in-flight reconciles finish. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const informer of this.#informers) informer.stop();
    this.queue.shutDown();
    await Promise.all(this.#workers);
  }

  #enqueueOwner(object: KubeObject): void {
    const owner = object.metadata.labels?.[LABEL.owner];
    if (owner && object.metadata.namespace) this.queue.add(keyString({ namespace: object.metadata.namespace, name: owner }));
  }

  /**
   * Why this controller cannot see the world right now (informers that have not listed, or whose
   * list/watch keeps failing); empty when it can. /readyz shows it.
   */
  problems(): string[] {
    // Without the Gateway API installed there is no HTTPRoute kind to watch; router mode still works.
    const out: string[] = [];
    for (const informer of this.#informers) {
      if (informer.kind === KINDS.httpRoute && isApiError(informer.health.cause, 404)) continue;
      const { failures, error } = informer.health;
      if (failures > 0) out.push(`${informer.kind.kind} list/watch failing (${failures}x, retrying with backoff): ${error}`);
      else if (!informer.synced) out.push(`${informer.kind.kind} not listed yet`);
    }
    return out;
  }

  readonly #reporters = new Map<string, FailureReporter>();
  #reporter(kind: KindRef): FailureReporter {
    let reporter = this.#reporters.get(kind.kind);
    if (!reporter) {
      reporter = new FailureReporter({ logger: this.#options.logger, what: `list/watch ${kind.kind}`, fields: { kind: kind.kind } });
      this.#reporters.set(kind.kind, reporter);
    }
    return reporter;
  }

  #watchFailed(kind: KindRef, error: unknown): void {
    this.#options.metrics?.watchRestarts.inc({ kind: kind.kind, reason: failureKind(error) });
    this.#reporter(kind).failed(error, isApiError(error, 404) && kind === KINDS.httpRoute ? { note: 'Gateway API not installed: router mode works; gateway mode cannot' } : {});
  }

  async #work(): Promise<void> {
    const { reconciler, logger, metrics, clock } = this.#options;
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      metrics?.queueDepth.set(this.queue.length);
      const started = clock.now().getTime();
      try {
        const result = await reconciler.reconcile(parseKey(key));
        metrics?.reconciles.inc({ outcome: result.outcome });
        if (result.outcome === 'error') {
          logger.warn({ key, err: result.error.message, failures: this.queue.failures(key) + 1 }, 'reconcile failed; retrying with backoff');
          if (!this.#stopped) this.queue.addRateLimited(key);
        } else {
          this.queue.forget(key);
          if (!this.#stopped) this.queue.addAfter(key, result.outcome === 'requeue' ? result.afterMs : (this.#options.resyncMs ?? 5 * 60_000));
        }
      } catch (error) {
        metrics?.reconciles.inc({ outcome: 'error' });
        logger.error({ key, err: error }, 'reconcile threw');
        if (!this.#stopped) this.queue.addRateLimited(key);
      } finally {
        metrics?.reconcileDuration.observe((clock.now().getTime() - started) / 1000);
        this.queue.done(key);
      }
    }
  }
}
