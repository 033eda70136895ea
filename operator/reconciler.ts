import { parseRerankerConfig, SpecError } from './crd/parse.ts';
import { KIND, type RerankerConfig, type RerankerConfigObject, type RerankerConfigStatus } from './crd/spec.ts';
import type { Clock } from './clock.ts';
import type { ResourceMetrics } from './metrics.ts';
import { ADD_ON_KINDS, describeRef, isApiError, KINDS, OWNED_KINDS, refOf, type KubeClient, type KubeObject, type ObjectRef } from './kube.ts';
import { ANNOTATION, LABEL, names, ownerSelector, type Pool } from './names.ts';
import type { Logger } from 'pino';
import { applyChild, FieldConflict, handOverReplicas } from './apply.ts';
import { FailureReporter, messageOf } from './failures.ts';
import { Problems } from './problems.ts';
import { scalingObservations } from './plan/scaling.ts';
import { planWithWeights, PlanError, type Images, type Plan } from './planner.ts';
import type { PodConfigReader } from './pod-config.ts';
import { ConfigHistory, type RevisionEvent } from './revisions.ts';
import { RolloutDriver, ROLLOUT_ANNOTATION, type RolloutTurn } from './rollout/driver.ts';
import { HttpPodMetricsReader, type PodMetricsReader } from './rollout/pod-metrics.ts';
import { computeStatus, invalidSpecConditions, setConditions, unobservedConditions, type ConditionValue, type Observation, type VersionObservation } from './status.ts';
import { heldWeights, weightsInEffect, type Availability } from './weights.ts';

export interface Key {
  namespace: string;
  name: string;
}

/** Done (resync later), requeue after a delay (waiting on the world), or an error (retried with backoff). */
export type ReconcileResult =
  | { outcome: 'done' }
  | { outcome: 'requeue'; afterMs: number }
  | { outcome: 'error'; error: Error };

export interface ReconcilerDeps {
  kube: KubeClient;
  podConfig: PodConfigReader;
  clock: Clock;
  images: Images;
  /** How soon to look again while a rollout or config refresh is under way. */
  pollMs?: number;
  /** Per-resource gauges (weights, replicas, conditions), set from each computed status. */
  metrics?: ResourceMetrics;
  /** Where failures that reach no status are logged (Events that could not be written). */
  logger?: Logger;
  /** How a rollout reads the pods' counters (default: GET /metrics on the pod IP). */
  podMetrics?: PodMetricsReader;
}

type Deployment = KubeObject & {
  spec?: { replicas?: number };
  status?: { readyReplicas?: number; updatedReplicas?: number; observedGeneration?: number };
};
type Pod = KubeObject & { status?: { podIP?: string; conditions?: Array<{ type: string; status: string }> } };

export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #eventFailures: FailureReporter | undefined;
  readonly #rollouts: RolloutDriver;
  readonly #rolloutReads: FailureReporter | undefined;
  readonly #history: ConfigHistory;
  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#eventFailures = deps.logger && new FailureReporter({ logger: deps.logger, what: 'create Event' });
    this.#rolloutReads = deps.logger && new FailureReporter({ logger: deps.logger, what: "read a rollout's figures" });
    this.#history = new ConfigHistory({ kube: deps.kube, clock: deps.clock });
    this.#rollouts = new RolloutDriver({ kube: deps.kube, clock: deps.clock, podMetrics: deps.podMetrics ?? new HttpPodMetricsReader() });
  }

  /** Level-based: reads the world now and drives it to the spec; safe to run any number of times. */
  async reconcile(key: Key): Promise<ReconcileResult> {
    const { kube } = this.#deps;
    const ref: ObjectRef = { ...KINDS.rerankerConfig, namespace: key.namespace, name: key.name };
    let object: RerankerConfigObject | null;
    try {
      object = await kube.get<RerankerConfigObject & KubeObject>(ref);
    } catch (error) {
      return failed(`get ${describeRef(ref)}`, error);
    }
    // Gone or going: owner references let the garbage collector remove the children.
    if (!object || object.metadata.deletionTimestamp) {
      this.#deps.metrics?.forgetResource(key);
      return { outcome: 'done' };
    }
    // rerank.dev/rollback-to: a kept revision's spec replaces this one, and this reconcile applies it.
    try {
      const rollback = await this.#history.rollback(object);
      if (rollback) await this.#createEvents(object, [rollback.event]);
      if (rollback?.object) object = rollback.object;
    } catch (error) {
      return failed(`roll back ${describeRef(ref)}`, error);
    }

    let rrc: RerankerConfig;
    let desired: Plan;
    let rollout: RolloutTurn;
    const problems = new Problems();
    let deployments: Deployment[] | undefined;
    try {
      const parsed = parseRerankerConfig(object);
      // While a rollout runs, its weights (and after a promotion, its default) are the spec in effect.
      rollout = await this.#rollouts.turn(parsed, object);
      this.#reportRolloutReads(key, rollout);
      rrc = { ...parsed, spec: rollout.spec };
      deployments = await this.#listOwned<Deployment>(rrc, KINDS.deployment, problems);
      // Fail static: without seeing which versions are ready, keep the weights last rendered from a
      // complete observation rather than route on a guess (an empty list would read as "nothing ready").
      const weights = deployments ? weightsInEffect(rrc.spec, availabilityOf(deployments)) : heldWeights(rrc.spec, object.status);
      if (!weights) return await this.#cannotObserve(object, problems);
      if (!deployments) problems.add(`weights held at ${describeWeights(weights.versions)} until the Deployments can be listed again`);
      desired = planWithWeights(rrc, this.#deps.images, weights);
    } catch (error) {
      if (error instanceof SpecError || error instanceof PlanError) return this.#refuseSpec(object, error.message);
      return failed(`plan ${describeRef(ref)}`, error);
    }

    const conflicts: string[] = [];
    const failuresBefore = problems.list.length;
    for (const child of desired.objects) {
      try {
        await handOverReplicas(kube, child, deployments?.find((d) => d.kind === child.kind && d.metadata.name === child.metadata.name));
        await applyChild(kube, child);
      } catch (error) {
        if (error instanceof FieldConflict) conflicts.push(error.message);
        else problems.add(`apply ${describeRef(refOf(child))}`, error);
      }
    }
    await this.#prune(rrc, desired, problems);
    // A config is history once every child of it is applied.
    const currentRevision =
      problems.list.length === failuresBefore
        ? await problems.attempt(`record the config revision of ${describeRef(ref)}`, () =>
            this.#history.record(object, desired.config.fullHash, rrc.spec.revisionHistoryLimit),
          )
        : undefined;
    const versions = await this.#observePods(rrc, desired, deployments ?? [], problems);
    const hpas = Object.keys(desired.scaling.bounds).length ? await this.#listOwned(rrc, KINDS.horizontalPodAutoscaler, problems) : [];

    const observation: Observation = {
      generation: object.metadata.generation ?? 0,
      spec: rrc.spec,
      weights: desired.weights,
      versions,
      configHash: desired.config.fullHash,
      errors: problems.list,
      conflicts,
      scaling: scalingObservations(rrc.spec, desired.scaling, hpas ?? []),
      ...(rollout.decision ? { rollout: rollout.decision.status } : {}),
    };
    const computed = computeStatus(observation, object.status, this.#deps.clock.now());
    const revision = currentRevision ?? object.status?.currentRevision;
    const status: RerankerConfigStatus = revision ? { ...computed, currentRevision: revision } : computed;
    this.#deps.metrics?.recordResource(key, status, versions);
    if (rollout.decision?.ended) this.#deps.metrics?.recordRolloutEnd(key, rollout.decision.ended);
    await this.#writeStatus(object, status, problems);
    await this.#emitEvents(object, object.status, status, problems.list, rolloutEvents(rollout));
    await this.#acknowledge(object, rollout, problems);

    if (problems.any) return { outcome: 'error', error: problems.toError() };
    const progressing = status.conditions?.find((c) => c.type === 'Progressing')?.status === 'True';
    const afterMs = Math.min(progressing ? (this.#deps.pollMs ?? 5000) : Infinity, rolloutRequeueMs(rollout, this.#deps.clock.now()));
    return Number.isFinite(afterMs) ? { outcome: 'requeue', afterMs } : { outcome: 'done' };
  }

  /**
   * What a rollout could not read (a pod's /metrics, Prometheus) is counted per read, and logged once per
   * new kind and once when reads work again; the step itself says so in status when it cannot be judged.
   */
  #reportRolloutReads(key: Key, rollout: RolloutTurn): void {
    if (!rollout.decision) return;
    for (const { kind } of rollout.unreadable) this.#deps.metrics?.recordRolloutReadFailure(kind);
    if (rollout.unreadable.length === 0) return this.#rolloutReads?.succeeded();
    const failure = new Error(rollout.unreadable.map((u) => u.message).join('; '));
    failure.name = rollout.unreadable[0]!.kind;
    this.#rolloutReads?.failed(failure, { resource: `${key.namespace}/${key.name}` });
  }

  /** A rollout annotation is read once: removed after the status that acted on it is written. */
  async #acknowledge(object: RerankerConfigObject, rollout: RolloutTurn, problems: Problems): Promise<void> {
    if (!rollout.annotation) return;
    const ref = refOf(object as unknown as KubeObject);
    await problems.attempt(`remove annotation ${ROLLOUT_ANNOTATION} of ${describeRef(ref)}`, () =>
      this.#deps.kube.mergePatch(ref, { metadata: { annotations: { [ROLLOUT_ANNOTATION]: null } } }),
    );
  }

  /** What this resource owns of a kind; undefined (and an error recorded) when it could not be listed. */
  async #listOwned<T extends KubeObject>(rrc: RerankerConfig, kind: (typeof OWNED_KINDS)[number], problems: Problems, optional = false): Promise<T[] | undefined> {
    try {
      const list = await this.#deps.kube.list<T>(kind, { namespace: rrc.metadata.namespace, labelSelector: ownerSelector(rrc.metadata.name) });
      // Only what this resource controls: a same-named owner label on someone else's object is not enough.
      return list.items.filter((item) => item.metadata.ownerReferences?.some((o) => o.kind === KIND && o.uid === rrc.metadata.uid && o.controller));
    } catch (error) {
      // A cluster without the add-on (Gateway API, KEDA) has no such kind: nothing of it can be owned.
      if (optional && isApiError(error, 404)) return [];
      problems.add(`list ${kind.kind} ${rrc.metadata.namespace}/${ownerSelector(rrc.metadata.name)}`, error);
      return undefined;
    }
  }

  async #prune(rrc: RerankerConfig, desired: Plan, problems: Problems): Promise<void> {
    const wanted = new Set(desired.objects.map((o) => `${o.kind}/${o.metadata.name}`));
    for (const kind of OWNED_KINDS) {
      // An add-on kind nothing here wants may not exist in this cluster at all (no Gateway API, no KEDA).
      const optional = ADD_ON_KINDS.includes(kind) && !desired.objects.some((o) => o.kind === kind.kind);
      const owned = await this.#listOwned(rrc, kind, problems, optional);
      for (const object of owned ?? []) {
        if (wanted.has(`${object.kind}/${object.metadata.name}`)) continue;
        await problems.attempt(`prune ${describeRef(refOf(object))}`, () => this.#deps.kube.delete(refOf(object)));
      }
    }
  }

  /**
   * Touch the config-hash annotation on pods whose config changed, so kubelet refreshes the mounted
   * ConfigMap now rather than at its next sync, then ask each ready pod which hash it applied.
   */
  async #observePods(rrc: RerankerConfig, desired: Plan, deployments: Deployment[], problems: Problems): Promise<Record<string, VersionObservation>> {
    const versions: Record<string, VersionObservation> = {};
    for (const version of rrc.spec.versions.filter((v) => v.enabled)) versions[version.name] = { pools: {}, readyPods: 0, appliedPods: 0 };
    for (const object of desired.objects) {
      if (object.kind !== 'Deployment') continue;
      const version = object.metadata.labels?.[LABEL.version];
      const pool = object.metadata.labels?.[LABEL.pool] as Pool | undefined;
      const seen = version && pool ? versions[version] : undefined;
      if (!seen || !pool) continue;
      const live = deployments.find((d) => d.metadata.name === object.metadata.name);
      seen.pools[pool] = {
        // An autoscaled Deployment is planned without replicas: what the autoscaler set is what is wanted.
        desired: (object.spec as { replicas?: number }).replicas ?? live?.spec?.replicas ?? 0,
        ready: live?.status?.readyReplicas ?? 0,
        updated: live?.status?.updatedReplicas ?? 0,
        current: live !== undefined && (live.status?.observedGeneration ?? 0) >= (live.metadata.generation ?? 0),
      };
    }
    const list = await problems.attempt(`list pods of ${rrc.metadata.namespace}/${rrc.metadata.name}`, () =>
      this.#deps.kube.list<Pod>(KINDS.pod, { namespace: rrc.metadata.namespace, labelSelector: `${ownerSelector(rrc.metadata.name)},${LABEL.component}=server` }),
    );
    const pods = list?.items ?? [];
    await Promise.all(
      pods.filter(isReady).map(async (pod) => {
        const version = pod.metadata.labels?.[LABEL.version] ?? '';
        const pool = (pod.metadata.labels?.[LABEL.pool] ?? 'gpu') as Pool;
        const expected = desired.config.hashByKey[names.versionConfigKey(version, pool)];
        const seen = versions[version];
        if (!expected || !seen) return;
        seen.readyPods += 1;
        if (pod.metadata.annotations?.[ANNOTATION.configHash] !== expected) {
          try {
            await this.#deps.kube.mergePatch(refOf(pod), { metadata: { annotations: { [ANNOTATION.configHash]: expected } } });
          } catch (error) {
            if (!isApiError(error, 404)) problems.add(`annotate ${describeRef(refOf(pod))}`, error);
          }
        }
        try {
          const applied = await this.#deps.podConfig.read(pod);
          if (applied.hash === expected) seen.appliedPods += 1;
        } catch (error) {
          // A pod that cannot say which config it runs does not count as running the current one;
          // ConfigApplied says which pods did not answer, and why.
          (seen.unanswered ??= []).push(`${pod.metadata.name}: ${messageOf(error)}`);
        }
      }),
    );
    return versions;
  }

  async #writeStatus(object: RerankerConfigObject, status: RerankerConfigStatus, problems: Problems): Promise<void> {
    const ref = refOf(object as unknown as KubeObject);
    await problems.attempt(`update status of ${describeRef(ref)}`, () => this.#deps.kube.patchStatus(ref, status as Record<string, unknown>));
  }

  async #refuseSpec(object: RerankerConfigObject, message: string): Promise<ReconcileResult> {
    const problems = new Problems();
    await this.#writeConditionsOnly(object, invalidSpecConditions(message), problems);
    // Terminal: retrying the same spec cannot help; the next spec change brings a new reconcile.
    return problems.any ? { outcome: 'error', error: problems.toError() } : { outcome: 'done' };
  }

  /**
   * The first reconcile could not see the Deployments: no weights were ever rendered, so nothing that
   * routes traffic is written. Status says why; the error is retried with backoff.
   */
  async #cannotObserve(object: RerankerConfigObject, problems: Problems): Promise<ReconcileResult> {
    const message = `${problems.list.join('; ')}; nothing applied: weights are rendered only from a complete observation`;
    await this.#writeConditionsOnly(object, unobservedConditions(message), problems);
    return { outcome: 'error', error: problems.toError() };
  }

  /** Nothing was planned or observed: only the conditions are news. */
  async #writeConditionsOnly(object: RerankerConfigObject, values: ConditionValue[], problems: Problems): Promise<void> {
    const generation = object.metadata.generation ?? 0;
    const status: RerankerConfigStatus = {
      ...object.status,
      observedGeneration: generation,
      conditions: setConditions(object.status?.conditions, values, generation, this.#deps.clock.now()),
    };
    this.#deps.metrics?.recordConditions(object.metadata, status.conditions ?? []);
    await this.#writeStatus(object, status, problems);
    await this.#emitEvents(object, object.status, status, problems.list);
  }

  async #emitEvents(
    object: RerankerConfigObject,
    before: RerankerConfigStatus | undefined,
    after: RerankerConfigStatus,
    errors: string[],
    extra: Array<{ type: 'Normal' | 'Warning'; reason: string; message: string }> = [],
  ): Promise<void> {
    const events: Array<{ type: 'Normal' | 'Warning'; reason: string; message: string }> = [...extra];
    for (const error of errors) events.push({ type: 'Warning', reason: 'ReconcileFailed', message: error });
    for (const condition of after.conditions ?? []) {
      const previous = before?.conditions?.find((c) => c.type === condition.type);
      if (previous && previous.status === condition.status && previous.reason === condition.reason) continue;
      const bad = (condition.type === 'Degraded') === (condition.status === 'True');
      if (!previous && !bad) continue;
      events.push({ type: bad ? 'Warning' : 'Normal', reason: condition.reason, message: `${condition.type}=${condition.status}: ${condition.message}` });
    }
    await this.#createEvents(object, events);
  }

  async #createEvents(object: RerankerConfigObject, events: RevisionEvent[]): Promise<void> {
    const involvedObject = { ...refOf(object as unknown as KubeObject), ...(object.metadata.uid ? { uid: object.metadata.uid } : {}) };
    for (const event of events) {
      try {
        await this.#deps.kube.createEvent({ involvedObject, ...event });
        this.#eventFailures?.succeeded();
      } catch (error) {
        // Status carries the same facts; the log says the Events are missing (once per kind of failure).
        this.#eventFailures?.failed(error, { resource: `${involvedObject.namespace}/${involvedObject.name}`, reason: event.reason });
      }
    }
  }
}

/** What a rollout tells people: its own transitions, and an annotation that is not a command. */
function rolloutEvents(rollout: RolloutTurn): Array<{ type: 'Normal' | 'Warning'; reason: string; message: string }> {
  const events = [...rollout.events, ...(rollout.decision?.events ?? [])];
  if (rollout.annotation && !rollout.annotation.command) {
    events.push({ type: 'Warning', reason: 'RolloutCommandUnknown', message: `${ROLLOUT_ANNOTATION}=${rollout.annotation.value} is not pause, resume, abort or promote; removed` });
  }
  return events;
}

/**
 * When the rollout wants another look, from now: its delay counts from the decision, so a step ends
 * stepInterval after it started however long this reconcile took (applies, status, Events) since.
 */
function rolloutRequeueMs(rollout: RolloutTurn, now: Date): number {
  const after = rollout.decision?.requeueAfterMs;
  if (after === undefined) return Infinity;
  return Math.max(0, after - (now.getTime() - (rollout.decidedAt ?? now).getTime()));
}

function availabilityOf(deployments: Deployment[]): Availability {
  const out: Record<string, { primary: number; fallback: number }> = {};
  for (const d of deployments) {
    const version = d.metadata.labels?.[LABEL.version];
    if (!version) continue;
    const entry = (out[version] ??= { primary: 0, fallback: 0 });
    const ready = d.status?.readyReplicas ?? 0;
    if (d.metadata.labels?.[LABEL.pool] === 'cpu') entry.fallback += ready;
    else entry.primary += ready;
  }
  return out;
}

function isReady(pod: Pod): boolean {
  return !pod.metadata.deletionTimestamp && (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

function describeWeights(versions: Record<string, { weight: number }>): string {
  return Object.entries(versions).map(([name, v]) => `${name}=${v.weight}`).join(',') || 'none';
}

function failed(what: string, error: unknown): ReconcileResult {
  return { outcome: 'error', error: new Error(`${what}: ${messageOf(error)}`, { cause: error }) };
}
