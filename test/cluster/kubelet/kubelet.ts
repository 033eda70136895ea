import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CoordinationV1Api, CoreV1Api, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import type { KubeletPod, TestKubelet } from './api.ts';
import { apiCode, FIELD_MANAGER, log } from './helpers.ts';
import { kubeletSkip, liveKubelets } from './lifetime.ts';
import { LogBuffer } from './log-buffer.ts';
import { NodeRegistration } from './node.ts';
import { DEFAULT_NODE_NAME, resolveOptions, SERVER_POD_SELECTOR, type ResolvedOptions, type TestKubeletOptions } from './options.ts';
import { podToWire, type PodObject } from './pod-object.ts';
import { PodRuntime, type PodHost } from './pod-runtime.ts';
import { watchPods } from './pod-watch.ts';

/**
 * The test kubelet: binds the selected pods of its namespaces to its Node, runs those bound there
 * (one PodRuntime each), deletes them for good once terminated, and answers the suites (TestKubelet).
 */
class Kubelet implements TestKubelet, PodHost {
  readonly nodeName: string;
  readonly root: string;
  readonly options: ResolvedOptions;
  readonly children = new Set<ChildProcess>();
  stopping = false;
  readonly #core: CoreV1Api;
  readonly #node: NodeRegistration;
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

  constructor(options: TestKubeletOptions) {
    this.nodeName = options.nodeName ?? DEFAULT_NODE_NAME;
    this.#namespaces = options.namespaces;
    this.#selector = options.labelSelector ?? SERVER_POD_SELECTOR;
    this.options = resolveOptions(options);
    this.root = mkdtempSync(path.join(os.tmpdir(), 'rerank-test-kubelet-'));
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#node = new NodeRegistration(this.nodeName, this.#core, options.kubeConfig.makeApiClient(CoordinationV1Api));
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
    await this.#node.register();
    this.#timers.push(
      setInterval(() => void this.#node.heartbeat().catch((error: unknown) => log(`heartbeat of node ${this.nodeName}`, error)), 10_000),
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
  #watchLoop(namespace: string, connected: (error?: unknown) => void): Promise<void> {
    return watchPods(
      {
        core: this.#core,
        watch: this.#watch,
        namespace,
        labelSelector: this.#selector,
        timeoutSeconds: this.options.watchTimeoutSeconds,
        aborts: this.#aborts,
        stopping: () => this.stopping,
        debug: (message) => this.debug(message),
        pod: (pod) => this.#onPod(pod),
        listed: (uids) => {
          for (const runtime of [...this.#runtimes.values()]) {
            if (runtime.pod.metadata.namespace === namespace && !uids.has(runtime.uid)) void this.#onPodGone(runtime);
          }
        },
        deleted: (pod) => {
          const runtime = this.#runtimes.get(pod.metadata.uid);
          if (runtime) void this.#onPodGone(runtime);
        },
      },
      connected,
    );
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
