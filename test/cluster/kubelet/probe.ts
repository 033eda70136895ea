import http from 'node:http';
import type { ContainerRun } from './container.ts';
import type { Probe } from './pod-object.ts';

/**
 * Readiness (and startup) probes: httpGet on the pod's IP, every `probePeriodMs`; failureThreshold
 * and successThreshold count in those periods. Liveness probes are not run.
 */

/** The pod whose containers are probed. */
interface ProbedPod {
  readonly runs: readonly ContainerRun[];
  readonly ip: string | undefined;
  scheduleReport(): void;
}

/** One probe round (called every probePeriodMs). */
export function probeContainers(pod: ProbedPod): void {
  for (const run of pod.runs) {
    if (!run.child || run.probing || !pod.ip) continue;
    const probe = run.started ? run.spec.readinessProbe : run.spec.startupProbe;
    if (!probe) {
      if (!run.ready && run.started) {
        run.ready = true;
        pod.scheduleReport();
      }
      continue;
    }
    run.probing = true;
    void httpProbe(run, probe, pod.ip).then((ok) => {
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
          queueMicrotask(() => probeContainers(pod));
        } else if (run.successes >= (probe.successThreshold ?? 1)) run.ready = true;
      } else {
        run.successes = 0;
        run.failures += 1;
        if (run.started && run.failures >= (probe.failureThreshold ?? 3)) run.ready = false;
      }
      if ([run.started, run.ready].join() !== before) pod.scheduleReport();
    });
  }
}

function httpProbe(run: ContainerRun, probe: Probe, ip: string | undefined): Promise<boolean> {
  const get = probe.httpGet;
  if (!get || !ip) return Promise.resolve(Boolean(run.child));
  const port = typeof get.port === 'number' ? get.port : run.spec.ports?.find((p) => p.name === get.port)?.containerPort ?? Number(get.port);
  const timeout = Math.min(1000 * (probe.timeoutSeconds ?? 1), 2000);
  return new Promise((resolve) => {
    const request = http.get({ host: ip, port, path: get.path ?? '/', agent: false, timeout }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      resolve(status >= 200 && status < 400);
    });
    request.once('timeout', () => request.destroy(new Error('probe timed out')));
    request.once('error', () => resolve(false));
  });
}
