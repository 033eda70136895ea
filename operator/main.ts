import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { pino } from 'pino';
import { systemClock } from './clock.ts';
import { Controller } from './controller.ts';
import { ClientNodeKube, loadKubeConfig } from './kube-client.ts';
import { createOperatorServer } from './http.ts';
import { LeaderElector } from './leader.ts';
import { OperatorMetrics } from './metrics.ts';
import { imagesFromEnv } from './images-env.ts';
import { HttpPodConfigReader } from './pod-config.ts';
import { Reconciler } from './reconciler.ts';

/**
 * `npm run operator`: in a cluster (service account) or from a kubeconfig ($KUBECONFIG, ~/.kube/config).
 * Environment: RERANK_SERVER_IMAGE, RERANK_MODEL_FETCHER_IMAGE, RERANK_SERVER_IMAGE_PULL_POLICY, WATCH_NAMESPACE (default: all),
 * POD_NAMESPACE (where the leader Lease lives), LEADER_ELECT=false to run without election,
 * OPERATOR_PORT (default 8081: /metrics, /healthz, /readyz), LOG_LEVEL.
 */
const env = process.env;
const logger = pino({ level: env.LOG_LEVEL ?? 'info', base: { service: 'rerank-operator' }, timestamp: pino.stdTimeFunctions.isoTime });
const clock = systemClock;
const metrics = new OperatorMetrics();
const kube = new ClientNodeKube(loadKubeConfig());
const reconciler = new Reconciler({
  kube,
  clock,
  podConfig: new HttpPodConfigReader(),
  metrics,
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

const elector =
  env.LEADER_ELECT === 'false'
    ? undefined
    : new LeaderElector({
        kube,
        clock,
        namespace: env.POD_NAMESPACE ?? 'rerank-system',
        name: 'rerank-operator-leader',
        identity: `${env.HOSTNAME ?? hostname()}_${randomUUID().slice(0, 8)}`,
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

const server = createOperatorServer({ registry: metrics.registry, healthy: () => !failed });
server.listen(Number(env.OPERATOR_PORT ?? 8081), () => logger.info({ port: Number(env.OPERATOR_PORT ?? 8081) }, 'operator endpoints listening'));

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
