import { test } from 'node:test';

const skip =
  process.env.RERANK_E2E !== '1'
    ? 'e2e against a live cluster: set RERANK_E2E=1 and KUBECONFIG to a cluster you may install a CRD into (covered here by test/cluster/*, against the real API server of ../shared/k8s)'
    : !process.env.KUBECONFIG
      ? 'RERANK_E2E=1 but KUBECONFIG is not set'
      : false;

test('operator against the cluster named by KUBECONFIG', { skip, timeout: 180_000 }, async () => {
  const { ClientNodeKube, loadKubeConfig } = await import('../../operator/kube-client.ts');
  const { runScenario } = await import('./scenario.ts');
  await runScenario(new ClientNodeKube(loadKubeConfig()));
});
