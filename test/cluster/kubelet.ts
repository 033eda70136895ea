import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  PatchStrategy,
  Watch,
  dumpYaml,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import { JSON_SCHEMA, load } from 'js-yaml';
import { LABEL, MANAGED_BY } from '../../operator/names.ts';
import { tinyModel } from '../support/models.ts';
import { ROOT } from './harness.ts';

/**
 * A test kubelet for the real-API-server suites: the control plane of `../shared/k8s/cluster.sh` has no
 * scheduler and no kubelet, so pods stay Pending. This stands in for both, for the pods the operator's
 * Deployments create (by default the server pods, `app.kubernetes.io/managed-by=rerank-operator,
 * app.kubernetes.io/component=server`; any selector may be given, e.g. to add the router pods):
 *
 * - **Scheduling**: registers a Node (`test-kubelet`: Ready, heartbeats through its Lease in
 *   kube-node-lease so the node-lifecycle controller leaves it alone) and binds every Pending,
 *   unscheduled pod to it through the pods/binding subresource.
 * - **Pod network**: each pod gets its own loopback address 127.0.0.N (N from 2, taken per running pod,
 *   freed when it stops; lock files under $TMPDIR/rerank-test-kubelet-ips keep concurrent test
 *   processes apart). THE ONE LIBERTY TAKEN WITH THE POD'S COMMAND: `--host 127.0.0.N` is appended to
 *   the args of `rerank-server start` and `rerank-server router`, which stand for the pod's own IP.
 * - **Containers**: `rerank-server` is `node <repo>/server/cli/main.ts` (this Node, process.execPath),
 *   run as a local process inside a private mount namespace (`unshare --mount --propagation private`,
 *   needs root) where each of the container's volumeMounts is bind-mounted from the pod's directory on
 *   this machine over its absolute path (/etc/rerank, /models, /tmp; read-only where the mount says
 *   so), like a container runtime: the rendered config names `/models/<version>` and those paths
 *   resolve. The mount points are created on this machine and stay empty there. Everything else of the
 *   container (image, resources, securityContext, liveness probe, env from Secrets) is ignored.
 * - **Init containers are not run**: their model sources (hf://, pvc://, ...) are not reachable here.
 *   Instead, for an init container `rerank-server models pull <source> --dir <dir>` the generated tiny
 *   model (`tinyModel()` from test/support/models.ts, or the `model` option) is copied to `<dir>` in its
 *   volume: for the operator's pods that is the models volume at `/models/<version>`, the version being
 *   the pod's `rerank.dev/version` label. A pod without such an init container that mounts /models and
 *   carries that label gets the model at `/models/<version>` all the same.
 * - **ConfigMap (and Secret) volumes like kubelet's atomic writer**: the data goes to
 *   `<volume>/..<timestamp>/`, a `..data_tmp` symlink to it is renamed over `..data`, each key is a
 *   top-level symlink `<key> -> ..data/<key>`, and the previous timestamped directory is removed. The
 *   volume is refreshed, and rewritten only when its content changed, (a) whenever the Pod object
 *   itself changes (labels, annotations or spec: a real kubelet resyncs a pod's volumes then, which is
 *   what the operator's `rerank.dev/config-hash` annotation relies on), (b) when a container exits (the
 *   pod sync that follows refreshes them before the restart) and (c) on a slow periodic sync
 *   (`syncPeriodMs`, 60 s like kubelet's). Never on a ConfigMap change alone.
 * - **Status** through the status subresource: phase, podIP(s) 127.0.0.N, hostIP 127.0.0.1, startTime,
 *   conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled) and
 *   container statuses; Ready follows the container's readinessProbe httpGet, polled every
 *   `probePeriodMs` (its failureThreshold counts in those periods). The ReplicaSet, Deployment and
 *   EndpointSlice controllers of kube-controller-manager take it from there.
 * - **Exit and deletion**: a container that exits is reported terminated and not ready, and restarted
 *   after a back-off (restartPolicy Always, or OnFailure after a failure) with restartCount + 1. A pod
 *   given a deletionTimestamp has its processes SIGTERMed (SIGKILLed after `killAfterMs` at most), and
 *   is then deleted with gracePeriodSeconds 0, as kubelet does.
 *
 * `stop()` kills every process, ends the watches and (unless `deletePodsOnStop: false`) deletes the pods
 * it ran, so no Running pod remains whose process is gone. Processes also die with the test process:
 * they run under `setpriv --pdeathsig KILL` and a process 'exit' hook SIGKILLs them. Pods bound to the
 * node whose deletion is overdue and that no kubelet runs (a test process killed before stop()) are
 * deleted for good at start and every 30 s, so their namespaces can finish terminating.
 *
 * Limits: the API server rejects loopback addresses in EndpointSlices ("may not be in the loopback
 * range"), so Services selecting these pods get no endpoints (kube-controller-manager logs
 * FailedToUpdateEndpointSlices): find pods by label and call their podIP, as the operator does. Service
 * DNS names do not resolve here either. Liveness probes are not run.
 */

/** A Pod as it comes over the wire (only what the test kubelet reads). */
export interface PodObject {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
  };
  spec: PodSpec;
  status?: { phase?: string; conditions?: Array<{ type: string; status: string; lastTransitionTime?: string }> };
}

interface PodSpec {
  nodeName?: string;
  restartPolicy?: string;
  terminationGracePeriodSeconds?: number;
  initContainers?: ContainerSpec[];
  containers: ContainerSpec[];
  volumes?: VolumeSpec[];
}

interface ContainerSpec {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
}

interface Probe {
  httpGet?: { path?: string; port: number | string; scheme?: string };
  failureThreshold?: number;
  successThreshold?: number;
  timeoutSeconds?: number;
}

interface KeyToPath {
  key: string;
  path: string;
}

interface VolumeSpec {
  name: string;
  configMap?: { name: string; items?: KeyToPath[]; optional?: boolean };
  secret?: { secretName: string; items?: KeyToPath[]; optional?: boolean };
  emptyDir?: object;
}

export interface TestKubeletOptions {
  kubeConfig: KubeConfig;
  /** Namespaces whose pods this kubelet runs. */
  namespaces: string[];
  /** Pods it runs (default `SERVER_POD_SELECTOR`: the operator's server pods). */
  labelSelector?: string;
  /** Node the pods are bound to (default `test-kubelet`); created or updated at start. */
  nodeName?: string;
  /** Periodic resync of every pod's ConfigMap volumes (default 60000, kubelet's). */
  syncPeriodMs?: number;
  /** Readiness (and startup) probe period (default 1000). */
  probePeriodMs?: number;
  /** SIGKILL a process this long after SIGTERM at most (default 5000; less when the pod's grace period is shorter). */
  killAfterMs?: number;
  /** First restart back-off of an exited container, doubled each time up to 5 min (default 10000, kubelet's). */
  restartBackoffMs?: number;
  /**
   * Pods for which this answers true never get ready: bound, given an IP, but their (simulated) init
   * container never completes, so no process starts: phase Pending, Initialized and Ready False.
   */
  neverReady?: (pod: PodObject) => boolean;
  /** Directory whose files (model.onnx, tokenizer.json, ...) stand in for what `models pull` fetches (default: tinyModel()). */
  model?: (pod: PodObject) => string | Promise<string>;
  /** Delete the pods it ran when stopped (default true). */
  deletePodsOnStop?: boolean;
  /** Bytes of output kept per pod for `logs()` (default 64 KiB). */
  logBytes?: number;
  /** Copy every process's output to stderr, prefixed (default: env RERANK_TEST_KUBELET_ECHO=1). */
  echo?: boolean;
  /** The API server ends each pod watch after this long, and the kubelet re-lists (default: 300-600 s at random, like client-go). */
  watchTimeoutSeconds?: number;
}

export interface KubeletPod {
  namespace: string;
  name: string;
  uid: string;
  /** 127.0.0.N, once allocated. */
  ip: string | undefined;
  /** The server container's process id while it runs. */
  pid: number | undefined;
  /** Host directory of the pod's `config` volume (the ConfigMap mounted at /etc/rerank), once written. */
  configDir: string | undefined;
  phase: string;
  ready: boolean;
  restartCount: number;
}

export interface TestKubelet {
  readonly nodeName: string;
  /** The pods this kubelet runs now. */
  pods(): KubeletPod[];
  /** One of them by name (any namespace unless given). */
  pod(name: string, namespace?: string): KubeletPod | undefined;
  /** The last output of a pod's processes (also of pods already gone). */
  logs(name: string, namespace?: string): string;
  /** Kill every process, end the watches, delete the pods it ran (see `deletePodsOnStop`). */
  stop(): Promise<void>;
}

/** The operator's server pods. */
export const SERVER_POD_SELECTOR = `${LABEL.managedBy}=${MANAGED_BY},${LABEL.component}=server`;
export const DEFAULT_NODE_NAME = 'test-kubelet';
const SERVER_MAIN = path.join(ROOT, 'server/cli/main.ts');
const FIELD_MANAGER = 'test-kubelet';
const IP_LOCK_DIR = path.join(os.tmpdir(), 'rerank-test-kubelet-ips');
const MAX_BACKOFF_MS = 300_000;

function log(message: string, error?: unknown): void {
  const detail = error === undefined ? '' : `: ${describeError(error)}`;
  process.stderr.write(`[test-kubelet] ${message}${detail}\n`);
}

function describeError(error: unknown): string {
  if (error instanceof ApiException) {
    const body = typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
    return `HTTP ${error.code}: ${body.slice(0, 500)}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function apiCode(error: unknown): number | undefined {
  if (error instanceof ApiException) return error.code;
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** metav1.Time: RFC 3339, whole seconds. */
const timeNow = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
/** metav1.MicroTime: six fractional digits. */
const microNow = () => new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

function probeUnshare(): string | false {
  if (process.platform !== 'linux') return `test kubelet: needs Linux mount namespaces (unshare --mount); this is ${process.platform}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'test-kubelet-probe-'));
  try {
    const result = spawnSync('unshare', ['--mount', '--propagation', 'private', 'mount', '--bind', dir, dir], { encoding: 'utf8', timeout: 10_000 });
    if (result.error) return `test kubelet: cannot run unshare (${result.error.message}); it runs each pod's server in a private mount namespace`;
    if (result.status !== 0) {
      return (
        `test kubelet: \`unshare --mount --propagation private mount --bind\` failed (exit ${result.status}: ${result.stderr.trim()}); ` +
        "it needs root (CAP_SYS_ADMIN) to give each pod's server its own /etc/rerank, /models and /tmp"
      );
    }
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `false` where pods can be run; otherwise why the tests that need it skip. */
export const kubeletSkip: string | false = probeUnshare();
const hasSetpriv = !kubeletSkip && spawnSync('setpriv', ['--help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig') === true;

// ---- loopback addresses, shared with concurrent test processes through lock files ----

const heldIps = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryLock(ip: string): boolean {
  const file = path.join(IP_LOCK_DIR, ip);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let owner = 0;
      try {
        owner = Number(readFileSync(file, 'utf8'));
      } catch {
        // Released meanwhile: try again.
      }
      if (owner && owner !== process.pid && alive(owner)) return false;
      try {
        unlinkSync(file);
      } catch {
        // Taken or released by another process meanwhile; the next attempt tells.
      }
    }
  }
  return false;
}

function releaseIp(ip: string): void {
  if (!heldIps.delete(ip)) return;
  try {
    unlinkSync(path.join(IP_LOCK_DIR, ip));
  } catch (error) {
    log(`releasing ${ip}`, error);
  }
}

function portFree(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: ip, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function allocateIp(ports: number[]): Promise<string> {
  mkdirSync(IP_LOCK_DIR, { recursive: true });
  for (let n = 2; n < 255; n += 1) {
    const ip = `127.0.0.${n}`;
    if (heldIps.has(ip) || !tryLock(ip)) continue;
    heldIps.add(ip);
    let free = true;
    for (const port of ports) if (!(await portFree(ip, port))) free = false;
    if (free) return ip;
    log(`${ip}: a port of ${ports.join(', ')} is taken by a process that holds no lock; skipping that address`);
    releaseIp(ip);
  }
  throw new Error('no free loopback address in 127.0.0.2-254');
}

// ---- processes that must not outlive the test process ----

const liveKubelets = new Set<Kubelet>();
process.once('exit', () => {
  for (const kubelet of liveKubelets) kubelet.killNow();
  for (const ip of [...heldIps]) releaseIp(ip);
});

// ---- output kept for logs() ----

class LogBuffer {
  #chunks: string[] = [];
  #size = 0;
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  append(text: string): void {
    this.#chunks.push(text);
    this.#size += text.length;
    while (this.#size > this.#max && this.#chunks.length > 1) this.#size -= this.#chunks.shift()?.length ?? 0;
    if (this.#size > this.#max && this.#chunks[0]) {
      this.#chunks[0] = this.#chunks[0].slice(this.#size - this.#max);
      this.#size = this.#max;
    }
  }
  text(): string {
    return this.#chunks.join('');
  }
  tail(lines: number): string {
    return this.text().trimEnd().split('\n').slice(-lines).join('\n');
  }
}

// ---- ConfigMap/Secret volumes: kubelet's atomic writer ----

/** `..2006_01_02_15_04_05.<random>` like kubelet's timestamped payload directories. */
function payloadDirPrefix(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `..${d.getUTCFullYear()}_${pad(d.getUTCMonth() + 1)}_${pad(d.getUTCDate())}_${pad(d.getUTCHours())}_${pad(d.getUTCMinutes())}_${pad(d.getUTCSeconds())}.`;
}

async function readTree(dir: string, prefix = ''): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) for (const [k, v] of await readTree(path.join(dir, entry.name), rel)) files.set(k, v);
    else files.set(rel, await readFile(path.join(dir, entry.name)));
  }
  return files;
}

function samePayload(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, value] of a) if (!b.get(key)?.equals(value)) return false;
  return true;
}

/** Writes `payload` into `dir` as kubelet does; false when the content was already there. */
export async function writeAtomically(dir: string, payload: Map<string, Buffer>): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  const dataLink = path.join(dir, '..data');
  const oldTarget = await readlink(dataLink).catch(() => undefined);
  const oldPayload = oldTarget ? await readTree(path.join(dir, oldTarget)).catch(() => undefined) : undefined;
  if (oldPayload && samePayload(oldPayload, payload)) return false;
  const newDir = await mkdtemp(path.join(dir, payloadDirPrefix()));
  for (const [rel, content] of payload) {
    const file = path.join(newDir, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content, { mode: 0o644 });
  }
  const tmpLink = path.join(dir, '..data_tmp');
  await rm(tmpLink, { force: true });
  await symlink(path.basename(newDir), tmpLink);
  await rename(tmpLink, dataLink);
  const top = (keys: Iterable<string>) => new Set([...keys].map((rel) => rel.split('/')[0] ?? rel));
  const newTop = top(payload.keys());
  for (const name of newTop) {
    const link = path.join(dir, name);
    if ((await readlink(link).catch(() => undefined)) === undefined) await symlink(path.join('..data', name), link);
  }
  for (const name of top(oldPayload?.keys() ?? [])) if (!newTop.has(name)) await unlink(path.join(dir, name)).catch(() => {});
  if (oldTarget) await rm(path.join(dir, oldTarget), { recursive: true, force: true });
  return true;
}

function selectItems(
  what: string,
  entries: Map<string, Buffer>,
  items: KeyToPath[] | undefined,
  optional: boolean | undefined,
): Map<string, Buffer> {
  if (!items) return entries;
  const payload = new Map<string, Buffer>();
  for (const item of items) {
    const value = entries.get(item.key);
    if (value === undefined) {
      if (optional) continue;
      throw new Error(`${what} has no key "${item.key}"`);
    }
    payload.set(item.path, value);
  }
  return payload;
}

// ---- the kubelet ----

type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: { exitCode: number; signal?: number; reason: string; message?: string; startedAt?: string; finishedAt: string } };

interface ContainerRun {
  spec: ContainerSpec;
  state: ContainerState;
  lastState: ContainerState | undefined;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  everStarted: boolean;
  restartCount: number;
  backoffMs: number;
  restartTimer: NodeJS.Timeout | undefined;
  started: boolean;
  ready: boolean;
  failures: number;
  successes: number;
  probing: boolean;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function isModelsPull(container: ContainerSpec): string | undefined {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  if (argv[0] !== 'rerank-server' || argv[1] !== 'models' || argv[2] !== 'pull') return undefined;
  const at = argv.indexOf('--dir');
  return at > 0 ? argv[at + 1] : undefined;
}

/** Host path of `containerPath` through a container's volume mounts (longest mount path wins). */
function hostPathOf(containerPath: string, container: ContainerSpec, volumeDir: (name: string) => string): string | undefined {
  let best: { mountPath: string; source: string } | undefined;
  for (const mount of container.volumeMounts ?? []) {
    const mountPath = mount.mountPath.replace(/\/+$/, '') || '/';
    if (containerPath !== mountPath && !containerPath.startsWith(`${mountPath}/`)) continue;
    if (best && best.mountPath.length >= mountPath.length) continue;
    best = { mountPath, source: path.join(volumeDir(mount.name), mount.subPath ?? '') };
  }
  return best && path.join(best.source, path.relative(best.mountPath, containerPath));
}

class PodRuntime {
  pod: PodObject;
  readonly key: string;
  readonly uid: string;
  readonly dir: string;
  readonly logs: LogBuffer;
  ip: string | undefined;
  readonly runs: ContainerRun[];
  initState: 'pending' | 'running' | 'done' = 'pending';
  terminating = false;
  gone = false;
  startTime: string | undefined;
  readonly #kubelet: Kubelet;
  #metaKey: string;
  #volumesWritten = false;
  #volumeChain: Promise<void> = Promise.resolve();
  #reporting = false;
  #dirty = false;
  #lastReport = '';
  #conditionSince = new Map<string, { status: string; time: string }>();
  #retryTimer: NodeJS.Timeout | undefined;
  #reportTimer: NodeJS.Timeout | undefined;

  constructor(kubelet: Kubelet, pod: PodObject) {
    this.#kubelet = kubelet;
    this.pod = pod;
    this.key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    this.uid = pod.metadata.uid;
    this.dir = path.join(kubelet.root, 'pods', pod.metadata.uid);
    this.logs = kubelet.logBuffer(this.key);
    this.#metaKey = PodRuntime.metaKey(pod);
    this.runs = pod.spec.containers.map((spec) => ({
      spec,
      state: { waiting: { reason: 'ContainerCreating' } },
      lastState: undefined,
      child: undefined,
      exited: undefined,
      everStarted: false,
      restartCount: 0,
      backoffMs: kubelet.options.restartBackoffMs,
      restartTimer: undefined,
      started: false,
      ready: false,
      failures: 0,
      successes: 0,
      probing: false,
    }));
  }

  /** A change of these makes kubelet resync the pod; key order does not count (list items come through client-node's typed models, watch events as sent). */
  static metaKey(pod: PodObject): string {
    return canonicalJson([pod.metadata.labels ?? {}, pod.metadata.annotations ?? {}, pod.spec]);
  }

  volumeDir(name: string): string {
    return path.join(this.dir, 'volumes', name);
  }

  get configDir(): string | undefined {
    const volume = this.pod.spec.volumes?.find((v) => v.name === 'config' && v.configMap) ?? this.pod.spec.volumes?.find((v) => v.configMap);
    return volume && this.#volumesWritten ? this.volumeDir(volume.name) : undefined;
  }

  info(): KubeletPod {
    const main = this.runs[0];
    return {
      namespace: this.pod.metadata.namespace,
      name: this.pod.metadata.name,
      uid: this.uid,
      ip: this.ip,
      pid: main?.child?.exitCode === null ? main.child.pid : undefined,
      configDir: this.configDir,
      phase: this.#phase(),
      ready: this.#ready(),
      restartCount: main?.restartCount ?? 0,
    };
  }

  /** A new version of the Pod object from the API. */
  update(pod: PodObject): void {
    this.pod = pod;
    if (pod.metadata.deletionTimestamp) {
      void this.terminate();
      return;
    }
    const metaKey = PodRuntime.metaKey(pod);
    if (metaKey !== this.#metaKey) {
      this.#metaKey = metaKey;
      // A real kubelet resyncs the pod's volumes when the pod changes: the operator's nudge.
      if (this.#volumesWritten) this.refreshVolumes('pod updated');
    }
  }

  refreshVolumes(why: string): void {
    this.#volumeChain = this.#volumeChain
      .then(async () => {
        // Before the first write, start() owns the volumes (and retries them).
        if (this.terminating || this.gone || !this.#volumesWritten) return;
        const changed = await this.#writeVolumes();
        if (changed.length) this.#kubelet.debug(`${this.key}: ${why}: rewrote volume(s) ${changed.join(', ')}`);
      })
      .catch((error: unknown) => log(`${this.key}: refreshing volumes (${why})`, error));
  }

  async #writeVolumes(): Promise<string[]> {
    const changed: string[] = [];
    const namespace = this.pod.metadata.namespace;
    for (const volume of this.pod.spec.volumes ?? []) {
      const dir = this.volumeDir(volume.name);
      if (volume.configMap) {
        const source = volume.configMap;
        const entries = await this.#kubelet.readConfigMap(namespace, source.name);
        if (!entries && !source.optional) throw new Error(`configmap "${source.name}" not found`);
        const payload = selectItems(`configmap "${source.name}"`, entries ?? new Map(), source.items, source.optional);
        if (await writeAtomically(dir, payload)) changed.push(volume.name);
      } else if (volume.secret) {
        const source = volume.secret;
        const entries = await this.#kubelet.readSecret(namespace, source.secretName);
        if (!entries && !source.optional) throw new Error(`secret "${source.secretName}" not found`);
        const payload = selectItems(`secret "${source.secretName}"`, entries ?? new Map(), source.items, source.optional);
        if (await writeAtomically(dir, payload)) changed.push(volume.name);
      } else {
        if (!volume.emptyDir) this.#kubelet.warnOnce(`${this.key}/${volume.name}`, `${this.key}: volume "${volume.name}" is neither emptyDir, configMap nor secret: an empty directory stands in`);
        await mkdir(dir, { recursive: true });
      }
    }
    this.#volumesWritten = true;
    return changed;
  }

  /** Bring the pod up: address, volumes, (simulated) init containers, containers. */
  async start(): Promise<void> {
    if (this.terminating || this.gone) return;
    try {
      if (!this.ip) {
        const ports = this.runs.flatMap((run) => run.spec.ports?.map((p) => p.containerPort) ?? []);
        const ip = await allocateIp(ports);
        if (this.gone) {
          releaseIp(ip);
          return;
        }
        this.ip = ip;
        this.startTime ??= timeNow();
      }
      if (!this.#volumesWritten) {
        const written = this.#volumeChain.then(() => this.#writeVolumes());
        this.#volumeChain = written.then(
          () => undefined,
          () => undefined,
        );
        await written;
      }
    } catch (error) {
      // kubelet: ContainerCreating with a MountVolume.SetUp failure, retried.
      for (const run of this.runs) run.state = { waiting: { reason: 'ContainerCreating', message: describeError(error) } };
      this.scheduleReport();
      log(`${this.key}: setting up the pod (retrying in 1 s)`, error);
      this.#retry(() => void this.start());
      return;
    }
    if (this.terminating || this.gone) return;
    if (this.initState !== 'done') {
      if (this.#kubelet.options.neverReady?.(this.pod)) {
        this.initState = 'running';
        for (const run of this.runs) run.state = { waiting: { reason: 'PodInitializing' } };
        this.scheduleReport();
        return;
      }
      try {
        await this.#simulateInit();
      } catch (error) {
        log(`${this.key}: placing the model (retrying in 1 s)`, error);
        this.#retry(() => void this.start());
        return;
      }
      this.initState = 'done';
    }
    if (this.terminating || this.gone) return;
    for (const run of this.runs) if (!run.child && !run.restartTimer) this.#spawn(run);
    this.scheduleReport();
  }

  #retry(fn: () => void): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.terminating && !this.gone) fn();
    }, 1000);
  }

  async #simulateInit(): Promise<void> {
    const version = this.pod.metadata.labels?.[LABEL.version];
    const targets: string[] = [];
    for (const init of this.pod.spec.initContainers ?? []) {
      const dir = isModelsPull(init);
      const host = dir ? hostPathOf(dir, init, (name) => this.volumeDir(name)) : undefined;
      if (host) targets.push(host);
      else this.#kubelet.warnOnce(`init:${init.name}`, `${this.key}: init container "${init.name}" (${[...(init.command ?? []), ...(init.args ?? [])].join(' ')}) is not run by the test kubelet`);
    }
    if (!targets.length && version) {
      for (const run of this.runs) {
        const host = hostPathOf(`/models/${version}`, run.spec, (name) => this.volumeDir(name));
        if (host) targets.push(host);
      }
    }
    if (!targets.length) return;
    const source = await (this.#kubelet.options.model ? this.#kubelet.options.model(this.pod) : tinyModel().then((m) => m.dir));
    for (const target of new Set(targets)) {
      await mkdir(target, { recursive: true });
      await cp(source, target, { recursive: true });
    }
  }

  #argv(run: ContainerRun): string[] {
    const command = run.spec.command ?? ['rerank-server'];
    if (command[0] !== 'rerank-server') throw new Error(`command ${JSON.stringify(command)}: the test kubelet runs only rerank-server`);
    const args = [...command.slice(1), ...(run.spec.args ?? [])];
    if (this.ip && (args[0] === 'start' || args[0] === 'router')) args.push('--host', this.ip);
    return [process.execPath, SERVER_MAIN, ...args];
  }

  /** The sh script run in the private mount namespace: the pod's volumes over the container's paths, then exec. */
  #mountScript(run: ContainerRun): string {
    const root = this.#kubelet.root;
    const under = (p: string, dir: string) => dir === '/' || p === dir || p.startsWith(`${dir}/`);
    const mounts = (run.spec.volumeMounts ?? []).map((m) => ({
      source: path.join(this.volumeDir(m.name), m.subPath ?? ''),
      target: path.resolve('/', m.mountPath),
      readOnly: Boolean(m.readOnly),
    }));
    for (const m of mounts) {
      if (under(ROOT, m.target) || under(process.execPath, m.target)) {
        throw new Error(`the container mounts a volume at ${m.target}, over the project (${ROOT}) or Node (${process.execPath}); clone the project elsewhere`);
      }
    }
    // Mounts over an ancestor of the pods' directories (/tmp) go last: they would hide the other sources.
    mounts.sort((a, b) => Number(under(root, a.target)) - Number(under(root, b.target)) || a.target.length - b.target.length);
    const lines = ['set -e'];
    for (const m of mounts) lines.push(`mkdir -p ${quote(m.source)} ${quote(m.target)}`, `mount --bind ${quote(m.source)} ${quote(m.target)}`);
    for (const m of mounts) if (m.readOnly) lines.push(`mount -o remount,bind,ro ${quote(m.target)}`);
    lines.push('exec "$@"');
    return lines.join('\n');
  }

  #spawn(run: ContainerRun): void {
    const name = run.spec.name;
    let argv: string[];
    let script: string;
    try {
      argv = this.#argv(run);
      script = this.#mountScript(run);
    } catch (error) {
      run.state = { waiting: { reason: 'CreateContainerError', message: describeError(error) } };
      log(`${this.key}: container "${name}"`, error);
      this.scheduleReport();
      return;
    }
    const env: NodeJS.ProcessEnv = { ...process.env };
    // The test runner's marker would make the child act as a test file.
    delete env.NODE_TEST_CONTEXT;
    for (const variable of run.spec.env ?? []) if (variable.value !== undefined) env[variable.name] = variable.value;
    const wrapper = [...(hasSetpriv ? ['setpriv', '--pdeathsig', 'KILL'] : []), 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...argv];
    const [file, ...rest] = wrapper as [string, ...string[]];
    const child = spawn(file, rest, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const startedAt = timeNow();
    const prefix = this.runs.length > 1 ? `[${name}] ` : '';
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      this.logs.append(prefix ? text.replace(/^(?=.)/gm, prefix) : text);
      if (this.#kubelet.options.echo) process.stderr.write(text.replace(/^(?=.)/gm, `[${this.key}${prefix ? `/${name}` : ''}] `));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    run.child = child;
    run.everStarted = true;
    run.started = !run.spec.startupProbe;
    run.ready = false;
    run.failures = 0;
    run.successes = 0;
    run.state = { running: { startedAt } };
    this.#kubelet.children.add(child);
    run.exited = new Promise<void>((resolve) => {
      let done = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
        if (done) return;
        done = true;
        this.#kubelet.children.delete(child);
        resolve();
        this.#exited(run, child, startedAt, code, signal, error);
      };
      child.once('error', (error) => finish(null, null, error));
      child.once('exit', (code, signal) => finish(code, signal));
    });
    this.#kubelet.debug(`${this.key}: started "${name}" (pid ${child.pid}) on ${this.ip}: ${argv.slice(1).join(' ')}`);
  }

  #exited(run: ContainerRun, child: ChildProcess, startedAt: string, code: number | null, signal: NodeJS.Signals | null, error?: Error): void {
    if (run.child === child) run.child = undefined;
    const exitCode = code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 128);
    run.state = {
      terminated: {
        exitCode,
        ...(signal ? { signal: os.constants.signals[signal] } : {}),
        reason: exitCode === 0 ? 'Completed' : 'Error',
        ...(error ? { message: error.message } : {}),
        startedAt,
        finishedAt: timeNow(),
      },
    };
    run.ready = false;
    run.started = false;
    if (this.terminating || this.gone || this.#kubelet.stopping) return;
    const how = error ? `failed to start (${error.message})` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
    log(`${this.key}: container "${run.spec.name}" (pid ${child.pid}) ${how}; its last output:\n${this.logs.tail(30)}`);
    // A container event makes kubelet sync the pod, which refreshes its ConfigMap volumes.
    this.refreshVolumes('container exited');
    const policy = this.pod.spec.restartPolicy ?? 'Always';
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      run.lastState = run.state;
      run.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(run.backoffMs / 1000)}s restarting failed container=${run.spec.name} pod=${this.pod.metadata.name}` } };
      run.restartTimer = setTimeout(() => {
        run.restartTimer = undefined;
        if (this.terminating || this.gone || this.#kubelet.stopping) return;
        run.restartCount += 1;
        run.backoffMs = Math.min(run.backoffMs * 2, MAX_BACKOFF_MS);
        // After the refresh the exit queued.
        void this.#volumeChain.then(() => {
          if (this.terminating || this.gone || this.#kubelet.stopping) return;
          this.#spawn(run);
          this.scheduleReport();
        });
      }, run.backoffMs);
    }
    this.scheduleReport();
  }

  /** One probe round (called every probePeriodMs). */
  probe(): void {
    for (const run of this.runs) {
      if (!run.child || run.probing || !this.ip) continue;
      const probe = run.started ? run.spec.readinessProbe : run.spec.startupProbe;
      if (!probe) {
        if (!run.ready && run.started) {
          run.ready = true;
          this.scheduleReport();
        }
        continue;
      }
      run.probing = true;
      void this.#httpProbe(run, probe).then((ok) => {
        run.probing = false;
        if (!run.child) return;
        const before = [run.started, run.ready].join();
        if (ok) {
          run.failures = 0;
          run.successes += 1;
          if (!run.started) {
            // The readiness probe starts as soon as the startup probe succeeds.
            run.started = true;
            run.successes = 0;
            queueMicrotask(() => this.probe());
          } else if (run.successes >= (probe.successThreshold ?? 1)) run.ready = true;
        } else {
          run.successes = 0;
          run.failures += 1;
          if (run.started && run.failures >= (probe.failureThreshold ?? 3)) run.ready = false;
        }
        if ([run.started, run.ready].join() !== before) this.scheduleReport();
      });
    }
  }

  #httpProbe(run: ContainerRun, probe: Probe): Promise<boolean> {
    const get = probe.httpGet;
    if (!get || !this.ip) return Promise.resolve(Boolean(run.child));
    const port = typeof get.port === 'number' ? get.port : run.spec.ports?.find((p) => p.name === get.port)?.containerPort ?? Number(get.port);
    const timeout = Math.min(1000 * (probe.timeoutSeconds ?? 1), 2000);
    return new Promise((resolve) => {
      const request = http.get({ host: this.ip, port, path: get.path ?? '/', agent: false, timeout }, (response) => {
        response.resume();
        const status = response.statusCode ?? 0;
        resolve(status >= 200 && status < 400);
      });
      request.once('timeout', () => request.destroy(new Error('probe timed out')));
      request.once('error', () => resolve(false));
    });
  }

  #ready(): boolean {
    return this.initState === 'done' && this.runs.every((run) => run.ready) && !this.terminating;
  }

  #phase(): string {
    if (this.initState !== 'done' || !this.runs.some((run) => run.everStarted)) return 'Pending';
    const policy = this.pod.spec.restartPolicy ?? 'Always';
    const final = this.runs.every((run) => 'terminated' in run.state && !run.restartTimer);
    if (policy !== 'Always' && final) {
      return this.runs.every((run) => 'terminated' in run.state && run.state.terminated.exitCode === 0) ? 'Succeeded' : 'Failed';
    }
    return 'Running';
  }

  #condition(type: string, ok: boolean, reason?: string, message?: string): Record<string, unknown> {
    const status = ok ? 'True' : 'False';
    let since = this.#conditionSince.get(type);
    if (!since || since.status !== status) {
      const scheduled = type === 'PodScheduled' ? this.pod.status?.conditions?.find((c) => c.type === type && c.status === status) : undefined;
      since = { status, time: scheduled?.lastTransitionTime ?? timeNow() };
      this.#conditionSince.set(type, since);
    }
    return { type, status, lastProbeTime: null, lastTransitionTime: since.time, ...(ok || !reason ? {} : { reason, message }) };
  }

  #status(): Record<string, unknown> {
    const names = (runs: ContainerRun[]) => `[${runs.map((run) => run.spec.name).join(' ')}]`;
    const unready = this.runs.filter((run) => !run.ready || this.terminating);
    const inits = this.pod.spec.initContainers ?? [];
    const initDone = this.initState === 'done';
    const initStatuses = inits.map((init) => ({
      name: init.name,
      image: init.image ?? '',
      imageID: '',
      ready: initDone,
      started: this.initState === 'running',
      restartCount: 0,
      state:
        this.initState === 'done'
          ? { terminated: { exitCode: 0, reason: 'Completed', startedAt: this.startTime, finishedAt: this.startTime } }
          : this.initState === 'running'
            ? { running: { startedAt: this.startTime } }
            : { waiting: { reason: 'PodInitializing' } },
      lastState: {},
      ...(this.initState !== 'pending' ? { containerID: `test-kubelet://${this.uid}/${init.name}` } : {}),
    }));
    const containerStatuses = this.runs.map((run) => ({
      name: run.spec.name,
      image: run.spec.image ?? '',
      imageID: '',
      ready: run.ready && !this.terminating,
      started: run.started,
      restartCount: run.restartCount,
      state: run.state,
      lastState: run.lastState ?? {},
      ...(run.everStarted ? { containerID: `test-kubelet://${this.uid}/${run.spec.name}/${run.restartCount}` } : {}),
    }));
    const ip = this.ip;
    return {
      phase: this.#phase(),
      hostIP: '127.0.0.1',
      hostIPs: [{ ip: '127.0.0.1' }],
      ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
      ...(this.startTime ? { startTime: this.startTime } : {}),
      conditions: [
        this.#condition('PodReadyToStartContainers', Boolean(ip)),
        this.#condition('Initialized', initDone, 'ContainersNotInitialized', `containers with incomplete status: [${inits.map((i) => i.name).join(' ')}]`),
        this.#condition('Ready', this.#ready(), 'ContainersNotReady', `containers with unready status: ${names(unready)}`),
        this.#condition('ContainersReady', this.#ready(), 'ContainersNotReady', `containers with unready status: ${names(unready)}`),
        this.#condition('PodScheduled', true),
      ],
      ...(inits.length ? { initContainerStatuses: initStatuses } : {}),
      containerStatuses,
    };
  }

  /** Report status soon; reports are serialized and coalesced, and sent only when something changed. */
  scheduleReport(): void {
    this.#dirty = true;
    if (!this.#reporting) void this.#flush();
  }

  async #flush(): Promise<void> {
    this.#reporting = true;
    try {
      while (this.#dirty && !this.gone) {
        this.#dirty = false;
        const status = this.#status();
        const text = JSON.stringify(status);
        if (text === this.#lastReport) continue;
        try {
          await this.#kubelet.patchStatus(this.pod, status);
          this.#lastReport = text;
        } catch (error) {
          if (apiCode(error) === 404) return;
          log(`${this.key}: reporting status (retrying in 1 s)`, error);
          clearTimeout(this.#reportTimer);
          this.#reportTimer = setTimeout(() => {
            if (!this.gone) this.scheduleReport();
          }, 1000);
          return;
        }
      }
    } finally {
      this.#reporting = false;
    }
  }

  async #killAll(graceMs: number): Promise<void> {
    await Promise.all(
      this.runs.map(async (run) => {
        clearTimeout(run.restartTimer);
        run.restartTimer = undefined;
        const child = run.child;
        if (!child || !run.exited) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await run.exited;
        clearTimeout(timer);
      }),
    );
  }

  /** The pod got a deletionTimestamp: stop its processes, then delete it for good. */
  async terminate(): Promise<void> {
    if (this.terminating || this.gone) return;
    this.terminating = true;
    clearTimeout(this.#retryTimer);
    const seconds = this.pod.metadata.deletionGracePeriodSeconds ?? this.pod.spec.terminationGracePeriodSeconds ?? 30;
    await this.#killAll(Math.min(this.#kubelet.options.killAfterMs, seconds * 1000));
    this.scheduleReport();
    await this.#kubelet.deletePod(this.pod);
    this.forget();
  }

  /** Stop the processes without touching the API (the pod is gone, or the kubelet stops). */
  async kill(): Promise<void> {
    this.terminating = true;
    clearTimeout(this.#retryTimer);
    await this.#killAll(this.#kubelet.options.killAfterMs);
  }

  forget(): void {
    if (this.gone) return;
    this.gone = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#reportTimer);
    if (this.ip) releaseIp(this.ip);
    this.#kubelet.forget(this);
    void rm(this.dir, { recursive: true, force: true }).catch((error: unknown) => log(`${this.key}: removing ${this.dir}`, error));
  }
}

/** Typed client model (a list item) back to wire JSON. */
function podToWire(item: object): PodObject {
  return load(dumpYaml({ apiVersion: 'v1', kind: 'Pod', ...item }, { lineWidth: -1 }), { schema: JSON_SCHEMA }) as PodObject;
}

interface ResolvedOptions {
  syncPeriodMs: number;
  probePeriodMs: number;
  killAfterMs: number;
  restartBackoffMs: number;
  neverReady: ((pod: PodObject) => boolean) | undefined;
  model: ((pod: PodObject) => string | Promise<string>) | undefined;
  deletePodsOnStop: boolean;
  logBytes: number;
  echo: boolean;
  watchTimeoutSeconds: number | undefined;
}

class Kubelet implements TestKubelet {
  readonly nodeName: string;
  readonly root: string;
  readonly options: ResolvedOptions;
  readonly children = new Set<ChildProcess>();
  stopping = false;
  readonly #core: CoreV1Api;
  readonly #coordination: CoordinationV1Api;
  readonly #watch: Watch;
  readonly #namespaces: string[];
  readonly #selector: string;
  readonly #runtimes = new Map<string, PodRuntime>();
  readonly #binding = new Set<string>();
  readonly #logs = new Map<string, LogBuffer>();
  readonly #warned = new Set<string>();
  readonly #aborts = new Set<AbortController>();
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #loops: Promise<void>[] = [];
  #readyTransition: string | undefined;

  constructor(options: TestKubeletOptions) {
    this.nodeName = options.nodeName ?? DEFAULT_NODE_NAME;
    this.#namespaces = options.namespaces;
    this.#selector = options.labelSelector ?? SERVER_POD_SELECTOR;
    this.options = {
      syncPeriodMs: options.syncPeriodMs ?? 60_000,
      probePeriodMs: options.probePeriodMs ?? 1000,
      killAfterMs: options.killAfterMs ?? 5000,
      restartBackoffMs: options.restartBackoffMs ?? 10_000,
      neverReady: options.neverReady,
      model: options.model,
      deletePodsOnStop: options.deletePodsOnStop ?? true,
      logBytes: options.logBytes ?? 64 * 1024,
      echo: options.echo ?? process.env.RERANK_TEST_KUBELET_ECHO === '1',
      watchTimeoutSeconds: options.watchTimeoutSeconds,
    };
    this.root = mkdtempSync(path.join(os.tmpdir(), 'rerank-test-kubelet-'));
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#coordination = options.kubeConfig.makeApiClient(CoordinationV1Api);
    this.#watch = new Watch(options.kubeConfig);
  }

  debug(message: string): void {
    if (this.options.echo) log(message);
  }

  warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    log(message);
  }

  logBuffer(key: string): LogBuffer {
    let buffer = this.#logs.get(key);
    if (!buffer) {
      buffer = new LogBuffer(this.options.logBytes);
      this.#logs.set(key, buffer);
      if (this.#logs.size > 200) this.#logs.delete(this.#logs.keys().next().value ?? key);
    }
    return buffer;
  }

  async start(): Promise<void> {
    await this.#registerNode();
    this.#timers.push(
      setInterval(() => void this.#heartbeat().catch((error: unknown) => log(`heartbeat of node ${this.nodeName}`, error)), 10_000),
      setInterval(() => {
        for (const runtime of this.#runtimes.values()) runtime.probe();
      }, this.options.probePeriodMs),
      setInterval(() => {
        for (const runtime of this.#runtimes.values()) runtime.refreshVolumes('periodic sync');
      }, this.options.syncPeriodMs),
      setInterval(() => void this.#sweepOrphans(), 30_000),
    );
    await this.#sweepOrphans();
    for (const timer of this.#timers) timer.unref();
    const connected = this.#namespaces.map(
      (namespace) =>
        new Promise<void>((resolve, reject) => {
          this.#loops.push(this.#watchLoop(namespace, (error) => (error === undefined ? resolve() : reject(error))));
        }),
    );
    await Promise.all(connected);
  }

  // ---- node ----

  async #registerNode(): Promise<void> {
    const node = await this.#core.readNode({ name: this.nodeName }).catch((error: unknown) => {
      if (apiCode(error) === 404) return undefined;
      throw error;
    });
    const ready = node?.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
    this.#readyTransition = ready?.lastTransitionTime ? new Date(ready.lastTransitionTime).toISOString().replace(/\.\d+Z$/, 'Z') : timeNow();
    const body = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: this.nodeName, labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux', 'rerank.dev/test-kubelet': 'true' } },
    };
    await this.#core.patchNode({ name: this.nodeName, body, fieldManager: FIELD_MANAGER, force: true }, setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply));
    await this.#heartbeat();
  }

  async #heartbeat(): Promise<void> {
    const now = timeNow();
    const condition = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: type === 'Ready' ? this.#readyTransition : now,
    });
    const capacity = { cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: '110' };
    const status = {
      conditions: [
        condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'test kubelet'),
        condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'test kubelet'),
        condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'test kubelet'),
        condition('Ready', 'True', 'KubeletReady', 'test kubelet is posting ready status'),
      ],
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: this.nodeName },
      ],
      capacity,
      allocatable: capacity,
      nodeInfo: {
        machineID: '',
        systemUUID: '',
        bootID: '',
        kernelVersion: os.release(),
        osImage: 'test kubelet',
        containerRuntimeVersion: 'test-kubelet://1',
        kubeletVersion: 'v1.32.0-test',
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    };
    await this.#core.patchNodeStatus({ name: this.nodeName, body: { status } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.nodeName, namespace: 'kube-node-lease' },
      spec: { holderIdentity: this.nodeName, leaseDurationSeconds: 40, renewTime: microNow() },
    };
    await this.#coordination.patchNamespacedLease(
      { name: this.nodeName, namespace: 'kube-node-lease', body: lease, fieldManager: FIELD_MANAGER, force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }

  // ---- pods ----

  /**
   * Pods bound to this node whose deletion is overdue and which no kubelet stops: those of a test
   * process that died without stop(), whose namespace deletion would otherwise wait forever. Deleted
   * for good, as the node's kubelet would once it saw them.
   */
  async #sweepOrphans(): Promise<void> {
    try {
      const list = await this.#core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${this.nodeName}` });
      const now = Date.now();
      for (const item of list.items) {
        const pod = podToWire(item);
        const deletion = pod.metadata.deletionTimestamp;
        if (!deletion || Date.parse(deletion) > now || this.#runtimes.has(pod.metadata.uid)) continue;
        log(`${pod.metadata.namespace}/${pod.metadata.name}: bound to ${this.nodeName}, deletion overdue since ${deletion} and no kubelet stopping it: deleting it`);
        await this.deletePod(pod);
      }
    } catch (error) {
      if (!this.stopping) log(`sweeping overdue pods of node ${this.nodeName}`, error);
    }
  }

  /** List and watch the pods of one namespace until stopped; `connected` once first watching (or with the first list's error). */
  async #watchLoop(namespace: string, connected: (error?: unknown) => void): Promise<void> {
    let failures = 0;
    let everConnected = false;
    while (!this.stopping) {
      try {
        const list = await this.#core.listNamespacedPod({ namespace, labelSelector: this.#selector });
        const seen = new Set<string>();
        for (const item of list.items) {
          const pod = podToWire(item);
          seen.add(pod.metadata.uid);
          this.#onPod(pod);
        }
        for (const runtime of [...this.#runtimes.values()]) {
          if (runtime.pod.metadata.namespace === namespace && !seen.has(runtime.uid)) void this.#onPodGone(runtime);
        }
        await new Promise<void>((resolve) => {
          const timeoutSeconds = this.options.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
          const query = { labelSelector: this.#selector, resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true, timeoutSeconds };
          let controller: AbortController | undefined;
          const done = () => {
            if (controller) this.#aborts.delete(controller);
            resolve();
          };
          this.#watch
            .watch(
              `/api/v1/namespaces/${namespace}/pods`,
              query,
              (type: string, object: unknown) => {
                if (this.stopping) return;
                if (type === 'ERROR') {
                  const status = object as { code?: number; message?: string };
                  if (status.code !== 410) log(`watch of pods in ${namespace}: ${status.code ?? ''} ${status.message ?? ''}; re-listing`);
                  controller?.abort();
                  done();
                } else if (type === 'DELETED') {
                  const runtime = this.#runtimes.get((object as PodObject).metadata.uid);
                  if (runtime) void this.#onPodGone(runtime);
                } else if (type === 'ADDED' || type === 'MODIFIED') {
                  this.#onPod(object as PodObject);
                }
              },
              (error: unknown) => {
                if (error && !this.stopping && (error as Error).name !== 'AbortError') log(`watch of pods in ${namespace} ended; re-listing`, error);
                else if (!this.stopping) this.debug(`watch of pods in ${namespace} ended; re-listing`);
                done();
              },
            )
            .then(
              (abort) => {
                controller = abort;
                this.#aborts.add(abort);
                failures = 0;
                everConnected = true;
                connected();
                if (this.stopping) abort.abort();
              },
              (error: unknown) => {
                if (!this.stopping) log(`watching pods in ${namespace}`, error);
                done();
              },
            );
        });
      } catch (error) {
        if (!everConnected) {
          connected(error);
          return;
        }
        if (!this.stopping) log(`listing pods in ${namespace}`, error);
        failures += 1;
      }
      if (!this.stopping) await sleep(Math.min(200 * 2 ** failures, 5000));
    }
    connected();
  }

  #onPod(pod: PodObject): void {
    if (this.stopping) return;
    const runtime = this.#runtimes.get(pod.metadata.uid);
    if (runtime) {
      runtime.update(pod);
      return;
    }
    const phase = pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') return;
    if (!pod.spec.nodeName) {
      if (!pod.metadata.deletionTimestamp) void this.#bind(pod);
      return;
    }
    if (pod.spec.nodeName !== this.nodeName) return;
    if (pod.metadata.deletionTimestamp) {
      // Bound here but not running (a kubelet before this one): nothing to stop.
      void this.deletePod(pod);
      return;
    }
    const created = new PodRuntime(this, pod);
    this.#runtimes.set(created.uid, created);
    void created.start();
  }

  async #bind(pod: PodObject): Promise<void> {
    const { name, namespace, uid } = pod.metadata;
    if (this.#binding.has(uid)) return;
    this.#binding.add(uid);
    try {
      await this.#core.createNamespacedPodBinding({
        name,
        namespace,
        body: { apiVersion: 'v1', kind: 'Binding', metadata: { name, namespace, uid }, target: { apiVersion: 'v1', kind: 'Node', name: this.nodeName } },
      });
    } catch (error) {
      const code = apiCode(error);
      // 409: bound meanwhile; 404: gone. Anything else is retried on the pod's next event or in a second.
      if (code !== 409 && code !== 404 && !this.stopping) {
        log(`binding ${namespace}/${name} to ${this.nodeName} (retrying in 1 s)`, error);
        setTimeout(() => {
          this.#binding.delete(uid);
          if (!this.stopping) void this.#bind(pod);
        }, 1000).unref();
        return;
      }
    }
    this.#binding.delete(uid);
  }

  async #onPodGone(runtime: PodRuntime): Promise<void> {
    await runtime.kill();
    runtime.forget();
  }

  forget(runtime: PodRuntime): void {
    if (this.#runtimes.get(runtime.uid) === runtime) this.#runtimes.delete(runtime.uid);
  }

  async readConfigMap(namespace: string, name: string): Promise<Map<string, Buffer> | undefined> {
    try {
      const configMap = await this.#core.readNamespacedConfigMap({ name, namespace });
      const entries = new Map<string, Buffer>();
      for (const [key, value] of Object.entries(configMap.data ?? {})) entries.set(key, Buffer.from(value));
      for (const [key, value] of Object.entries(configMap.binaryData ?? {})) entries.set(key, Buffer.from(value, 'base64'));
      return entries;
    } catch (error) {
      if (apiCode(error) === 404) return undefined;
      throw error;
    }
  }

  async readSecret(namespace: string, name: string): Promise<Map<string, Buffer> | undefined> {
    try {
      const secret = await this.#core.readNamespacedSecret({ name, namespace });
      const entries = new Map<string, Buffer>();
      for (const [key, value] of Object.entries(secret.data ?? {})) entries.set(key, Buffer.from(value, 'base64'));
      return entries;
    } catch (error) {
      if (apiCode(error) === 404) return undefined;
      throw error;
    }
  }

  async patchStatus(pod: PodObject, status: Record<string, unknown>): Promise<void> {
    await this.#core.patchNamespacedPodStatus(
      { name: pod.metadata.name, namespace: pod.metadata.namespace, body: { status }, fieldManager: FIELD_MANAGER },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  async deletePod(pod: PodObject): Promise<void> {
    const { name, namespace, uid } = pod.metadata;
    try {
      await this.#core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid } } });
    } catch (error) {
      const code = apiCode(error);
      if (code !== 404 && code !== 409) log(`deleting ${namespace}/${name}`, error);
    }
  }

  // ---- TestKubelet ----

  pods(): KubeletPod[] {
    return [...this.#runtimes.values()].filter((runtime) => !runtime.terminating).map((runtime) => runtime.info());
  }

  pod(name: string, namespace?: string): KubeletPod | undefined {
    return this.pods().find((pod) => pod.name === name && (namespace === undefined || pod.namespace === namespace));
  }

  logs(name: string, namespace?: string): string {
    for (const [key, buffer] of this.#logs) {
      const [ns, pod] = key.split('/');
      if (pod === name && (namespace === undefined || ns === namespace)) return buffer.text();
    }
    return '';
  }

  /** Synchronous last resort at process exit. */
  killNow(): void {
    for (const child of this.children) child.kill('SIGKILL');
    rmSync(this.root, { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const timer of this.#timers) clearInterval(timer);
    for (const abort of this.#aborts) abort.abort();
    await Promise.all(this.#loops);
    const runtimes = [...this.#runtimes.values()];
    await Promise.all(runtimes.map((runtime) => runtime.kill()));
    if (this.options.deletePodsOnStop) await Promise.all(runtimes.map((runtime) => this.deletePod(runtime.pod)));
    for (const runtime of runtimes) runtime.forget();
    for (const child of this.children) child.kill('SIGKILL');
    liveKubelets.delete(this);
    await rm(this.root, { recursive: true, force: true });
  }
}

/** Start a test kubelet for the pods of `namespaces`; resolves once their watches are established. */
export async function startTestKubelet(options: TestKubeletOptions): Promise<TestKubelet> {
  if (kubeletSkip) throw new Error(kubeletSkip);
  const kubelet = new Kubelet(options);
  liveKubelets.add(kubelet);
  try {
    await kubelet.start();
  } catch (error) {
    await kubelet.stop();
    throw error;
  }
  return kubelet;
}
