import { z } from 'zod';
import { DurationSchema } from './duration.ts';
import { PrometheusAnalysisSchema } from './prometheus-spec.ts';
import { VersionNameSchema } from './version-name.ts';

/**
 * spec.rollout: progressive delivery of one version. The operator moves the unpinned traffic from
 * `stable` to `canary` in steps, judges each step by the pods' own metrics, and promotes or rolls back.
 */

const ratio = (description: string) => z.number().min(0).max(1).optional().meta({ description });
const count = (description: string) => z.number().int().min(0).max(1_000_000).optional().meta({ description });

export const AnalysisSchema = z.strictObject({
  maxErrorRatio: ratio("Highest share of the canary's rerank requests answered with a 5xx in a step, 0 to 1."),
  maxErrorRatioDelta: ratio("How much the canary's 5xx ratio may exceed stable's in the same step, 0 to 1."),
  maxP99Ms: z
    .number()
    .int()
    .min(1)
    .max(600_000)
    .optional()
    .meta({ description: "Highest p99 latency of the canary's rerank requests in a step, in milliseconds." }),
  maxP99Ratio: z
    .number()
    .min(1)
    .max(100)
    .optional()
    .meta({ description: "Highest p99 latency of the canary as a multiple of stable's in the same step, e.g. 1.5." }),
  maxFallbacks: count('Most moves of the canary from GPU to CPU (reranker_fallback_count_total) in a step.'),
  maxLoadFailures: count("Most failed loads of the canary's model (reranker_version_load_failures_total) in a step."),
  minTopKOverlap: ratio(
    'Lowest mean share of the top 10 documents canary and stable agree on, over the requests the router mirrored to the canary in a step ' +
      '(router mode: the router mirrors mirrorFraction of stable\'s requests; in gateway mode, or without mirrored requests, the gate has no data and does not block).',
  ),
  minKendallTau: z
    .number()
    .min(-1)
    .max(1)
    .optional()
    .meta({ description: "Lowest mean Kendall's tau between canary's and stable's orders of the mirrored requests in a step, -1 to 1." }),
  mirrorFraction: z
    .number()
    .min(0.001)
    .max(1)
    .optional()
    .meta({
      description:
        "Share of stable's unpinned requests the router also sends to the canary while a step runs, to compare their rankings " +
        '(router mode, only when minTopKOverlap or minKendallTau is set), 0.001 to 1; default 0.1.',
    }),
  prometheus: PrometheusAnalysisSchema.optional(),
});

export const ROLLOUT_COMMANDS = ['pause', 'resume', 'abort', 'promote'] as const;
export type RolloutCommand = (typeof ROLLOUT_COMMANDS)[number];

export const RolloutSpecSchema = z
  .strictObject({
    canary: VersionNameSchema.meta({ description: 'The version rolled out: it takes the steps\' share of the unpinned traffic.' }),
    stable: VersionNameSchema.optional().meta({ description: 'The version it replaces, which keeps the rest; absent: defaultVersion.' }),
    steps: z
      .array(z.number().int().min(1).max(100))
      .min(1)
      .max(20)
      .default([5, 10, 25, 50, 100])
      .meta({ description: "The canary's share of the unpinned traffic at each step, in percent, increasing." }),
    stepInterval: DurationSchema.default('2m').meta({ description: 'How long each step runs before it is judged, e.g. 2m or 90s.' }),
    minRequests: z
      .number()
      .int()
      .min(0)
      .max(1_000_000)
      .default(50)
      .meta({ description: 'Rerank requests the canary must answer in a step before it is judged; with fewer the step waits, and status says so.' }),
    analysis: AnalysisSchema.default(() => AnalysisSchema.parse({})).meta({ description: 'The gates each step must pass; each is optional.' }),
    onSuccess: z
      .enum(['promote', 'hold'])
      .default('promote')
      .meta({ description: 'After the last step: promote (the canary takes all unpinned traffic and stable is retired) or hold at the last step.' }),
    onFailure: z
      .enum(['rollback', 'pause'])
      .default('rollback')
      .meta({ description: 'When a gate fails: rollback (the canary gets no traffic at once) or pause at the current step.' }),
    keepStableFor: DurationSchema.default('10m').meta({
      description: "After a promotion, how long stable's pods keep running (ready to take traffic back) before they are scaled to zero.",
    }),
  })
  .refine((r) => r.canary !== r.stable, { path: ['stable'], message: 'rollout.canary and rollout.stable must differ' })
  .refine((r) => r.steps.every((step, i) => i === 0 || step > r.steps[i - 1]!), { path: ['steps'], message: 'rollout.steps must increase' })
  .meta({
    description:
      "Progressive delivery of one version: its share of the unpinned traffic moves through `steps`, each judged by `analysis` over the pods' " +
      'own metrics, then it is promoted or rolled back. Starting one is an edit (set rollout.canary); stable keeps running throughout. ' +
      'Pause, resume, abort or promote it with `kubectl annotate rrc NAME rerank.dev/rollout=pause|resume|abort|promote`.',
    'x-kubernetes-validations': [
      { rule: '!has(self.stable) || self.canary != self.stable', message: 'rollout.canary and rollout.stable must differ' },
      { rule: '!has(self.steps) || (self.steps.isSorted() && self.steps.all(s, self.steps.exists_one(t, t == s)))', message: 'rollout.steps must increase' },
    ],
  });

export const ROLLOUT_PHASES = ['Progressing', 'Paused', 'Succeeded', 'RolledBack', 'Failed'] as const;
export type RolloutPhase = (typeof ROLLOUT_PHASES)[number];

export const GateResultSchema = z.strictObject({
  value: z.number().optional().meta({ description: 'What the step measured; absent when there was no data.' }),
  threshold: z.number().meta({ description: 'The bound from spec.rollout.analysis.' }),
  ok: z.boolean().meta({ description: 'Whether the gate passed (a gate without data passes).' }),
});

export const RolloutStatusSchema = z.strictObject({
  phase: z.enum(ROLLOUT_PHASES).meta({
    description:
      'Progressing: steps are running. Paused: by annotation, or a failed gate with onFailure pause. Succeeded: every step passed ' +
      '(promoted, or held at the last step). RolledBack: a gate failed, the canary has no traffic. Failed: the rollout cannot run (see message).',
  }),
  canary: z.string().meta({ description: 'The version being rolled out.' }),
  stable: z.string().meta({ description: 'The version it replaces.' }),
  revision: z.string().meta({ description: "Hash of the rollout's spec and of the canary's version spec: a change starts the rollout over." }),
  step: z.number().int().min(0).meta({ description: 'Index of the current step in spec.rollout.steps, from 0.' }),
  weight: z.number().int().min(0).max(100).meta({ description: "The canary's share of the unpinned traffic now, in percent." }),
  stepStartedAt: z.string().meta({ format: 'date-time', description: "When the current step's window began." }),
  finishedAt: z.string().optional().meta({ format: 'date-time', description: 'When the rollout succeeded, rolled back or failed.' }),
  lastAnalysis: z
    .record(z.string(), GateResultSchema)
    .optional()
    .meta({ description: 'The last judgement, gate by gate (errorRatio, errorRatioDelta, p99Ms, p99Ratio, fallbacks, loadFailures, topKOverlap, kendallTau).' }),
  message: z.string().max(4096).meta({ description: 'What the rollout is doing or waiting for, for people.' }),
});

export type RolloutSpec = z.infer<typeof RolloutSpecSchema>;
export type AnalysisSpec = z.infer<typeof AnalysisSchema>;
export type RolloutStatus = z.infer<typeof RolloutStatusSchema>;
export type GateResult = z.infer<typeof GateResultSchema>;
