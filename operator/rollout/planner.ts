import { createHash } from 'node:crypto';
import { durationMs } from '../crd/duration.ts';
import type { RolloutCommand, RolloutSpec, RolloutStatus } from '../crd/rollout-spec.ts';
import type { RerankerConfigSpec, VersionSpec } from '../crd/spec.ts';
import { judge, type StepFigures } from './analysis.ts';

/**
 * The rollout of spec.rollout, one decision at a time: given what the last reconcile recorded, the
 * figures of the current step's window and an annotation command, what the rollout is now, which
 * weights are in effect and what to tell people. Pure: the reconciler brings the world and the clock.
 */

export interface RolloutWindow {
  /** When the figures' baseline was taken: the step's start, or later when the operator had none (a restart). */
  startedAt: Date;
  /** Canary's and stable's figures since then; absent when they could not be read (with `unavailable` saying why). */
  figures?: StepFigures;
  unavailable?: string;
  /** `unavailable` because reading the figures failed (not merely because there were none yet). */
  readFailed?: boolean;
}

export interface RolloutInput {
  spec: RerankerConfigSpec & { rollout: RolloutSpec };
  previous: RolloutStatus | undefined;
  command: RolloutCommand | undefined;
  window: RolloutWindow;
  now: Date;
}

export interface RolloutEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface RolloutDecision {
  status: RolloutStatus;
  events: RolloutEvent[];
  /** Look again after this long (the rest of a step, or a short wait for data); undefined when nothing is pending. */
  requeueAfterMs?: number;
  /** After a promotion and keepStableFor: stable's pods may go. */
  retireStable: boolean;
  /** Which outcome this decision reached, for the metric; undefined while nothing ended. */
  ended?: 'promoted' | 'held' | 'rolledBack' | 'aborted' | 'failed';
}

/** How often a step that waits for data (too few requests, metrics unreadable) looks again. */
export const WAIT_POLL_MS = 10_000;
/** A step that cannot be judged for this many intervals (no ready canary, no requests) fails the rollout. */
export const DEADLINE_INTERVALS = 5;

/** The version a rollout replaces: rollout.stable, else defaultVersion. */
export function stableOf(spec: RerankerConfigSpec & { rollout: RolloutSpec }): string {
  return spec.rollout.stable ?? spec.defaultVersion;
}

/** Hash of what makes a rollout the same rollout: its spec and the canary's version spec. A change starts it over. */
export function rolloutRevision(spec: RerankerConfigSpec & { rollout: RolloutSpec }): string {
  const canary = spec.versions.find((v) => v.name === spec.rollout.canary);
  const { weight: _weight, ...version } = canary ?? ({} as VersionSpec);
  return createHash('sha256').update(JSON.stringify({ rollout: judgedRollout(spec.rollout), stable: stableOf(spec), canary: version })).digest('hex').slice(0, 12);
}

/**
 * The rollout less how its Prometheus is reached (timeout, credentials, TLS trust): fixing a Secret's
 * name or a CA does not start the rollout over. What is asked, and of whom (url, headers, queries), does.
 */
function judgedRollout(rollout: RolloutSpec): RolloutSpec {
  const prometheus = rollout.analysis.prometheus;
  if (!prometheus) return rollout;
  const { timeout: _timeout, auth: _auth, tls: _tls, ...asked } = prometheus;
  return { ...rollout, analysis: { ...rollout.analysis, prometheus: asked } };
}

/** The phases a command acts in; `start` is a rollout that starts (or starts over) in this decision. */
const COMMAND_APPLIES: Record<RolloutCommand, ReadonlyArray<RolloutStatus['phase'] | 'start'>> = {
  pause: ['start', 'Progressing'],
  resume: ['Paused', 'RolledBack', 'Failed'],
  abort: ['Progressing', 'Paused'],
  promote: ['Progressing', 'Paused'],
};

export function planRollout(input: RolloutInput): RolloutDecision {
  const decision = decide(input);
  const command = input.command;
  if (!command) return decision;
  const revision = rolloutRevision(input.spec);
  const phase = input.previous?.revision === revision ? input.previous.phase : 'start';
  if (COMMAND_APPLIES[command].includes(phase)) return decision;
  // The annotation is removed all the same: say so, or it vanishes without a word.
  const message = `rollout command ${command} does nothing ${phase === 'start' ? 'as the rollout starts' : `while the rollout is ${phase}`}; removed`;
  return { ...decision, events: [...decision.events, { type: 'Normal', reason: 'RolloutCommandIgnored', message }] };
}

function decide(input: RolloutInput): RolloutDecision {
  const { spec, now } = input;
  const rollout = spec.rollout;
  const revision = rolloutRevision(spec);
  const previous = input.previous?.revision === revision ? input.previous : undefined;
  if (!previous) {
    const started = start(input, revision, input.previous !== undefined);
    // Paused from the first step on: the annotation may come with the edit that starts the rollout.
    if (input.command !== 'pause') return started;
    const message = `paused by annotation as it started: ${started.status.message}; canary keeps ${started.status.weight}%`;
    return { status: { ...started.status, phase: 'Paused', message }, events: [...started.events, { type: 'Normal', reason: 'RolloutPaused', message }], retireStable: false };
  }

  const at = now.toISOString();
  const base = { ...previous };
  const command = input.command;
  const stepLabel = (step: number) => `step ${step + 1}/${rollout.steps.length} (${rollout.steps[step]}%)`;

  if (command === 'abort' && (previous.phase === 'Progressing' || previous.phase === 'Paused')) {
    return rolledBack(base, at, `aborted by annotation at ${stepLabel(previous.step)}`, 'aborted', {}, undefined);
  }
  if (command === 'promote' && (previous.phase === 'Progressing' || previous.phase === 'Paused')) {
    return promoted(input, base, at, `promoted by annotation at ${stepLabel(previous.step)}`);
  }
  if (command === 'pause' && previous.phase === 'Progressing') {
    const message = `paused by annotation at ${stepLabel(previous.step)}: canary keeps ${previous.weight}%`;
    return { status: { ...base, phase: 'Paused', message }, events: [{ type: 'Normal', reason: 'RolloutPaused', message }], retireStable: false };
  }
  if (command === 'resume' && previous.phase === 'Paused') {
    const message = `resumed at ${stepLabel(previous.step)}: a new window starts`;
    return {
      status: { ...base, phase: 'Progressing', stepStartedAt: at, message },
      events: [{ type: 'Normal', reason: 'RolloutResumed', message }],
      requeueAfterMs: durationMs(rollout.stepInterval),
      retireStable: false,
    };
  }
  if (command === 'resume' && (previous.phase === 'RolledBack' || previous.phase === 'Failed')) {
    return start(input, revision, true, 'retried by annotation');
  }

  switch (previous.phase) {
    case 'Paused':
    case 'RolledBack':
    case 'Failed':
      return { status: base, events: [], retireStable: false };
    case 'Succeeded': {
      if (previous.weight < 100 || !previous.finishedAt) return { status: base, events: [], retireStable: false };
      const left = Date.parse(previous.finishedAt) + durationMs(rollout.keepStableFor) - now.getTime();
      return left > 0 ? { status: base, events: [], requeueAfterMs: left, retireStable: false } : { status: base, events: [], retireStable: true };
    }
    case 'Progressing':
      return progress(input, base);
  }
}

function start(input: RolloutInput, revision: string, restarted: boolean, why?: string): RolloutDecision {
  const { spec, now } = input;
  const rollout = spec.rollout;
  const weight = rollout.steps[0]!;
  const message = `step 1/${rollout.steps.length}: canary ${rollout.canary} takes ${weight}% of unpinned traffic from ${stableOf(spec)}`;
  const status: RolloutStatus = {
    phase: 'Progressing',
    canary: rollout.canary,
    stable: stableOf(spec),
    revision,
    step: 0,
    weight,
    stepStartedAt: now.toISOString(),
    message,
  };
  const reason = restarted ? 'RolloutRestarted' : 'RolloutStarted';
  const said = why ?? (restarted ? 'the rollout or the canary changed' : undefined);
  return {
    status,
    events: [{ type: 'Normal', reason, message: said ? `${said}; ${message}` : message }],
    requeueAfterMs: durationMs(rollout.stepInterval),
    retireStable: false,
  };
}

function progress(input: RolloutInput, base: RolloutStatus): RolloutDecision {
  const { spec, now, window } = input;
  const rollout = spec.rollout;
  const interval = durationMs(rollout.stepInterval);
  const stepStarted = Date.parse(base.stepStartedAt);
  const windowStarted = Math.max(stepStarted, window.startedAt.getTime());
  const label = `step ${base.step + 1}/${rollout.steps.length} (${base.weight}%)`;
  const elapsed = now.getTime() - windowStarted;
  if (elapsed < interval) {
    const message = windowStarted > stepStarted ? `${label}: its window restarted (the operator had no baseline for it)` : `${label}: running`;
    return { status: { ...base, message }, events: [], requeueAfterMs: interval - elapsed, retireStable: false };
  }
  // A step that stays unjudgeable for long (no ready canary, no traffic, unreadable metrics) is a failure, not a wait.
  const overdue = now.getTime() - stepStarted >= DEADLINE_INTERVALS * interval;
  const figures = window.figures;
  let waiting: string | undefined;
  if (!figures) waiting = `cannot be judged: ${window.unavailable ?? 'no figures'}`;
  else if (figures.canary.requests < rollout.minRequests) {
    const mirrored = figures.canary.mirrored ? ` (and ${figures.canary.mirrored} mirrored copies, which are no client's traffic)` : '';
    waiting = `waits for requests: the canary answered ${figures.canary.requests} of the ${rollout.minRequests} needed${mirrored}`;
  }
  if (waiting !== undefined) {
    if (overdue) {
      const message = `${label} ${waiting}, for ${DEADLINE_INTERVALS} step intervals: the rollout failed and the canary gets no traffic`;
      return { status: { ...base, phase: 'Failed', weight: 0, finishedAt: now.toISOString(), message }, events: [{ type: 'Warning', reason: 'RolloutFailed', message }], retireStable: false, ended: 'failed' };
    }
    return { status: { ...base, message: `${label} ${waiting}` }, events: [], requeueAfterMs: WAIT_POLL_MS, retireStable: false };
  }

  const judgement = judge(rollout.analysis, figures!);
  const lastAnalysis = judgement.gates;
  if (judgement.failed.length) {
    const why = `${label} failed ${judgement.failed.join(', ')}`;
    if (rollout.onFailure === 'rollback') return rolledBack(base, now.toISOString(), why, 'rolledBack', lastAnalysis, 'rolled back');
    const message = `${why}; paused (onFailure: pause): canary keeps ${base.weight}%`;
    return { status: { ...base, phase: 'Paused', lastAnalysis, message }, events: [{ type: 'Warning', reason: 'RolloutPaused', message }], retireStable: false };
  }
  const next = base.step + 1;
  if (next < rollout.steps.length) {
    const weight = rollout.steps[next]!;
    const message = `step ${next + 1}/${rollout.steps.length}: canary takes ${weight}% (${label} passed)`;
    return {
      status: { ...base, step: next, weight, stepStartedAt: now.toISOString(), lastAnalysis, message },
      events: [{ type: 'Normal', reason: 'RolloutStepPassed', message }],
      requeueAfterMs: interval,
      retireStable: false,
    };
  }
  if (rollout.onSuccess === 'hold') {
    const message = `every step passed; held at ${base.weight}% (onSuccess: hold)`;
    return {
      status: { ...base, phase: 'Succeeded', lastAnalysis, finishedAt: now.toISOString(), message },
      events: [{ type: 'Normal', reason: 'RolloutSucceeded', message }],
      retireStable: false,
      ended: 'held',
    };
  }
  return promoted(input, { ...base, lastAnalysis }, now.toISOString(), 'every step passed');
}

function promoted(input: RolloutInput, base: RolloutStatus, at: string, why: string): RolloutDecision {
  const rollout = input.spec.rollout;
  const message = `${why}: ${rollout.canary} is promoted and takes all unpinned traffic; ${base.stable} keeps its pods for ${rollout.keepStableFor}`;
  return {
    status: { ...base, phase: 'Succeeded', weight: 100, finishedAt: at, message },
    events: [{ type: 'Normal', reason: 'RolloutPromoted', message }],
    requeueAfterMs: durationMs(rollout.keepStableFor),
    retireStable: false,
    ended: 'promoted',
  };
}

function rolledBack(
  base: RolloutStatus,
  at: string,
  why: string,
  ended: 'rolledBack' | 'aborted',
  lastAnalysis: RolloutStatus['lastAnalysis'],
  verb: string | undefined,
): RolloutDecision {
  const message = `${why}: ${verb ?? 'rolled back'}, canary ${base.canary} gets no traffic`;
  return {
    status: { ...base, phase: 'RolledBack', weight: 0, finishedAt: at, ...(lastAnalysis && Object.keys(lastAnalysis).length ? { lastAnalysis } : {}), message },
    events: [{ type: 'Warning', reason: 'RolloutRolledBack', message }],
    retireStable: false,
    ended,
  };
}

/**
 * The spec the rest of the plan sees while a rollout runs: unpinned traffic split between canary and
 * stable by the rollout's weight (the other versions stay reachable by name, with no weight); after a
 * promotion the canary is the default, and once keepStableFor has passed stable's pods go.
 */
export function specInEffect(spec: RerankerConfigSpec & { rollout: RolloutSpec }, decision: RolloutDecision): RerankerConfigSpec {
  const { canary, stable, weight, phase } = decision.status;
  const promotedNow = phase === 'Succeeded' && weight === 100;
  const versions = spec.versions.map((version) => {
    const share = version.name === canary ? weight : version.name === stable ? 100 - weight : 0;
    const retired = promotedNow && decision.retireStable && version.name === stable;
    return { ...version, weight: share, ...(retired ? { enabled: false } : {}) };
  });
  return { ...spec, versions, defaultVersion: promotedNow ? canary : spec.defaultVersion };
}
