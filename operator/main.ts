import { pino } from 'pino';
import { systemClock } from './clock.ts';
import { CountingKube } from './counting-kube.ts';
import { ClientNodeKube, describeKubeConfig, loadKubeConfig } from './kube-client.ts';
import { OperatorMetrics } from './metrics.ts';
import { SERVER_PORT } from './names.ts';
import { HttpPodConfigReader } from './pod-config.ts';
import { HttpPodMetricsReader } from './rollout/pod-metrics.ts';
import { runOperator } from './run.ts';

/**
 * `npm run operator`: in a cluster (service account) or from a kubeconfig ($KUBECONFIG, ~/.kube/config).
 * Environment: RERANK_SERVER_IMAGE, RERANK_MODEL_FETCHER_IMAGE, RERANK_SERVER_IMAGE_PULL_POLICY, WATCH_NAMESPACE (default: all),
 * POD_NAMESPACE (where the leader Lease lives; default: the kubeconfig context's namespace, else `default`),
 * LEADER_ELECT=false to run without election, LEASE_DURATION_SECONDS (15) and LEASE_RETRY_SECONDS (2),
 * OPERATOR_PORT (default 8081: /metrics, /healthz, /readyz), LOG_LEVEL,
 * RERANK_POD_PORT (default 8080: the server pods' port the operator asks on their pod IP, GET /config/hash for
 * ConfigApplied and GET /metrics for rollouts; set it only where pods answer elsewhere, e.g. stand-in pods in tests).
 */
const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'rerank-operator' }, timestamp: pino.stdTimeFunctions.isoTime });
const metrics = new OperatorMetrics();
const kubeConfig = loadKubeConfig();
const podPort = Number(process.env.RERANK_POD_PORT || SERVER_PORT);
if (!Number.isInteger(podPort) || podPort < 1 || podPort > 65535) {
  logger.fatal({ RERANK_POD_PORT: process.env.RERANK_POD_PORT }, 'RERANK_POD_PORT must be a port number, 1 to 65535');
  process.exit(2);
}
const operator = runOperator(process.env, {
  kube: new CountingKube(new ClientNodeKube(kubeConfig), metrics.apiErrors),
  where: describeKubeConfig(kubeConfig),
  clock: systemClock,
  logger,
  metrics,
  podConfig: new HttpPodConfigReader({ port: podPort }),
  podMetrics: new HttpPodMetricsReader({ port: podPort }),
  exit: (code) => process.exit(code),
});

async function shutdown(signal: string): Promise<void> {
  await operator.shutdown(signal);
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
