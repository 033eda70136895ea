import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RolloutCommand, RolloutSpec, RolloutStatus } from '../../operator/crd/rollout-spec.ts';
import { RerankerConfigSpecSchema, type RerankerConfigSpec } from '../../operator/crd/spec.ts';
import { judge, type StepFigures, type VersionFigures } from '../../operator/rollout/analysis.ts';
import { DEADLINE_INTERVALS, planRollout, rolloutRevision, specInEffect, WAIT_POLL_MS, type RolloutDecision } from '../../operator/rollout/planner.ts';
import { specWith } from './support/cel-cases.ts';

type RolloutSpecInput = Partial<Omit<RolloutSpec, 'analysis'>> & { analysis?: RolloutSpec['analysis'] };
type WithRollout = RerankerConfigSpec & { rollout: RolloutSpec };

/** The seed (v2-m3 default, v2-gemma, v1) rolling out v2-gemma in 10 → 50 → 100 % steps of one minute. */
function specOf(rollout: RolloutSpecInput = {}): WithRollout {
  return RerankerConfigSpecSchema.parse(
    specWith((s) => (s.rollout = { canary: 'v2-gemma', steps: [10, 50, 100], stepInterval: '1m', minRequests: 100, ...rollout })),
  ) as WithRollout;
}

const T0 = Date.parse('2026-12-03T10:00:00Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000);
const healthy = (requests = 200, p99Ms = 100): VersionFigures => ({ requests, errors: 0, p99Ms, fallbacks: 0, loadFailures: 0 });
const good: StepFigures = { canary: healthy(), stable: healthy(2000) };

interface Step {
  previous?: RolloutStatus;
  seconds: number;
  figures?: StepFigures;
  command?: RolloutCommand;
  windowFrom?: number;
}

function decide(spec: WithRollout, { previous, seconds, figures, command, windowFrom }: Step): RolloutDecision {
  const startedAt = previous ? new Date(Math.max(Date.parse(previous.stepStartedAt), T0 + (windowFrom ?? 0) * 1000)) : at(seconds);
  return planRollout({ spec, previous, command, now: at(seconds), window: { startedAt, ...(figures ? { figures } : { unavailable: 'no pods answered /metrics' }) } });
}

describe('rollout planner', () => {
  test('starts at the first step, then each step that passes after its interval moves to the next; the last one promotes', () => {
    const spec = specOf();
    let d = decide(spec, { seconds: 0 });
    assert.deepEqual([d.status.phase, d.status.step, d.status.weight, d.requeueAfterMs], ['Progressing', 0, 10, 60_000]);
    assert.equal(d.events[0]!.reason, 'RolloutStarted');
    assert.equal(d.status.stable, 'v2-m3');

    // Before the interval is over nothing is judged, even with bad figures.
    const early = decide(spec, { previous: d.status, seconds: 30, figures: { ...good, canary: { ...healthy(), errors: 200 } } });
    assert.deepEqual([early.status.phase, early.status.step, early.requeueAfterMs], ['Progressing', 0, 30_000]);

    d = decide(spec, { previous: d.status, seconds: 60, figures: good });
    assert.deepEqual([d.status.phase, d.status.step, d.status.weight, d.status.stepStartedAt], ['Progressing', 1, 50, at(60).toISOString()]);
    assert.equal(d.events[0]!.reason, 'RolloutStepPassed');
    d = decide(spec, { previous: d.status, seconds: 120, figures: good });
    assert.deepEqual([d.status.step, d.status.weight], [2, 100]);
    d = decide(spec, { previous: d.status, seconds: 180, figures: good });
    assert.deepEqual([d.status.phase, d.status.weight, d.ended, d.events[0]!.reason], ['Succeeded', 100, 'promoted', 'RolloutPromoted']);
    assert.equal(d.retireStable, false);
    assert.equal(d.requeueAfterMs, 10 * 60_000, 'stable kept for keepStableFor (10m by default)');

    // Stable's pods go once keepStableFor has passed, not before.
    assert.equal(decide(spec, { previous: d.status, seconds: 180 + 599 }).retireStable, false);
    const retired = decide(spec, { previous: d.status, seconds: 180 + 600 });
    assert.equal(retired.retireStable, true);
    const effective = specInEffect(spec, retired);
    assert.equal(effective.defaultVersion, 'v2-gemma');
    assert.deepEqual(effective.versions.map((v) => [v.name, v.weight, v.enabled]), [['v2-m3', 0, false], ['v2-gemma', 100, true], ['v1', 0, true]]);
  });

  test('weights in effect: canary the step\'s share, stable the rest, the other versions none (reachable by name)', () => {
    const spec = specOf();
    const d = decide(spec, { seconds: 0 });
    assert.deepEqual(specInEffect(spec, d).versions.map((v) => [v.name, v.weight]), [['v2-m3', 90], ['v2-gemma', 10], ['v1', 0]]);
    assert.equal(specInEffect(spec, d).defaultVersion, 'v2-m3');
  });

  test('a step with too few canary requests waits and says so; after DEADLINE_INTERVALS intervals unjudged the rollout fails', () => {
    const spec = specOf();
    const started = decide(spec, { seconds: 0 }).status;
    const few = { ...good, canary: healthy(40) };
    const wait = decide(spec, { previous: started, seconds: 61, figures: few });
    assert.deepEqual([wait.status.phase, wait.status.step, wait.requeueAfterMs], ['Progressing', 0, WAIT_POLL_MS]);
    assert.match(wait.status.message, /waits for requests: the canary answered 40 of the 100 needed$/);
    // Mirrored copies (router mode) are executions, not traffic: 500 of them do not make up for 60 missing requests.
    const mirrored = decide(spec, { previous: started, seconds: 61, figures: { ...good, canary: { ...healthy(40), mirrored: 500, mirroredErrors: 0 } } });
    assert.deepEqual([mirrored.status.phase, mirrored.status.step], ['Progressing', 0]);
    assert.match(mirrored.status.message, /the canary answered 40 of the 100 needed \(and 500 mirrored copies, which are no client's traffic\)$/);
    const blind = decide(spec, { previous: started, seconds: 61 });
    assert.match(blind.status.message, /cannot be judged: no pods answered \/metrics/);
    const failed = decide(spec, { previous: wait.status, seconds: DEADLINE_INTERVALS * 60, figures: few });
    assert.deepEqual([failed.status.phase, failed.status.weight, failed.ended, failed.events[0]!.type], ['Failed', 0, 'failed', 'Warning']);
  });

  test('a failing gate rolls back at once: canary weight 0, the gate and its figures in status and in a Warning', () => {
    const spec = specOf({ analysis: { maxErrorRatio: 0.01, maxP99Ms: 500 } });
    const started = decide(spec, { seconds: 0 }).status;
    const d = decide(spec, { previous: started, seconds: 60, figures: { canary: { ...healthy(200, 900), errors: 10 }, stable: healthy(2000) } });
    assert.deepEqual([d.status.phase, d.status.weight, d.ended], ['RolledBack', 0, 'rolledBack']);
    assert.deepEqual(d.status.lastAnalysis, { errorRatio: { value: 0.05, threshold: 0.01, ok: false }, p99Ms: { value: 900, threshold: 500, ok: false } });
    assert.equal(d.events[0]!.type, 'Warning');
    assert.match(d.events[0]!.message, /errorRatio 0\.05 > 0\.01, p99Ms 900ms > 500ms/);
    assert.deepEqual(specInEffect(spec, d).versions.map((v) => [v.name, v.weight]), [['v2-m3', 100], ['v2-gemma', 0], ['v1', 0]]);
    // Rolled back stays rolled back: later reconciles change nothing.
    assert.deepEqual(decide(spec, { previous: d.status, seconds: 600, figures: good }).status, d.status);
  });

  test('onFailure pause keeps the canary at its weight; resume starts a new window; onSuccess hold stays at the last step', () => {
    const spec = specOf({ onFailure: 'pause', onSuccess: 'hold', steps: [20, 40], analysis: { maxP99Ratio: 1.5 } });
    const started = decide(spec, { seconds: 0 }).status;
    const paused = decide(spec, { previous: started, seconds: 60, figures: { canary: healthy(200, 400), stable: healthy(2000, 100) } });
    assert.deepEqual([paused.status.phase, paused.status.weight], ['Paused', 20]);
    assert.deepEqual(paused.status.lastAnalysis, { p99Ratio: { value: 4, threshold: 1.5, ok: false } });
    const resumed = decide(spec, { previous: paused.status, seconds: 90, command: 'resume' });
    assert.deepEqual([resumed.status.phase, resumed.status.stepStartedAt], ['Progressing', at(90).toISOString()]);
    const next = decide(spec, { previous: resumed.status, seconds: 150, figures: good });
    const held = decide(spec, { previous: next.status, seconds: 210, figures: good });
    assert.deepEqual([held.status.phase, held.status.weight, held.ended], ['Succeeded', 40, 'held']);
    assert.deepEqual(specInEffect(spec, held).versions.map((v) => [v.name, v.weight]), [['v2-m3', 60], ['v2-gemma', 40], ['v1', 0]]);
  });

  test('annotations: pause holds the step, abort rolls back, promote promotes, resume after a rollback retries from the first step', () => {
    const spec = specOf();
    const started = decide(spec, { seconds: 0 }).status;
    const paused = decide(spec, { previous: started, seconds: 10, command: 'pause' });
    assert.deepEqual([paused.status.phase, paused.status.weight], ['Paused', 10]);
    // A paused rollout is not judged, however long it waits.
    assert.equal(decide(spec, { previous: paused.status, seconds: 3600, figures: good }).status.phase, 'Paused');
    const aborted = decide(spec, { previous: paused.status, seconds: 20, command: 'abort' });
    assert.deepEqual([aborted.status.phase, aborted.status.weight, aborted.ended], ['RolledBack', 0, 'aborted']);
    const retried = decide(spec, { previous: aborted.status, seconds: 30, command: 'resume' });
    assert.deepEqual([retried.status.phase, retried.status.step, retried.status.weight], ['Progressing', 0, 10]);
    const promoted = decide(spec, { previous: retried.status, seconds: 40, command: 'promote' });
    assert.deepEqual([promoted.status.phase, promoted.status.weight, promoted.ended], ['Succeeded', 100, 'promoted']);
    // A command that does not apply to the phase changes nothing, and an Event says so (the annotation is removed all the same).
    const ignored = decide(spec, { previous: started, seconds: 10, command: 'resume' });
    assert.deepEqual(ignored.status.phase, 'Progressing');
    assert.deepEqual(ignored.events, [{ type: 'Normal', reason: 'RolloutCommandIgnored', message: 'rollout command resume does nothing while the rollout is Progressing; removed' }]);
    assert.equal(decide(spec, { previous: promoted.status, seconds: 50, command: 'pause' }).events.at(-1)?.message, 'rollout command pause does nothing while the rollout is Succeeded; removed');
    assert.equal(decide(spec, { seconds: 0, command: 'abort' }).events.at(-1)?.reason, 'RolloutCommandIgnored');
  });

  test('pause given with the edit that starts the rollout: it starts paused at the first step, and is judged only after resume', () => {
    const spec = specOf();
    const paused = decide(spec, { seconds: 0, command: 'pause' });
    assert.deepEqual([paused.status.phase, paused.status.step, paused.status.weight], ['Paused', 0, 10]);
    assert.deepEqual(paused.events.map((e) => e.reason), ['RolloutStarted', 'RolloutPaused']);
    assert.match(paused.status.message, /^paused by annotation as it started: step 1\/3: canary v2-gemma takes 10% of unpinned traffic from v2-m3; canary keeps 10%$/);
    assert.equal(decide(spec, { previous: paused.status, seconds: 3600, figures: good }).status.phase, 'Paused');
    const resumed = decide(spec, { previous: paused.status, seconds: 3600, command: 'resume' });
    assert.deepEqual([resumed.status.phase, resumed.status.step, resumed.status.stepStartedAt], ['Progressing', 0, at(3600).toISOString()]);
    // A changed rollout that starts over with the annotation starts paused too.
    const restarted = decide(specOf({ steps: [25, 100] }), { previous: resumed.status, seconds: 3610, command: 'pause' });
    assert.deepEqual([restarted.status.phase, restarted.status.weight, restarted.events[0]!.reason], ['Paused', 25, 'RolloutRestarted']);
  });

  test('a changed canary version or rollout spec starts over; a changed weight of the canary does not', () => {
    const spec = specOf();
    const later = decide(spec, { previous: decide(spec, { seconds: 0 }).status, seconds: 60, figures: good }).status;
    const reweighted = { ...spec, versions: spec.versions.map((v) => (v.name === 'v2-gemma' ? { ...v, weight: 50 } : v)) };
    assert.equal(rolloutRevision(reweighted), later.revision);
    const newModel = { ...spec, versions: spec.versions.map((v) => (v.name === 'v2-gemma' ? { ...v, model: { ...v.model, source: 'hf://BAAI/bge-reranker-v2-gemma' } } : v)) };
    const restarted = decide(newModel, { previous: later, seconds: 70 });
    assert.deepEqual([restarted.status.step, restarted.events[0]!.reason], [0, 'RolloutRestarted']);
    assert.equal(decide(specOf({ steps: [25, 100] }), { previous: later, seconds: 70 }).status.weight, 25);
  });

  test("how the rollout's Prometheus is reached (timeout, auth, tls) is not the rollout: a fix of it does not start over; its url, headers or queries are", () => {
    const prometheus = { url: 'https://prom:9090' };
    const revision = (more: Record<string, unknown>) => rolloutRevision(specOf({ analysis: { maxErrorRatio: 0.01, prometheus: { ...prometheus, ...more } } }));
    const plain = revision({});
    assert.equal(revision({ timeout: '20s', auth: { bearerTokenSecret: { name: 'prom-token' } }, tls: { caSecret: { name: 'prom-ca' } } }), plain);
    assert.equal(revision({ auth: { basicAuthSecret: { name: 'other' } }, tls: { insecureSkipVerify: true } }), plain);
    assert.notEqual(revision({ url: 'https://other:9090' }), plain);
    assert.notEqual(revision({ headers: [{ name: 'X-Scope-OrgID', value: 'team-b' }] }), plain);
    assert.notEqual(revision({ queries: { requests: 'sum(x{v="{{version}}"})' } }), plain);
  });

  test('an operator restart mid-step restarts the window, not the step', () => {
    const spec = specOf();
    const started = decide(spec, { seconds: 0 }).status;
    const d = decide(spec, { previous: started, seconds: 80, figures: good, windowFrom: 50 });
    assert.deepEqual([d.status.step, d.requeueAfterMs], [0, 30_000]);
    assert.match(d.status.message, /window restarted/);
  });
});

describe('rollout gates', () => {
  test('each gate at its threshold passes and just past it fails; gates without data pass with no value', () => {
    const analysis = { maxErrorRatio: 0.1, maxErrorRatioDelta: 0.05, maxP99Ms: 200, maxP99Ratio: 2, maxFallbacks: 1, maxLoadFailures: 0, minTopKOverlap: 0.8, minKendallTau: 0.5 };
    const atLimit: StepFigures = {
      canary: { requests: 100, errors: 10, p99Ms: 200, fallbacks: 1, loadFailures: 0 },
      stable: { requests: 100, errors: 5, p99Ms: 100, fallbacks: 0, loadFailures: 0 },
      agreement: { comparisons: 20, topKOverlap: 0.8, kendallTau: 0.5 },
    };
    assert.deepEqual(judge(analysis, atLimit).failed, []);
    const past: StepFigures = {
      canary: { requests: 100, errors: 11, p99Ms: 201, fallbacks: 2, loadFailures: 1 },
      stable: { requests: 100, errors: 5, p99Ms: 100, fallbacks: 0, loadFailures: 0 },
      agreement: { comparisons: 20, topKOverlap: 0.79, kendallTau: 0.49 },
    };
    assert.deepEqual(
      judge(analysis, past).failed.map((f) => f.split(' ')[0]),
      ['errorRatio', 'errorRatioDelta', 'p99Ms', 'p99Ratio', 'fallbacks', 'loadFailures', 'topKOverlap', 'kendallTau'],
    );
    const noData = judge(analysis, { canary: { requests: 100, errors: 0, fallbacks: 0, loadFailures: 0 }, stable: { requests: 0, errors: 0, fallbacks: 0, loadFailures: 0 } });
    assert.deepEqual(noData.failed, []);
    assert.deepEqual(noData.gates.topKOverlap, { threshold: 0.8, ok: true });
    assert.deepEqual(noData.gates.errorRatioDelta, { threshold: 0.05, ok: true });
    assert.deepEqual(judge({}, past).gates, {}, 'no gates set, none judged');
  });
});
