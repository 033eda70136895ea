import { test } from 'node:test';
import { existsSync } from 'node:fs';

const dockerAvailable = Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');
const skip =
  process.env.RERANK_E2E !== '1'
    ? 'k3s e2e: set RERANK_E2E=1 where Docker runs (CI); covered here by test/cluster/* (real API server of ../shared/k8s) and test/operator/*'
    : !dockerAvailable
      ? 'no Docker engine here (no DOCKER_HOST, no /var/run/docker.sock): the k3s e2e needs one'
      : false;

test('operator against a throwaway k3s cluster (testcontainers)', { skip, timeout: 600_000 }, async () => {
  const { GenericContainer, Wait } = await import('testcontainers');
  const { KubeConfig } = await import('@kubernetes/client-node');
  const { ClientNodeKube } = await import('../../operator/kube-client.ts');
  const { runScenario } = await import('./scenario.ts');
  const k3s = await new GenericContainer('rancher/k3s:v1.31.4-k3s1')
    .withPrivilegedMode()
    .withCommand(['server', '--disable=traefik', '--disable=metrics-server', '--tls-san=127.0.0.1'])
    .withExposedPorts(6443)
    .withWaitStrategy(Wait.forLogMessage(/Node controller sync successful|k3s is up and running/))
    .withStartupTimeout(180_000)
    .start();
  try {
    const { output } = await k3s.exec(['cat', '/etc/rancher/k3s/k3s.yaml']);
    const config = new KubeConfig();
    config.loadFromString(output.replace(/https:\/\/127\.0\.0\.1:6443/, `https://${k3s.getHost()}:${k3s.getMappedPort(6443)}`));
    await runScenario(new ClientNodeKube(config));
  } finally {
    await k3s.stop();
  }
});
