import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { pino } from 'pino';
import { systemClock } from './clock.ts';
import { Controller } from './controller.ts';
import { CountingKube } from './counting-kube.ts';
import { FailureReporter } from './failures.ts';
import { ClientNodeKube, describeKubeConfig, loadKubeConfig } from './kube-client.ts';
import { createOperatorServer } from './http.ts';
import { LeaderElector } from './leader.ts';
import { OperatorMetrics } from './metrics.ts';
import { imagesFromEnv } from './images-env.ts';
import { HttpPodConfigReader } from './pod-config.ts';
import { Reconciler } from './reconciler.ts';

/**
 * `npm run operator`: in a cluster (service account) or from a kubeconfig ($KUBECONFIG, ~/.kube/config).
 * Environment: RERANK_SERVER_IMAGE, RERANK_MODEL_FETCHER_IMAGE, RERANK_SERVER_IMAGE_PULL_POLICY, WATCH_NAMESPACE (default: all),
 * POD_NAMESPACE (where the leader Lease lives; default: the kubeconfig context's namespace, else `default`),
 * LEADER_ELECT=false to run without election, LEASE_DURATION_SECONDS (15) and LEASE_RETRY_SECONDS (2),
 * OPERATOR_PORT (default 8081: /metrics, /healthz, /readyz), LOG_LEVEL.
 */
const env = process.env;
const logger = pino({ level: env.LOG_LEVEL ?? 'info', base: { service: 'rerank-operator' }, timestamp: pino.stdTimeFunctions.isoTime });
const clock = systemClock;
const metrics = new OperatorMetrics();

function seconds(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    logger.fatal({ [name]: raw }, `${name} must be a positive number of seconds`);
    process.exit(2);
  }
  return value;
}

const kubeConfig = loadKubeConfig();
const where = describeKubeConfig(kubeConfig);
const NO_KUBECONFIG = 'no kubeconfig found ($KUBECONFIG unset, no ~/.kube/config, not in a cluster): trying an unauthenticated API server on localhost:8080';
if (where.found) logger.info({ context: where.context, server: where.server, user: where.user, namespace: where.namespace }, 'Kubernetes API');
else logger.warn({ server: where.server }, NO_KUBECONFIG);

const kube = new CountingKube(new ClientNodeKube(kubeConfig), metrics.apiErrors);
const reconciler = new Reconciler({
  kube,
  clock,
  podConfig: new HttpPodConfigReader(),
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
        name: 'rerank-operator-leader',
        identity: `${env.HOSTNAME ?? hostname()}_${randomUUID().slice(0, 8)}`,
        leaseDurationMs: seconds('LEASE_DURATION_SECONDS', 15) * 1000,
        retryMs: seconds('LEASE_RETRY_SECONDS', 2) * 1000,
        failures: new FailureReporter({
          logger,
          what: 'leader election',
          fields: { lease: `${leaseNamespace}/rerank-operator-leader` },
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
          void stopController().then(() => process.exit(1));
        },
      });

/** Why this replica cannot do its job now; empty when it can (or stands by behind a live leader). */
function notReady(): string[] {
  const config = where.found ? [] : [NO_KUBECONFIG];
  if (elector) {
    const { leading, error } = elector.state;
    if (error) return [...config, `leader election failing (Lease ${elector.namespace}/rerank-operator-leader): ${error}`];
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
server.listen(port, () => logger.info({ port, leaderElection: elector ? `Lease ${leaseNamespace}/rerank-operator-leader` : 'off' }, 'operator endpoints listening'));

if (elector) elector.start();
else void startController();

async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down: finishing in-flight reconciles');
  await stopController();
  await elector?.stop();
  server.close();
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
