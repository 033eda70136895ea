import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { KubeletPod } from './api.ts';
import { containerArgv, mountScript, newContainerRun, spawnContainer, terminatedState, type ContainerMounts, type ContainerRun } from './container.ts';
import { canonicalJson, describeError, log, timeNow } from './helpers.ts';
import { allocateIp, releaseIp } from './ips.ts';
import type { LogBuffer } from './log-buffer.ts';
import { placeModel, type ModelHost } from './model.ts';
import type { ResolvedOptions } from './options.ts';
import type { PodObject } from './pod-object.ts';
import { probeContainers } from './probe.ts';
import { PodStatus, type InitState } from './status.ts';
import { StatusReporter } from './status-reporter.ts';
import { writeVolumes, type VolumeHost } from './volumes.ts';

/**
 * One pod on this node, from bind to deletion: its address, volumes, (simulated) init containers and
 * container processes, restarted after a back-off when they exit, and its status reported as it goes.
 */

const MAX_BACKOFF_MS = 300_000;

/** What a pod's runtime asks of the kubelet that runs it. */
export interface PodHost extends VolumeHost, ModelHost {
  readonly root: string;
  readonly options: ResolvedOptions;
  readonly children: Set<ChildProcess>;
  readonly stopping: boolean;
  debug(message: string): void;
  logBuffer(key: string): LogBuffer;
  patchStatus(pod: PodObject, status: Record<string, unknown>): Promise<void>;
  deletePod(pod: PodObject): Promise<void>;
  forget(runtime: PodRuntime): void;
}

export class PodRuntime {
  pod: PodObject;
  readonly key: string;
  readonly uid: string;
  readonly dir: string;
  readonly logs: LogBuffer;
  ip: string | undefined;
  readonly runs: ContainerRun[];
  initState: InitState = 'pending';
  terminating = false;
  gone = false;
  startTime: string | undefined;
  readonly #kubelet: PodHost;
  readonly #status: PodStatus;
  readonly #reporter: StatusReporter;
  #metaKey: string;
  #volumesWritten = false;
  #volumeChain: Promise<void> = Promise.resolve();
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(kubelet: PodHost, pod: PodObject) {
    this.#kubelet = kubelet;
    this.pod = pod;
    this.key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    this.uid = pod.metadata.uid;
    this.dir = path.join(kubelet.root, 'pods', pod.metadata.uid);
    this.logs = kubelet.logBuffer(this.key);
    this.#metaKey = PodRuntime.metaKey(pod);
    this.runs = pod.spec.containers.map((spec) => newContainerRun(spec, kubelet.options.restartBackoffMs));
    this.#status = new PodStatus(this);
    this.#reporter = new StatusReporter(
      this.key,
      this,
      () => this.#status.status(),
      (status) => this.#kubelet.patchStatus(this.pod, status),
    );
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
      phase: this.#status.phase(),
      ready: this.#status.ready(),
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
    const changed = await writeVolumes(this, this.#kubelet);
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
        await placeModel(this, this.#kubelet);
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

  #spawn(run: ContainerRun): void {
    const name = run.spec.name;
    let argv: string[];
    let mounts: ContainerMounts;
    try {
      argv = containerArgv(run.spec, this.ip);
      mounts = mountScript(run.spec, (volume) => this.volumeDir(volume), this.#kubelet.root);
    } catch (error) {
      run.state = { waiting: { reason: 'CreateContainerError', message: describeError(error) } };
      log(`${this.key}: container "${name}"`, error);
      this.scheduleReport();
      return;
    }
    const prefix = this.runs.length > 1 ? `[${name}] ` : '';
    const child = spawnContainer(run.spec, argv, mounts, (chunk) => {
      const text = chunk.toString();
      this.logs.append(prefix ? text.replace(/^(?=.)/gm, prefix) : text);
      if (this.#kubelet.options.echo) process.stderr.write(text.replace(/^(?=.)/gm, `[${this.key}${prefix ? `/${name}` : ''}] `));
    });
    const startedAt = timeNow();
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
    const state = terminatedState(startedAt, code, signal, error);
    const exitCode = state.terminated.exitCode;
    run.state = state;
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
    probeContainers(this);
  }

  /** Report status soon; reports are serialized and coalesced, and sent only when something changed. */
  scheduleReport(): void {
    this.#reporter.schedule();
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
    this.#reporter.cancel();
    if (this.ip) releaseIp(this.ip);
    this.#kubelet.forget(this);
    void rm(this.dir, { recursive: true, force: true }).catch((error: unknown) => log(`${this.key}: removing ${this.dir}`, error));
  }
}
