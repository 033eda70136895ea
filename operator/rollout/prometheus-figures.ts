import {
  DEFAULT_PROMETHEUS_QUERIES,
  PROMETHEUS_FIGURES,
  type PrometheusAnalysis,
  type PrometheusFigure,
  type PrometheusPlaceholder,
} from '../crd/prometheus-spec.ts';
import { durationMs } from '../crd/duration.ts';
import type { RolloutSpec, RolloutStatus } from '../crd/rollout-spec.ts';
import type { RerankerConfigSpec } from '../crd/spec.ts';
import { messageOf } from '../failures.ts';
import type { StepFigures, VersionFigures } from './analysis.ts';
import { agreementFigures, type PodScrape } from './figures.ts';
import { stableOf, type RolloutWindow } from './planner.ts';
import { PrometheusRefusedError, type PrometheusClient, type PrometheusTarget } from './prometheus.ts';
import { PrometheusSecretError } from './prometheus-target.ts';

/**
 * A step's figures from Prometheus (spec.rollout.analysis.prometheus): each figure's template, filled in
 * for canary and stable and the window so far, run as instant queries at the moment of judging.
 */

export type TemplateValues = Record<PrometheusPlaceholder, string>;

/** The template with every `{{placeholder}}` replaced; the spec admits no other (operator/crd/prometheus-spec.ts). */
export function fillTemplate(template: string, values: TemplateValues): string {
  return template.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => {
    if (!Object.hasOwn(values, name)) throw new Error(`unknown placeholder ${whole}`);
    return values[name as PrometheusPlaceholder];
  });
}

/** A window as a Prometheus range: whole seconds, at least 1s. */
export function promDuration(ms: number): string {
  return `${Math.max(1, Math.round(ms / 1000))}s`;
}

/** The query each figure runs: its own template or the default. */
export function queryTemplates(prometheus: PrometheusAnalysis): Record<PrometheusFigure, string> {
  return { ...DEFAULT_PROMETHEUS_QUERIES, ...prometheus.queries } as Record<PrometheusFigure, string>;
}

export interface PrometheusWindow {
  namespace: string;
  name: string;
  canary: string;
  stable: string;
  /** The window's start and the moment of judging (the queries' evaluation time). */
  from: Date;
  at: Date;
}

/** Canary's and stable's figures over the window; throws, naming the figure and version, when a query fails. */
export async function prometheusStepFigures(
  client: PrometheusClient,
  prometheus: PrometheusAnalysis,
  target: PrometheusTarget,
  window: PrometheusWindow,
): Promise<StepFigures> {
  const templates = queryTemplates(prometheus);
  const range = promDuration(window.at.getTime() - window.from.getTime());
  const figuresOf = async (version: string): Promise<VersionFigures> => {
    const values: TemplateValues = { version, namespace: window.namespace, name: window.name, window: range };
    const entries = await Promise.all(
      PROMETHEUS_FIGURES.map(async (figure) => {
        const query = fillTemplate(templates[figure], values);
        try {
          return [figure, await client.query(target, query, window.at)] as const;
        } catch (error) {
          const shown = query.length > 160 ? `${query.slice(0, 160)}…` : query;
          throw new Error(`query ${figure} of ${version} (${shown}): ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        }
      }),
    );
    const got = Object.fromEntries(entries) as Record<PrometheusFigure, number | undefined>;
    const count = (figure: PrometheusFigure) => {
      const value = got[figure] ?? 0;
      if (!Number.isFinite(value) || value < 0) throw new Error(`query ${figure} of ${version} gives ${value}, not a count`);
      return value;
    };
    const p99 = got.p99Ms;
    if (p99 !== undefined && (p99 === Infinity || p99 === -Infinity || p99 < 0)) throw new Error(`query p99Ms of ${version} gives ${p99}, not a latency`);
    return {
      requests: count('requests'),
      errors: count('errors'),
      mirrored: count('mirrored'),
      mirroredErrors: count('mirroredErrors'),
      // histogram_quantile over no observations is NaN: no data, like an empty result.
      ...(p99 === undefined || Number.isNaN(p99) ? {} : { p99Ms: Math.round(p99 * 10) / 10 }),
      fallbacks: count('fallbacks'),
      loadFailures: count('loadFailures'),
    };
  };
  const [canary, stable] = await Promise.all([figuresOf(window.canary), figuresOf(window.stable)]);
  return { canary, stable };
}

export interface PrometheusWindowInput {
  spec: RerankerConfigSpec & { rollout: RolloutSpec };
  prometheus: PrometheusAnalysis;
  namespace: string;
  name: string;
  /** The step being judged. */
  step: RolloutStatus;
  /** Where and how to ask, with auth's and tls' Secrets read: called only when the step is due to be judged. */
  target: () => Promise<PrometheusTarget>;
  /** With a ranking gate: this operator's baseline of the router pods (none after a restart) and their scrapes now. */
  agreement?: { baseline: { at: Date; scrapes: PodScrape[] } | undefined; scrapes: PodScrape[] };
  now: Date;
}

/**
 * The window of a Progressing step with its figures from Prometheus. Prometheus keeps the history, so
 * the window is the step's own even after an operator restart, unless the ranking gates need this
 * operator's baseline of the routers. Before the window has run a full interval nothing is asked (the
 * step is not judged yet); a query that fails leaves the window without figures, saying why.
 */
export async function prometheusWindow(client: PrometheusClient, input: PrometheusWindowInput): Promise<PrometheusRolloutWindow> {
  const { spec, agreement, now } = input;
  const stepStarted = new Date(input.step.stepStartedAt);
  if (agreement && !agreement.baseline) return { startedAt: now, unavailable: 'no baseline of the router pods for this step yet' };
  const from = agreement?.baseline && agreement.baseline.at > stepStarted ? agreement.baseline.at : stepStarted;
  if (now.getTime() - from.getTime() < durationMs(spec.rollout.stepInterval)) return { startedAt: from };
  const [canary, stable] = [spec.rollout.canary, stableOf(spec)];
  try {
    const target = await input.target();
    const figures = await prometheusStepFigures(client, input.prometheus, target, { namespace: input.namespace, name: input.name, canary, stable, from, at: now });
    if (agreement?.baseline) figures.agreement = agreementFigures(agreement.baseline.scrapes, agreement.scrapes, stable, canary);
    return { startedAt: from, figures };
  } catch (error) {
    return { startedAt: from, unavailable: messageOf(error), readFailed: true, failure: readFailureOf(error) };
  }
}

/** Why reading from Prometheus failed, for rerank_operator_rollout_read_failures_total{kind} and the Warning Event. */
export type PrometheusReadFailure =
  | { kind: 'prometheus secret'; secret: string; key: string | undefined }
  | { kind: 'prometheus auth' }
  | { kind: 'prometheus' };

export interface PrometheusRolloutWindow extends RolloutWindow {
  failure?: PrometheusReadFailure;
}

function readFailureOf(error: unknown): PrometheusReadFailure {
  if (error instanceof PrometheusSecretError) return { kind: 'prometheus secret', secret: error.secret, key: error.key };
  for (let e: unknown = error; e instanceof Error; e = e.cause) if (e instanceof PrometheusRefusedError) return { kind: 'prometheus auth' };
  return { kind: 'prometheus' };
}
