import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';

/**
 * The real control plane these suites run against: `../shared/k8s/cluster.sh` (kube-apiserver v1.32,
 * etcd, kube-controller-manager on 127.0.0.1; no scheduler, no kubelet). Started once per test
 * process, or reused when one already answers; each test works in namespaces of its own.
 */

const run = promisify(execFile);
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SHARED_K8S = join(ROOT, '../shared/k8s');
const CLUSTER_SH = join(SHARED_K8S, 'cluster.sh');
export const GATEWAY_API_CRDS = join(SHARED_K8S, 'gateway-api-v1.1.0-standard-crds.yaml');
export const CRD_FILE = join(ROOT, 'crds/rerankerconfigs.rerank.dev.yaml');
export const KUBERNETES_VERSION = 'v1.32';

/** `false` where the real API server is at hand; otherwise why the suite skips. */
export const clusterSkip: string | false = existsSync(CLUSTER_SH)
  ? false
  : `no ../shared/k8s/cluster.sh beside the project (${CLUSTER_SH}): the real-API-server suite needs it; GitHub Actions run the k3s suites (test/e2e) instead`;

export interface Cluster {
  /** Path of the admin kubeconfig (system:masters). */
  kubeconfig: string;
  kubeConfig(): KubeConfig;
  /** kubectl against this cluster; rejects with kubectl's stderr on a non-zero exit. */
  kubectl(args: string[], options?: { input?: string; kubeconfig?: string }): Promise<string>;
  /** A fresh namespace named `<prefix>-<random>`; deleted by `cleanup()`. */
  namespace(prefix: string): Promise<string>;
  /** Delete the namespaces this process created (the controller-manager empties them). */
  cleanup(): Promise<void>;
}

let started: Promise<Cluster> | undefined;

export function startCluster(): Promise<Cluster> {
  started ??= boot();
  return started;
}

/** Where cluster.sh keeps its state, and the admin kubeconfig it writes there. */
export const CLUSTER_STATE = process.env.RERANK_KAPI_DIR ?? '/tmp/rerank-kapi';

async function boot(): Promise<Cluster> {
  // One that answers is reused as it is: `up` on a running control plane restarts whatever its pid
  // files do not match, and they need not match (setsid may fork).
  const answering = existsSync(join(CLUSTER_STATE, 'kubeconfig')) && (await run('bash', [CLUSTER_SH, 'status']).then(() => true, () => false));
  let kubeconfig = join(CLUSTER_STATE, 'kubeconfig');
  if (!answering) {
    const { stdout } = await run('bash', [CLUSTER_SH, 'up'], { maxBuffer: 16 << 20 });
    const printed = /export KUBECONFIG=(\S+)\s*$/.exec(stdout.trim())?.[1];
    if (!printed) throw new Error(`cluster.sh up printed no KUBECONFIG:\n${stdout}`);
    kubeconfig = printed;
  }
  const created: string[] = [];
  const kubectl = async (args: string[], options: { input?: string; kubeconfig?: string } = {}): Promise<string> => {
    const child = execFile('kubectl', args, { env: { ...process.env, KUBECONFIG: options.kubeconfig ?? kubeconfig }, maxBuffer: 64 << 20 });
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    if (code !== 0) throw new Error(`kubectl ${args.join(' ')}: exit ${code}: ${err.trim()}`);
    return out;
  };
  // The controller-manager may still be coming up; namespaces and service accounts need it.
  await kubectl(['wait', '--for=jsonpath={.status.phase}=Active', 'namespace/default', '--timeout=30s']);
  return {
    kubeconfig,
    kubeConfig() {
      const config = new KubeConfig();
      config.loadFromFile(kubeconfig);
      return config;
    },
    kubectl,
    async namespace(prefix) {
      const name = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
      await kubectl(['create', 'namespace', name]);
      created.push(name);
      return name;
    },
    async cleanup() {
      const names = created.splice(0);
      if (names.length) await kubectl(['delete', 'namespace', '--wait=false', '--ignore-not-found', ...names]);
    },
  };
}

/** Install (or update) the RerankerConfig CRD from crds/ and wait until the server serves it. */
export async function installCrd(cluster: Cluster): Promise<void> {
  await cluster.kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=rerank-tests', '-f', CRD_FILE]);
  await cluster.kubectl(['wait', '--for=condition=Established', 'crd/rerankerconfigs.rerank.dev', '--timeout=30s']);
  await servedByDiscovery(cluster, 'rerank.dev', 'rerankerconfigs');
}

/**
 * Established is not yet served: API discovery (which clients use to find a kind's resource) follows
 * a moment later. A client that asks before then is told the kind does not exist.
 */
async function servedByDiscovery(cluster: Cluster, group: string, resource: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await cluster.kubectl(['api-resources', `--api-group=${group}`, '-o', 'name'])).split('\n').some((line) => line.startsWith(`${resource}.`))) {
    if (Date.now() > deadline) throw new Error(`${resource}.${group} is Established but API discovery does not list it after 30 s`);
    await sleep(200);
  }
}

/** Install the Gateway API v1.1.0 standard CRDs (HTTPRoute) from ../shared/k8s. */
export async function installGatewayApi(cluster: Cluster): Promise<void> {
  await cluster.kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=rerank-tests', '-f', GATEWAY_API_CRDS]);
  await cluster.kubectl(['wait', '--for=condition=Established', 'crd/httproutes.gateway.networking.k8s.io', '--timeout=30s']);
  await servedByDiscovery(cluster, 'gateway.networking.k8s.io', 'httproutes');
}

/** A scratch directory for a test. */
export function scratch(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

/**
 * Kill the API server process (SIGKILL, as a crash) and give back a function that starts it again
 * with the same command line, as cluster.sh did, and waits until it answers. etcd and the
 * controller-manager keep running. Found by its command line, not by pid file.
 */
export async function killApiServer(): Promise<() => Promise<void>> {
  const binary = join(CLUSTER_STATE, 'bin/kube-apiserver');
  const pid = readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .find((entry) => {
      try {
        return readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] === binary;
      } catch {
        return false;
      }
    });
  if (!pid) throw new Error(`no ${binary} process running`);
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  process.kill(Number(pid), 'SIGKILL');
  while (existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')) await sleep(50);
  return async () => {
    const log = openSync(join(CLUSTER_STATE, 'run/apiserver.log'), 'a');
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    writeFileSync(join(CLUSTER_STATE, 'run/apiserver.pid'), `${child.pid}\n`);
    const deadline = Date.now() + 60_000;
    while (!(await run('bash', [CLUSTER_SH, 'status']).then(() => true, () => false))) {
      if (Date.now() > deadline) throw new Error('the API server did not answer again within 60 s');
      await sleep(250);
    }
  };
}
