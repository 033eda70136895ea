/* eslint-disable @typescript-eslint/no-explicit-any -- tests read deep into the planned objects */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRerankerConfig } from '../../operator/crd/parse.ts';
import type { RerankerConfig } from '../../operator/crd/spec.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { plan, PlanError } from '../../operator/planner.ts';
import { planScaling, POD_METRICS, scalingObservations } from '../../operator/plan/scaling.ts';
import { EXIT_MARGIN_SECONDS, PRESTOP_SLEEP_SECONDS } from '../../operator/plan/workloads.ts';
import { computeStatus } from '../../operator/status.ts';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import type { Availability } from '../../operator/weights.ts';
import { ACCEPTED, specWith, type Mutation } from './support/cel-cases.ts';
import { IMAGES, readExample } from './support/examples.ts';

const allReady: Availability = { 'v2-m3': { primary: 2, fallback: 1 }, 'v2-gemma': { primary: 1, fallback: 0 }, v1: { primary: 1, fallback: 0 } };

function seedWith(mutate: Mutation): RerankerConfig {
  return parseRerankerConfig({ ...readExample('seed'), metadata: { name: 'rerankers', namespace: 'rag', uid: 'uid-seed', generation: 1 }, spec: specWith(mutate) as any });
}

const objectsOf = (rrc: RerankerConfig) => plan(rrc, IMAGES, allReady).objects;
const find = (objects: KubeObject[], kind: string, name: string) => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `no ${kind} ${name}`);
  return found as KubeObject & { spec: any };
};

/** v2-m3 (1 GPU a pod) autoscaled 1-6 on CPU; v2-gemma (1 GPU) fixed at 1 pod. */
const budgeted = (gpuBudget: number) =>
  seedWith((s) => {
    s.gpuBudget = gpuBudget;
    s.versions[0]!.autoscaling = { minReplicas: 1, maxReplicas: 6, target: 70 };
  });

describe('autoscaling, disruption budgets and spreading in the plan', () => {
  test('an autoscaled Deployment is planned without replicas; its HPA scales it on CPU utilization, its CPU fallback from fallback replicas to maxReplicas', () => {
    const objects = objectsOf(seedWith(ACCEPTED.autoscaling.mutate));
    for (const name of ['rerankers-v2-m3', 'rerankers-v2-m3-cpu', 'rerankers-v1']) assert.equal('replicas' in find(objects, 'Deployment', name).spec, false, name);
    assert.equal(find(objects, 'Deployment', 'rerankers-v2-gemma').spec.replicas, 1, 'a version without autoscaling keeps its replicas');
    const hpa = find(objects, 'HorizontalPodAutoscaler', 'rerankers-v2-m3').spec;
    assert.deepEqual(hpa.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'rerankers-v2-m3' });
    assert.deepEqual([hpa.minReplicas, hpa.maxReplicas], [2, 4]);
    assert.deepEqual(hpa.metrics, [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }]);
    const fallback = find(objects, 'HorizontalPodAutoscaler', 'rerankers-v2-m3-cpu').spec;
    assert.deepEqual([fallback.minReplicas, fallback.maxReplicas, fallback.metrics], [1, 4, hpa.metrics]);
    assert.equal(objects.some((o) => o.kind === 'HorizontalPodAutoscaler' && o.metadata.name === 'rerankers-v1'), false, 'KEDA makes its own HPA');
  });

  test('queue and inflight: Pods metrics on gauges the server exports, per pod; KEDA reads the same gauge of the pool\'s pods from Prometheus', async () => {
    const exported = (await new ServerMetrics({ defaultMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name);
    for (const name of Object.values(POD_METRICS)) assert.ok(exported.includes(name), `${name} among ${exported.join(', ')}`);
    const hpaQueue = objectsOf(seedWith((s) => (s.versions[1]!.autoscaling = { maxReplicas: 3, metric: 'queue', target: 64 })));
    assert.deepEqual(find(hpaQueue, 'HorizontalPodAutoscaler', 'rerankers-v2-gemma').spec.metrics, [
      { type: 'Pods', pods: { metric: { name: 'reranker_queue_depth' }, target: { type: 'AverageValue', averageValue: '64' } } },
    ]);
    const inflight = objectsOf(seedWith(ACCEPTED.inflight.mutate));
    assert.deepEqual(find(inflight, 'HorizontalPodAutoscaler', 'rerankers-v2-gemma').spec.metrics, [
      { type: 'Pods', pods: { metric: { name: 'reranker_inflight_requests' }, target: { type: 'AverageValue', averageValue: '4' } } },
    ]);
    assert.equal(
      find(inflight, 'ScaledObject', 'rerankers-v1').spec.triggers[0].metadata.query,
      'sum(reranker_inflight_requests{namespace="rag",pod=~"rerankers-v1-[a-z0-9]+-[a-z0-9]+"})',
    );
    const keda = find(objectsOf(seedWith(ACCEPTED.autoscaling.mutate)), 'ScaledObject', 'rerankers-v1').spec;
    assert.deepEqual(keda, {
      scaleTargetRef: { name: 'rerankers-v1' },
      minReplicaCount: 0,
      maxReplicaCount: 3,
      triggers: [{
        type: 'prometheus',
        metadata: { serverAddress: 'http://prometheus.monitoring:9090', query: 'sum(reranker_queue_depth{namespace="rag",pod=~"rerankers-v1-[a-z0-9]+-[a-z0-9]+"})', threshold: '64' },
      }],
    });
  });

  test('gpuBudget: fixed and minimum pods come first, the rest caps the autoscaled GPU versions; status says when the cap, not the metric, holds scale-out', () => {
    const rrc = budgeted(4);
    const objects = objectsOf(rrc);
    // 4 GPUs: v2-gemma's 1 pod and v2-m3's minimum 1 leave 2 for v2-m3 to grow into.
    assert.equal(find(objects, 'HorizontalPodAutoscaler', 'rerankers-v2-m3').spec.maxReplicas, 3);
    assert.equal(find(objects, 'HorizontalPodAutoscaler', 'rerankers-v2-m3-cpu').spec.maxReplicas, 6, 'CPU fallback pods use no GPU');
    const scaling = planScaling(rrc.spec);
    const hpa = (reason: string) => ({
      apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler',
      metadata: { name: 'rerankers-v2-m3', labels: { 'rerank.dev/version': 'v2-m3', 'rerank.dev/pool': 'gpu' } },
      status: { conditions: [{ type: 'ScalingLimited', status: 'True', reason }] },
    });
    const calm = scalingObservations(rrc.spec, scaling, [hpa('DesiredWithinRange')])['v2-m3']!;
    assert.deepEqual(calm, { heldByBudget: false, message: '1-3 pods, HPA on cpu (target 70); gpuBudget 4 caps maxReplicas at 3 (autoscaling.maxReplicas 6)' });
    const held = scalingObservations(rrc.spec, scaling, [hpa('TooManyReplicas')]);
    assert.equal(held['v2-m3']!.heldByBudget, true);
    assert.match(held['v2-m3']!.message, /the HPA asks for more than 3 pods: the budget, not the metric, holds scale-out/);

    const versions = { 'v2-m3': { pools: { gpu: { desired: 3, ready: 3, updated: 3, current: true } }, readyPods: 3, appliedPods: 3 } };
    const weights = plan(rrc, IMAGES, allReady).weights;
    const status = computeStatus({ generation: 1, spec: rrc.spec, weights, versions, configHash: 'h', errors: [], scaling: held }, undefined, new Date(0));
    assert.match(status.conditions!.find((c) => c.type === 'Ready')!.message, /scale-out held by the GPU budget, not the metric: v2-m3: /);
    const m3 = status.versions!.find((v) => v.name === 'v2-m3')!;
    assert.equal(m3.replicas, 3, 'an autoscaled version reports the replicas its autoscaler set');
    assert.match(m3.scaling!, /caps maxReplicas at 3/);
    assert.equal(planScaling(budgeted(20).spec).bounds['v2-m3']!.gpu!.askedMax, undefined, 'a budget with room cuts nothing');
  });

  test('refused: a GPU budget smaller than the pods that must run, and scaling on CPU with no CPU request to measure against', () => {
    assert.throws(() => objectsOf(budgeted(1)), (e: Error) => e instanceof PlanError && /gpuBudget 1 is less than the 2 GPUs .*\(v2-m3 1x1, v2-gemma 1x1\)/.test(e.message));
    const noRequest = seedWith((s) => (s.versions[1]!.autoscaling = { maxReplicas: 2, target: 50 }));
    delete (noRequest.spec.versions[1]!.resources as any).requests;
    assert.throws(() => objectsOf(noRequest), /version v2-gemma of rerankers: autoscaling on cpu needs resources.requests.cpu/);
  });

  test('staying up: a PDB per Deployment, spreading once a pool may have more than one pod, a priority class, and a grace period that covers preStop and the drain', () => {
    const objects = objectsOf(seedWith(ACCEPTED.autoscaling.mutate));
    assert.deepEqual(find(objects, 'PodDisruptionBudget', 'rerankers-v2-m3').spec, {
      maxUnavailable: 2,
      selector: { matchLabels: { 'rerank.dev/owner': 'rerankers', 'rerank.dev/version': 'v2-m3', 'rerank.dev/pool': 'gpu' } },
    });
    assert.equal(find(objects, 'PodDisruptionBudget', 'rerankers-v2-gemma').spec.maxUnavailable, 1, 'the default');
    const m3 = find(objects, 'Deployment', 'rerankers-v2-m3').spec.template.spec;
    assert.deepEqual(m3.topologySpreadConstraints.map((c: any) => [c.topologyKey, c.whenUnsatisfiable]), [
      ['kubernetes.io/hostname', 'ScheduleAnyway'],
      ['topology.kubernetes.io/zone', 'ScheduleAnyway'],
    ]);
    assert.equal(m3.priorityClassName, 'reranker-critical');
    assert.equal(find(objects, 'Deployment', 'rerankers-v2-m3-cpu').spec.template.spec.priorityClassName, 'reranker-critical');
    const gemma = find(objects, 'Deployment', 'rerankers-v2-gemma').spec.template.spec;
    assert.equal(gemma.topologySpreadConstraints, undefined, 'one fixed pod has nothing to spread');
    assert.equal(gemma.priorityClassName, undefined);
    assert.deepEqual(gemma.containers[0].lifecycle, { preStop: { sleep: { seconds: PRESTOP_SLEEP_SECONDS } } });
    const drainSeconds = ServingConfigSchema.parse({}).drainTimeoutMs / 1000;
    assert.equal(gemma.terminationGracePeriodSeconds, PRESTOP_SLEEP_SECONDS + drainSeconds + EXIT_MARGIN_SECONDS);
    assert.equal(gemma.terminationGracePeriodSeconds, 60, "the server's default 45 s drain fits the 60 s grace period after the 10 s preStop sleep");
  });

  test("the grace period follows serving.drainTimeoutMs, the server's drain time, so SIGKILL never comes while it drains", () => {
    const objects = objectsOf(
      seedWith((s) => {
        (s.serving as Record<string, unknown>).drainTimeoutMs = 90_500;
      }),
    );
    for (const name of ['rerankers-v2-m3', 'rerankers-v2-m3-cpu', 'rerankers-v2-gemma']) {
      assert.equal(find(objects, 'Deployment', name).spec.template.spec.terminationGracePeriodSeconds, PRESTOP_SLEEP_SECONDS + 91 + EXIT_MARGIN_SECONDS, name);
    }
  });
});
