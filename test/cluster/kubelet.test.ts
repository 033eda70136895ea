import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { clusterSkip, startCluster, type Cluster } from './harness.ts';
import { kubeletSkip, startTestKubelet, type KubeletPod, type TestKubelet } from './kubelet.ts';

/**
 * The test kubelet against the real control plane: a plain Deployment shaped like the operator's
 * version Deployment gets its pods bound, run as local rerank-server processes on 127.0.0.N, reported
 * Ready (the controller-manager counts readyReplicas), its ConfigMap refreshed when the pod is touched,
 * and its pods stopped and replaced when deleted.
 */

const skip = clusterSkip || kubeletSkip;

function serverConfig(description: string): string {
  return [
    'defaultVersion: v1',
    'versions:',
    '  v1:',
    '    enabled: true',
    `    description: ${JSON.stringify(description)}`,
    '    model: /models/v1',
    '    weight: 100',
    'serving:',
    '  logLevel: warn',
    '',
  ].join('\n');
}

function configMap(namespace: string, description: string): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'demo-config', namespace },
    data: { 'version-v1.yaml': serverConfig(description) },
  });
}

/** Mirrors operator/plan/workloads.ts versionDeployment for version `version` of resource `demo`. */
function deployment(namespace: string, version: string, replicas: number): string {
  const selector = { 'rerank.dev/owner': 'demo', 'rerank.dev/version': version, 'rerank.dev/pool': 'gpu' };
  const labels = {
    'app.kubernetes.io/name': 'reranker',
    'app.kubernetes.io/managed-by': 'rerank-operator',
    ...selector,
    'app.kubernetes.io/component': 'server',
  };
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: `demo-${version}`, namespace, labels },
    spec: {
      replicas,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 60,
          automountServiceAccountToken: false,
          initContainers: [
            {
              name: 'model',
              image: 'ghcr.io/example/rerank-server:test',
              command: ['rerank-server'],
              args: ['models', 'pull', 'hf://BAAI/bge-reranker-base', '--dir', `/models/${version}`],
              volumeMounts: [
                { name: 'models', mountPath: '/models' },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            },
          ],
          containers: [
            {
              name: 'server',
              image: 'ghcr.io/example/rerank-server:test',
              command: ['rerank-server'],
              args: ['start', '--config', `/etc/rerank/version-${version}.yaml`, '--port', '8080'],
              ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
              readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 5, failureThreshold: 3 },
              livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10, failureThreshold: 3, timeoutSeconds: 5 },
              startupProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 5, failureThreshold: 120 },
              volumeMounts: [
                { name: 'config', mountPath: '/etc/rerank', readOnly: true },
                { name: 'models', mountPath: '/models', readOnly: true },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            },
          ],
          volumes: [
            { name: 'config', configMap: { name: 'demo-config' } },
            { name: 'models', emptyDir: {} },
            { name: 'tmp', emptyDir: {} },
          ],
        },
      },
    },
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

async function configHash(pod: KubeletPod): Promise<string> {
  const response = await fetch(`http://${pod.ip}:8080/config`);
  assert.equal(response.status, 200);
  return ((await response.json()) as { hash: string }).hash;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface PodJson {
  metadata: { name: string; annotations?: Record<string, string> };
  spec: { nodeName?: string };
  status: { phase?: string; podIP?: string; conditions?: Array<{ type: string; status: string }> };
}

describe('test kubelet', { skip }, () => {
  let cluster: Cluster;
  let namespace: string;
  let kubelet: TestKubelet | undefined;

  before(async () => {
    cluster = await startCluster();
    namespace = await cluster.namespace('kubelet');
  });

  after(async () => {
    const pids = kubelet?.pods().flatMap((p) => (p.pid ? [p.pid] : [])) ?? [];
    await kubelet?.stop();
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} outlived stop()`);
    await cluster?.cleanup();
  });

  const kubectlJson = async <T>(args: string[]): Promise<T> => JSON.parse(await cluster.kubectl([...args, '-n', namespace, '-o', 'json'])) as T;
  const readyReplicas = async (name: string) =>
    (await kubectlJson<{ status: { readyReplicas?: number } }>(['get', 'deployment', name])).status.readyReplicas ?? 0;

  test('binds, runs, reports Ready, hot-reloads on a pod touch, replaces deleted pods', async (t) => {
    await cluster.kubectl(['apply', '-f', '-'], { input: configMap(namespace, 'first') });
    await cluster.kubectl(['apply', '-f', '-'], { input: deployment(namespace, 'v1', 2) });
    // A version whose pods never get ready.
    await cluster.kubectl(['apply', '-f', '-'], { input: deployment(namespace, 'v2', 1) });
    const started = Date.now();
    kubelet = await startTestKubelet({
      kubeConfig: cluster.kubeConfig(),
      namespaces: [namespace],
      neverReady: (pod) => pod.metadata.labels?.['rerank.dev/version'] === 'v2',
      restartBackoffMs: 200,
      // Watches end every 2 s: every step below also runs across re-lists.
      watchTimeoutSeconds: 2,
    });
    const k = kubelet;

    // Bound, running, Ready, counted by the ReplicaSet controller.
    const running = await until('two v1 pods ready in the kubelet', () => {
      const pods = k.pods().filter((p) => p.name.startsWith('demo-v1-') && p.ready && p.pid);
      return pods.length === 2 ? pods : undefined;
    });
    await until('readyReplicas 2', async () => (await readyReplicas('demo-v1')) === 2);
    t.diagnostic(`2 pods ready and counted in ${Date.now() - started} ms`);
    const [a, b] = running as [KubeletPod, KubeletPod];
    assert.notEqual(a.ip, b.ip);
    for (const pod of running) {
      assert.match(pod.ip ?? '', /^127\.0\.0\.\d+$/);
      const json = await kubectlJson<PodJson>(['get', 'pod', pod.name]);
      assert.equal(json.spec.nodeName, k.nodeName);
      assert.equal(json.status.phase, 'Running');
      assert.equal(json.status.podIP, pod.ip);
      assert.equal(json.status.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
      const response = await fetch(`http://${pod.ip}:8080/rerank`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'q', texts: ['a', 'b'] }),
      });
      assert.equal(response.status, 200, k.logs(pod.name));
      const scores = (await response.json()) as Array<{ index: number; score: number }>;
      assert.equal(scores.length, 2);
    }

    // The ConfigMap volume is laid out like kubelet's.
    const configDir = a.configDir ?? assert.fail('no config dir');
    const payload = readlinkSync(path.join(configDir, '..data'));
    assert.match(payload, /^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+$/);
    assert.equal(readlinkSync(path.join(configDir, 'version-v1.yaml')), '..data/version-v1.yaml');
    assert.match(readFileSync(path.join(configDir, 'version-v1.yaml'), 'utf8'), /first/);

    // The never-ready version: bound, an address, no process, not Ready.
    const stuck = await until('the v2 pod bound', () => k.pods().find((p) => p.name.startsWith('demo-v2-') && p.ip));
    assert.equal(stuck.pid, undefined);
    assert.equal(stuck.phase, 'Pending');
    const stuckJson = await until('the v2 pod reported', async () => {
      const json = await kubectlJson<PodJson>(['get', 'pod', stuck.name]);
      return json.status.podIP ? json : undefined;
    });
    assert.equal(stuckJson.status.conditions?.find((c) => c.type === 'Initialized')?.status, 'False');
    assert.equal(stuckJson.status.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    assert.equal(await readyReplicas('demo-v2'), 0);

    // A ConfigMap edit alone reaches no pod (kubelet syncs every 60 s) ...
    const hashA = await configHash(a);
    const hashB = await configHash(b);
    assert.equal(hashA, hashB);
    await cluster.kubectl(['apply', '-f', '-'], { input: configMap(namespace, 'second') });
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(await configHash(a), hashA);
    assert.equal(readlinkSync(path.join(configDir, '..data')), payload);
    // ... until the pod is touched: then its volume is rewritten and the server hot-reloads it.
    await cluster.kubectl(['annotate', 'pod', a.name, '-n', namespace, '--overwrite', 'rerank.dev/config-hash=second']);
    const touched = Date.now();
    const hashA2 = await until('pod a to apply the new config', async () => {
      const hash = await configHash(a);
      return hash !== hashA ? hash : undefined;
    }, 10_000);
    t.diagnostic(`hot reload ${Date.now() - touched} ms after the annotation`);
    assert.equal(k.pod(a.name)?.pid, a.pid, 'reloaded without a restart');
    assert.equal(k.pod(a.name)?.restartCount, 0);
    assert.equal(await configHash(b), hashB, 'the untouched pod keeps the old config');
    const payloads = readdirSync(configDir).filter((name) => name.startsWith('..') && name !== '..data');
    assert.deepEqual(payloads, [readlinkSync(path.join(configDir, '..data'))], 'the old payload directory is removed');

    // A process that dies is reported, restarted (restartCount 1) and ready again.
    process.kill(b.pid ?? assert.fail('no pid'), 'SIGKILL');
    const restarted = await until('pod b restarted and ready', () => {
      const pod = k.pod(b.name);
      return pod?.ready && pod.pid !== b.pid ? pod : undefined;
    });
    assert.equal(restarted.restartCount, 1);
    const bJson = await kubectlJson<PodJson & { status: { containerStatuses?: Array<{ restartCount: number; lastState: { terminated?: { exitCode: number } } }> } }>(['get', 'pod', b.name]);
    assert.equal(bJson.status.containerStatuses?.[0]?.restartCount, 1);
    assert.equal(bJson.status.containerStatuses?.[0]?.lastState.terminated?.exitCode, 137);
    assert.equal(await configHash(restarted), hashA2, 'the restarted server reads the volume as it is now');

    // Deleting a pod stops its process; the ReplicaSet's replacement runs the new config.
    await cluster.kubectl(['delete', 'pod', a.name, '-n', namespace, '--wait=false']);
    await until('the deleted pod gone from the API', async () => {
      const names = (await kubectlJson<{ items: PodJson[] }>(['get', 'pods'])).items.map((p) => p.metadata.name);
      return !names.includes(a.name);
    });
    assert.equal(alive(a.pid ?? 0), false, 'the deleted pod\'s process is gone');
    const replacement = await until('a replacement pod ready', () =>
      k.pods().find((p) => p.name.startsWith('demo-v1-') && p.name !== a.name && p.name !== b.name && p.ready),
    );
    assert.equal(await configHash(replacement), hashA2);
    await until('readyReplicas 2 again', async () => (await readyReplicas('demo-v1')) === 2);
    t.diagnostic(`done in ${Date.now() - started} ms`);
  });
});
