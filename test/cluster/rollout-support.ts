/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from kubectl and watches as JSON */
import { load } from 'js-yaml';
import type { KindRef, KubeObject, WatchHandle } from '../../operator/kube.ts';
import type { ClientNodeKube } from '../../operator/kube-client.ts';
import { eventually, type OperatorProcess } from './operator-process.ts';
import type { Resources } from './resources.ts';

/** What the rollout suites (with the test kubelet's pods, or with stand-in pods) share: the resources, a watch history, the checks. */

export const STEP_INTERVAL_MS = 3000;
export const rolloutOf = (canary: string) => ({
  canary,
  steps: [25, 100],
  stepInterval: `${STEP_INTERVAL_MS / 1000}s`,
  minRequests: 5,
  analysis: { maxErrorRatio: 0.05 },
});

const versions = (second: string) => [
  { name: 'v1', model: { source: 'hf://example/v1' }, replicas: 1, weight: 100 },
  { name: second, model: { source: `hf://example/${second}` }, replicas: 1, weight: 0 },
];
/** Router mode, renders weights into the ConfigMap; its router pod is not run (nothing here calls it). v2 is rolled out. */
export const promo = {
  apiVersion: 'rerank.dev/v1alpha1',
  kind: 'RerankerConfig',
  metadata: { name: 'promo' },
  spec: { defaultVersion: 'v1', versions: versions('v2'), routing: { mode: 'router', router: { replicas: 1 } } },
};
/** Gateway mode, renders weights into the HTTPRoute. Its canary, bad, fails. */
export const rb = {
  apiVersion: 'rerank.dev/v1alpha1',
  kind: 'RerankerConfig',
  metadata: { name: 'rb' },
  spec: {
    defaultVersion: 'v1',
    versions: versions('bad'),
    routing: { mode: 'gateway', gateway: { parentRefs: [{ name: 'internal-gateway', namespace: 'gateway-system' }] } },
  },
};

/** Every change of the watched objects with the time this process saw it. */
export class Recorder {
  readonly seen: Array<{ at: number; kind: string; object: any }> = [];
  readonly #handles: WatchHandle[] = [];
  /** Watches that ended with an error (the figures would miss changes). */
  readonly ended: string[] = [];
  readonly #kube: ClientNodeKube;
  constructor(kube: ClientNodeKube) {
    this.#kube = kube;
  }
  /** Watch from the current state on; a watch that ends (the API server restarted, a timeout) starts again. */
  async watch(kind: KindRef, namespace: string): Promise<void> {
    const handle = await this.#kube.watch<KubeObject>(kind, { namespace, resourceVersion: '0' }, {
      onEvent: (type, object) => {
        if (type !== 'BOOKMARK') this.seen.push({ at: Date.now(), kind: kind.kind, object });
      },
      onDone: (error) => {
        this.ended.push(`${kind.kind}: ${error === undefined ? 'ended' : String(error)}`);
        if (!this.#stopped) setTimeout(() => void this.watch(kind, namespace).catch(() => {}), 200);
      },
    });
    this.#handles.push(handle);
  }
  of(kind: string, name: string) {
    return this.seen.filter((s) => s.kind === kind && s.object.metadata.name === name);
  }
  #stopped = false;
  stop(): void {
    this.#stopped = true;
    for (const handle of this.#handles) handle.stop();
  }
}

/** The weights of the router-mode ConfigMap's config.yaml, and its default version. */
export const configWeights = (object: any): string => {
  const config = load(object.data['config.yaml']) as { defaultVersion: string; versions: Record<string, { weight: number }> };
  return `${Object.entries(config.versions).map(([name, v]) => `${name}=${v.weight}`).sort().join(',')} default=${config.defaultVersion}`;
};
/** The weights of the HTTPRoute's unpinned rule (a backend of weight 0 is left out). */
export const routeWeights = (object: any): string =>
  (object.spec.rules.at(-1).backendRefs as Array<{ name: string; weight: number }>).map((b) => `${b.name}=${b.weight}`).sort().join(',');

/** Checks on a namespace's rollouts: current state by kubectl, short-lived states from the watch history. */
export function rolloutChecks(context: () => { r: Resources; recorder: Recorder; operator: OperatorProcess }) {
  const r = { get: (kind: string, name: string) => context().r.get(kind, name), kubectl: (args: string[]) => context().r.kubectl(args) };
  const recorder = { of: (kind: string, name: string) => context().recorder.of(kind, name) };
  const rollout = async (name: string) => (await r.get('rerankerconfig', name))?.status?.rollout;
  const rolloutIs = (name: string, want: (s: any) => boolean) =>
    eventually(`rollout of ${name}`, async () => {
      const s = await rollout(name);
      if (s && want(s)) return s;
      throw new Error(`status.rollout: ${JSON.stringify(s)}`);
    }, 20_000, 100);
  /** A state that lasts only a step: the watch saw the rollout in it (polling could come after the next step). */
  const rolloutWas = (name: string, want: (s: any) => boolean) =>
    eventually(`rollout of ${name} seen by the watch`, async () => recorder.of('RerankerConfig', name).map((s) => s.object.status?.rollout).find((s) => s && want(s)), 20_000, 100);
  /** How long after `since` this process first saw the object rendered with these weights (after `since`). */
  const seenAfter = (since: number, kind: string, name: string, render: (o: any) => string, want: string): string => {
    const at = recorder.of(kind, name).find((s) => s.at >= since && render(s.object) === want)?.at;
    return at === undefined ? 'not seen by the watch' : `${at - since} ms`;
  };
  /** A rendering that lasts only a step: the watch saw it (polling could come after the next step replaced it). */
  const wasRendered = (kind: string, name: string, render: (o: any) => string, want: string) =>
    eventually(`${kind} ${name} rendered ${want}`, async () => recorder.of(kind, name).some((s) => render(s.object) === want), 20_000, 100);
  const events = async (name: string) =>
    JSON.parse(await r.kubectl(['get', 'events', '--field-selector', `involvedObject.name=${name}`, '-o', 'json'])).items as any[];

  /** One series of the operator's /metrics. */
  const operatorSample = async (series: string) => {
    const metrics = await context().operator.metrics();
    return Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1]);
  };
  return { rollout, rolloutIs, rolloutWas, seenAfter, wasRendered, events, operatorSample };
}
