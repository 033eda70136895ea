import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import { Controller } from './controller.ts';
import { FailureReporter } from './failures.ts';
import { createOperatorServer } from './http.ts';
import { imagesFromEnv } from './images-env.ts';
import type { KubeConfigSummary } from './kube-client.ts';
import type { KubeClient } from './kube.ts';
import { LeaderElector } from './leader.ts';
import type { OperatorMetrics } from './metrics.ts';
import type { PodConfigReader } from './pod-config.ts';
import { Reconciler } from './reconciler.ts';
import type { PodMetricsReader } from './rollout/pod-metrics.ts';

/** What the operator runs on; operator/main.ts gives the real ones, tests give fakes. */
export interface OperatorDeps {
  kube: KubeClient;
  /** Where the kubeconfig points (or that none was found). */
  where: KubeConfigSummary;
  clock: Clock;
  logger: Logger;
  metrics: OperatorMetrics;
  podConfig: PodConfigReader;
  /** How rollouts read the server pods' counters (default: GET /metrics on the pod IP, port 8080). */
  podMetrics?: PodMetricsReader;
  /** Ends the process: after lost leadership (1), or a bad setting (2). */
  exit: (code: number) => void;
  /** This replica's name in the Lease (default: $HOSTNAME or the host name, and a random suffix). */
  identity?: string;
}

export interface RunningOperator {
  /** /metrics, /healthz, /readyz, listening on OPERATOR_PORT (0: any free port). */
  server: http.Server;
  /** Why it is not ready now; empty when it is. */
  notReady(): string[];
  /** Whether the controller runs now (it does only while leading, or without election). */
  readonly controlling: boolean;
  /** Finish in-flight reconciles, release the Lease, close the endpoints. */
  shutdown(signal: string): Promise<void>;
}

export const LEASE_NAME = 'rerank-operator-leader';
const NO_KUBECONFIG = 'no kubeconfig found ($KUBECONFIG unset, no ~/.kube/config, not in a cluster): trying an unauthenticated API server on localhost:8080';

/**
 * The operator's wiring: the controller runs while this replica leads (or always, with
 * LEADER_ELECT=false); losing the lease stops it and exits, so the replica starts again as a clean
 * follower. Environment: see operator/main.ts.
 */
export function runOperator(env: NodeJS.ProcessEnv, deps: OperatorDeps): RunningOperator {
  const { kube, where, clock, logger, metrics } = deps;
  const seconds = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (Number.isFinite(value) && value > 0) return value;
    logger.fatal({ [name]: raw }, `${name} must be a positive number of seconds`);
    deps.exit(2);
    return fallback;
  };

  if (where.found) logger.info({ context: where.context, server: where.server, user: where.user, namespace: where.namespace }, 'Kubernetes API');
  else logger.warn({ server: where.server }, NO_KUBECONFIG);

  const reconciler = new Reconciler({
    kube,
    clock,
    podConfig: deps.podConfig,
    ...(deps.podMetrics ? { podMetrics: deps.podMetrics } : {}),
    metrics,
    logger,
    images: imagesFromEnv(env),
  });
  let controller: Controller | undefined;
  let failed = false;
  let stopping = false;

  async function startController(): Promise<void> {
    controller = new Controller({ kube, reconciler, clock, logger, metrics, ...(env.WATCH_NAMESPACE ? { namespace: env.WATCH_NAMESPACE } : {}) });
    try {
      await controller.start();
    } catch (error) {
      failed = true;
      logger.error({ err: error }, 'controller failed to start');
    }
  }

  async function stopController(): Promise<void> {
    const running = controller;
    controller = undefined;
    await running?.stop();
  }

  const leaseNamespace = env.POD_NAMESPACE || where.namespace || 'default';
  const elector =
    env.LEADER_ELECT === 'false'
      ? undefined
      : new LeaderElector({
          kube,
          clock,
          namespace: leaseNamespace,
          name: LEASE_NAME,
          identity: deps.identity ?? `${env.HOSTNAME ?? hostname()}_${randomUUID().slice(0, 8)}`,
          leaseDurationMs: seconds('LEASE_DURATION_SECONDS', 15) * 1000,
          retryMs: seconds('LEASE_RETRY_SECONDS', 2) * 1000,
          failures: new FailureReporter({
            logger,
            what: 'leader election',
            fields: { lease: `${leaseNamespace}/${LEASE_NAME}` },
            count: (reason) => metrics.leaderElectionFailures.inc({ reason }),
          }),
          onStartedLeading: () => {
            metrics.leader.set(1);
            logger.info('became leader');
            void startController();
          },
          onStoppedLeading: () => {
            metrics.leader.set(0);
            if (stopping) return;
            logger.warn('lost leadership; stopping the controller');
            // Another replica may act now; this one must not. Exiting lets it start clean as a follower.
            void stopController().then(() => deps.exit(1));
          },
        });

  function notReady(): string[] {
    const config = where.found ? [] : [NO_KUBECONFIG];
    if (elector) {
      const { leading, error } = elector.state;
      if (error) return [...config, `leader election failing (Lease ${elector.namespace}/${LEASE_NAME}): ${error}`];
      if (!leading) return [];
    }
    if (!controller) return [...config, 'controller not started'];
    const problems = controller.problems();
    return problems.length ? [...config, ...problems] : problems;
  }

  function readyDetail(): string {
    if (!elector) return 'running without leader election';
    const { leading, holder } = elector.state;
    return leading ? 'leading' : `standby: the lease is held by ${holder ?? 'nobody yet'}`;
  }

  const port = Number(env.OPERATOR_PORT ?? 8081);
  const server = createOperatorServer({ registry: metrics.registry, healthy: () => !failed, notReady, readyDetail });
  server.listen(port, () => logger.info({ port, leaderElection: elector ? `Lease ${leaseNamespace}/${LEASE_NAME}` : 'off' }, 'operator endpoints listening'));

  if (elector) elector.start();
  else void startController();

  return {
    server,
    notReady,
    get controlling() {
      return controller !== undefined;
    },
    async shutdown(signal) {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing in-flight reconciles');
      await stopController();
      await elector?.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
