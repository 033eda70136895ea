import type { Clock } from '../clock.ts';
import { ROLLOUT_COMMANDS, type RolloutCommand, type RolloutSpec } from '../crd/rollout-spec.ts';
import type { RerankerConfig, RerankerConfigObject, RerankerConfigSpec } from '../crd/spec.ts';
import { messageOf } from '../failures.ts';
import { KINDS, type KubeClient, type KubeObject } from '../kube.ts';
import { LABEL, ownerSelector } from '../names.ts';
import { RolloutBaselines } from './baselines.ts';
import { agreementFigures, ROUTER_POD, stepFigures, type PodScrape } from './figures.ts';
import { judgesRanking, rolloutMirror, withMirror } from './mirror.ts';
import type { PodMetricsReader } from './pod-metrics.ts';
import { HttpPrometheusClient, type PrometheusClient } from './prometheus.ts';
import { prometheusWindow } from './prometheus-figures.ts';
import { prometheusTarget } from './prometheus-target.ts';
import { planRollout, rolloutRevision, specInEffect, stableOf, type RolloutDecision, type RolloutEvent, type RolloutWindow } from './planner.ts';

/** `kubectl annotate rrc NAME rerank.dev/rollout=pause|resume|abort|promote`: read once, then removed. */
export const ROLLOUT_ANNOTATION = 'rerank.dev/rollout';

export interface RolloutTurn {
  /** The spec the plan is made from: the rollout's weights (and, after a promotion, its default) in effect. */
  spec: RerankerConfigSpec;
  decision?: RolloutDecision;
  /** The clock when the decision was made: its requeueAfterMs counts from here, not from the end of the reconcile. */
  decidedAt?: Date;
  /** The annotation to remove once the status is written: its value, and whether it was a command at all. */
  annotation?: { value: string; command?: RolloutCommand };
  /** What could not be read this time: pods' /metrics (the step is judged on the others), or Prometheus. */
  unreadable: ReadFailure[];
  /** Warnings of the reads themselves (a Secret of analysis.prometheus missing), once per new one. */
  events: RolloutEvent[];
}

/** A read that failed: its kind (rerank_operator_rollout_read_failures_total{kind}) and what it says. */
export interface ReadFailure {
  kind: 'pod metrics' | 'list pods' | 'prometheus' | 'prometheus auth' | 'prometheus secret';
  message: string;
}

type Pod = KubeObject & { status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };
type WithRollout = RerankerConfigSpec & { rollout: RolloutSpec };

/** The impure half of a rollout: the pods' counters, the step baselines and the annotation, around the pure planner. */
export class RolloutDriver {
  readonly #kube: KubeClient;
  readonly #metrics: PodMetricsReader;
  readonly #clock: Clock;
  readonly #prometheus: PrometheusClient;
  readonly #baselines = new RolloutBaselines();
  /** The Secret problem each resource was last warned of, so the Warning Event goes out once per new one. */
  readonly #secretWarnings = new Map<string, string>();

  constructor(deps: { kube: KubeClient; podMetrics: PodMetricsReader; clock: Clock; prometheus?: PrometheusClient }) {
    this.#kube = deps.kube;
    this.#metrics = deps.podMetrics;
    this.#clock = deps.clock;
    this.#prometheus = deps.prometheus ?? new HttpPrometheusClient();
  }

  async turn(rrc: RerankerConfig, object: RerankerConfigObject): Promise<RolloutTurn> {
    const resource = `${rrc.metadata.namespace}/${rrc.metadata.name}`;
    const value = object.metadata.annotations?.[ROLLOUT_ANNOTATION];
    const annotation = value === undefined ? undefined : { value, ...(isCommand(value) ? { command: value } : {}) };
    if (!rrc.spec.rollout) {
      this.#baselines.forget(resource);
      this.#secretWarnings.delete(resource);
      return { spec: rrc.spec, ...(annotation ? { annotation } : {}), unreadable: [], events: [] };
    }
    const spec = rrc.spec as WithRollout;
    const now = this.#clock.now();
    const previous = object.status?.rollout;
    const judging = previous?.revision === rolloutRevision(spec) && (previous.phase === 'Progressing' || previous.phase === 'Paused');
    const unreadable: ReadFailure[] = [];
    const events: RolloutEvent[] = [];
    let scrapes: PodScrape[] = [];
    let window: RolloutWindow = { startedAt: now, unavailable: 'no baseline for this step yet' };
    if (judging || !previous || previous.revision !== rolloutRevision(spec)) {
      // With analysis.prometheus the versions' figures come from Prometheus, not from the server pods.
      const prometheus = spec.rollout.analysis.prometheus;
      if (!prometheus) scrapes = await this.#scrape(rrc, [spec.rollout.canary, stableOf(spec)], unreadable);
      // Ranking agreement is the routers' count of the requests they mirrored (router mode only: a gateway cannot compare).
      const agreement = spec.routing.mode === 'router' && judgesRanking(spec.rollout);
      if (agreement) scrapes.push(...(await this.#scrapeRouters(rrc, unreadable)));
      const baseline = previous && judging ? this.#baselines.get(resource, previous) : undefined;
      if (prometheus && previous && judging) {
        if (previous.phase === 'Progressing') {
          const judged = await prometheusWindow(this.#prometheus, {
            spec,
            prometheus,
            namespace: rrc.metadata.namespace,
            name: rrc.metadata.name,
            target: () => prometheusTarget(this.#kube, rrc.metadata.namespace, prometheus),
            step: previous,
            ...(agreement ? { agreement: { baseline, scrapes } } : {}),
            now,
          });
          window = judged;
          const failure = judged.failure;
          if (failure) unreadable.push({ kind: failure.kind, message: `prometheus ${prometheus.url}: ${window.unavailable ?? 'no figures'}` });
          if (failure?.kind === 'prometheus secret') {
            const message = `analysis.prometheus cannot be used: ${window.unavailable}`;
            if (this.#secretWarnings.get(resource) !== message) events.push({ type: 'Warning', reason: 'RolloutSecretUnreadable', message });
            this.#secretWarnings.set(resource, message);
          } else if (failure || judged.figures) {
            // The Secrets were read this time: a later problem with them is news again.
            this.#secretWarnings.delete(resource);
          }
        }
      } else if (baseline) {
        const canaryAnswered = scrapes.some((s) => s.version === spec.rollout.canary);
        const figures = stepFigures(baseline.scrapes, scrapes, spec.rollout.canary, stableOf(spec));
        if (agreement) figures.agreement = agreementFigures(baseline.scrapes, scrapes, stableOf(spec), spec.rollout.canary);
        window = canaryAnswered
          ? { startedAt: baseline.at, figures }
          : {
              startedAt: baseline.at,
              unavailable: unreadable.length ? `no canary pod answered /metrics (${unreadable.map((u) => u.message).join('; ')})` : 'no ready canary pod',
            };
      }
    }
    const decision = planRollout({ spec, previous, command: annotation?.command, window, now });
    // A step that starts now is measured from this scrape.
    if (decision.status.phase === 'Progressing' && !this.#baselines.get(resource, decision.status)) this.#baselines.set(resource, decision.status, scrapes, now);
    return { spec: withMirror(specInEffect(spec, decision), rolloutMirror(spec, decision)), decision, decidedAt: now, ...(annotation ? { annotation } : {}), unreadable, events };
  }

  /** The /metrics of the ready server pods of these versions; a pod that does not answer is named in `unreadable`. */
  async #scrape(rrc: RerankerConfig, versions: string[], unreadable: ReadFailure[]): Promise<PodScrape[]> {
    let pods: Pod[];
    try {
      const list = await this.#kube.list<Pod>(KINDS.pod, {
        namespace: rrc.metadata.namespace,
        labelSelector: `${ownerSelector(rrc.metadata.name)},${LABEL.component}=server`,
      });
      pods = list.items;
    } catch (error) {
      unreadable.push({ kind: 'list pods', message: `list pods: ${messageOf(error)}` });
      return [];
    }
    const wanted = pods.filter((pod) => versions.includes(pod.metadata.labels?.[LABEL.version] ?? '') && isReadyPod(pod));
    const scrapes = await Promise.all(
      wanted.map(async (pod): Promise<PodScrape | undefined> => {
        try {
          return { pod: pod.metadata.name, version: pod.metadata.labels?.[LABEL.version] ?? '', samples: await this.#metrics.read(pod) };
        } catch (error) {
          unreadable.push({ kind: 'pod metrics', message: `${pod.metadata.name}: ${messageOf(error)}` });
          return undefined;
        }
      }),
    );
    return scrapes.filter((s): s is PodScrape => s !== undefined);
  }

  /** The /metrics of the ready router pods (ROUTER_POD as their version); a pod that does not answer is named in `unreadable`. */
  async #scrapeRouters(rrc: RerankerConfig, unreadable: ReadFailure[]): Promise<PodScrape[]> {
    let pods: Pod[];
    try {
      const list = await this.#kube.list<Pod>(KINDS.pod, {
        namespace: rrc.metadata.namespace,
        labelSelector: `${ownerSelector(rrc.metadata.name)},${LABEL.component}=router`,
      });
      pods = list.items.filter(isReadyPod);
    } catch (error) {
      unreadable.push({ kind: 'list pods', message: `list router pods: ${messageOf(error)}` });
      return [];
    }
    const scrapes = await Promise.all(
      pods.map(async (pod): Promise<PodScrape | undefined> => {
        try {
          return { pod: pod.metadata.name, version: ROUTER_POD, samples: await this.#metrics.read(pod) };
        } catch (error) {
          unreadable.push({ kind: 'pod metrics', message: `${pod.metadata.name}: ${messageOf(error)}` });
          return undefined;
        }
      }),
    );
    return scrapes.filter((s): s is PodScrape => s !== undefined);
  }
}

const isCommand = (value: string): value is RolloutCommand => (ROLLOUT_COMMANDS as readonly string[]).includes(value);

export function isReadyPod(pod: Pod): boolean {
  return !pod.metadata.deletionTimestamp && (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}
