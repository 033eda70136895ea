import { pino } from 'pino';
import { systemClock } from './clock.ts';
import { CountingKube } from './counting-kube.ts';
import { ClientNodeKube, describeKubeConfig, loadKubeConfig } from './kube-client.ts';
import { OperatorMetrics } from './metrics.ts';
import { HttpPodConfigReader } from './pod-config.ts';
import { runOperator } from './run.ts';

/**
 * `npm run operator`: in a cluster (service account) or from a kubeconfig ($KUBECONFIG, ~/.kube/config).
 * Environment: RERANK_SERVER_IMAGE, RERANK_MODEL_FETCHER_IMAGE, RERANK_SERVER_IMAGE_PULL_POLICY, WATCH_NAMESPACE (default: all),
 * POD_NAMESPACE (where the leader Lease lives; default: the kubeconfig context's namespace, else `default`),
 * LEADER_ELECT=false to run without election, LEASE_DURATION_SECONDS (15) and LEASE_RETRY_SECONDS (2),
 * OPERATOR_PORT (default 8081: /metrics, /healthz, /readyz), LOG_LEVEL.
 */
const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'rerank-operator' }, timestamp: pino.stdTimeFunctions.isoTime });
const metrics = new OperatorMetrics();
const kubeConfig = loadKubeConfig();
const operator = runOperator(process.env, {
  kube: new CountingKube(new ClientNodeKube(kubeConfig), metrics.apiErrors),
  where: describeKubeConfig(kubeConfig),
  clock: systemClock,
  logger,
  metrics,
  podConfig: new HttpPodConfigReader(),
  exit: (code) => process.exit(code),
});

async function shutdown(signal: string): Promise<void> {
  await operator.shutdown(signal);
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
