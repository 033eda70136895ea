import type { ContainerRun } from './container.ts';
import { timeNow } from './helpers.ts';
import type { PodObject } from './pod-object.ts';

/**
 * A pod's status as kubelet reports it: phase, podIP(s) 127.0.0.N, hostIP 127.0.0.1, startTime,
 * conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled) and
 * (init) container statuses.
 */

/** How far the pod's (simulated) init containers are. */
export type InitState = 'pending' | 'running' | 'done';

/** What a pod's status is made of. */
export interface PodState {
  readonly pod: PodObject;
  readonly uid: string;
  readonly ip: string | undefined;
  readonly runs: ContainerRun[];
  readonly initState: InitState;
  readonly terminating: boolean;
  readonly startTime: string | undefined;
}

/** The status of one pod; the conditions keep their lastTransitionTime while their status holds. */
export class PodStatus {
  readonly #state: PodState;
  readonly #conditionSince = new Map<string, { status: string; time: string }>();

  constructor(state: PodState) {
    this.#state = state;
  }

  ready(): boolean {
    const state = this.#state;
    return state.initState === 'done' && state.runs.every((run) => run.ready) && !state.terminating;
  }

  phase(): string {
    const state = this.#state;
    if (state.initState !== 'done' || !state.runs.some((run) => run.everStarted)) return 'Pending';
    const policy = state.pod.spec.restartPolicy ?? 'Always';
    const final = state.runs.every((run) => 'terminated' in run.state && !run.restartTimer);
    if (policy !== 'Always' && final) {
      return state.runs.every((run) => 'terminated' in run.state && run.state.terminated.exitCode === 0) ? 'Succeeded' : 'Failed';
    }
    return 'Running';
  }

  #condition(type: string, ok: boolean, reason?: string, message?: string): Record<string, unknown> {
    const state = this.#state;
    const status = ok ? 'True' : 'False';
    let since = this.#conditionSince.get(type);
    if (!since || since.status !== status) {
      const scheduled = type === 'PodScheduled' ? state.pod.status?.conditions?.find((c) => c.type === type && c.status === status) : undefined;
      since = { status, time: scheduled?.lastTransitionTime ?? timeNow() };
      this.#conditionSince.set(type, since);
    }
    return { type, status, lastProbeTime: null, lastTransitionTime: since.time, ...(ok || !reason ? {} : { reason, message }) };
  }

  status(): Record<string, unknown> {
    const state = this.#state;
    const names = (runs: ContainerRun[]) => `[${runs.map((run) => run.spec.name).join(' ')}]`;
    const unready = state.runs.filter((run) => !run.ready || state.terminating);
    const inits = state.pod.spec.initContainers ?? [];
    const initDone = state.initState === 'done';
    const initStatuses = inits.map((init) => ({
      name: init.name,
      image: init.image ?? '',
      imageID: '',
      ready: initDone,
      started: state.initState === 'running',
      restartCount: 0,
      state:
        state.initState === 'done'
          ? { terminated: { exitCode: 0, reason: 'Completed', startedAt: state.startTime, finishedAt: state.startTime } }
          : state.initState === 'running'
            ? { running: { startedAt: state.startTime } }
            : { waiting: { reason: 'PodInitializing' } },
      lastState: {},
      ...(state.initState !== 'pending' ? { containerID: `test-kubelet://${state.uid}/${init.name}` } : {}),
    }));
    const containerStatuses = state.runs.map((run) => ({
      name: run.spec.name,
      image: run.spec.image ?? '',
      imageID: '',
      ready: run.ready && !state.terminating,
      started: run.started,
      restartCount: run.restartCount,
      state: run.state,
      lastState: run.lastState ?? {},
      ...(run.everStarted ? { containerID: `test-kubelet://${state.uid}/${run.spec.name}/${run.restartCount}` } : {}),
    }));
    const ip = state.ip;
    return {
      phase: this.phase(),
      hostIP: '127.0.0.1',
      hostIPs: [{ ip: '127.0.0.1' }],
      ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
      ...(state.startTime ? { startTime: state.startTime } : {}),
      conditions: [
        this.#condition('PodReadyToStartContainers', Boolean(ip)),
        this.#condition('Initialized', initDone, 'ContainersNotInitialized', `containers with incomplete status: [${inits.map((i) => i.name).join(' ')}]`),
        this.#condition('Ready', this.ready(), 'ContainersNotReady', `containers with unready status: ${names(unready)}`),
        this.#condition('ContainersReady', this.ready(), 'ContainersNotReady', `containers with unready status: ${names(unready)}`),
        this.#condition('PodScheduled', true),
      ],
      ...(inits.length ? { initContainerStatuses: initStatuses } : {}),
      containerStatuses,
    };
  }
}
