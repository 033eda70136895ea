/* eslint-disable @typescript-eslint/no-explicit-any -- tests read deep into the planned objects */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dump, load } from 'js-yaml';
import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Service } from 'kubernetes-models/v1';
import { parseConfig } from '../../server/config/load.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { plan, planDesiredObjects } from '../../operator/planner.ts';
import { RouterConfigSchema } from '../../server/config/router-schema.ts';
import type { Availability } from '../../operator/weights.ts';
import { IMAGES, example, readExample } from './support/examples.ts';
import { ACCEPTED, specWith } from './support/cel-cases.ts';
import { parseRerankerConfig } from '../../operator/crd/parse.ts';
import { names } from '../../operator/names.ts';

/** The seed example with the autoscaling case of the CRD tests: HPA on CPU for v2-m3, KEDA scale-to-zero on the queue for v1. */
const autoscaledSeed = () => parseRerankerConfig({ ...readExample('seed'), metadata: { name: 'rerankers', namespace: 'rag', uid: 'uid-seed', generation: 1 }, spec: specWith(ACCEPTED.autoscaling.mutate) as any });

const allReady: Availability = { 'v2-m3': { primary: 2, fallback: 1 }, 'v2-gemma': { primary: 1, fallback: 0 }, v1: { primary: 1, fallback: 0 } };

function golden(name: string, objects: KubeObject[]): void {
  const file = new URL(`./golden/${name}.yaml`, import.meta.url);
  const text = objects.map((o) => dump(o, { lineWidth: -1, noRefs: true })).join('---\n');
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, text);
  assert.equal(text, readFileSync(file, 'utf8'), `golden ${name}.yaml differs (UPDATE_GOLDEN=1 rewrites it after review)`);
}

const byName = (objects: KubeObject[], kind: string, name: string) => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `no ${kind} ${name} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found as KubeObject & { spec: any; data: Record<string, string> };
};

describe('planDesiredObjects', () => {
  test('golden: the seed example (gateway mode), every version ready', () => {
    golden('seed', planDesiredObjects(example('seed'), IMAGES, allReady));
  });

  test('golden: the seed example while v2-gemma has no ready endpoints and v2-m3 runs on its CPU fallback', () => {
    golden('seed-degraded', planDesiredObjects(example('seed'), IMAGES, { ...allReady, 'v2-m3': { primary: 0, fallback: 1 }, 'v2-gemma': { primary: 0, fallback: 0 } }));
  });

  test('golden: the router example', () => {
    golden('router', planDesiredObjects(example('router'), IMAGES, { stable: { primary: 2, fallback: 0 }, candidate: { primary: 1, fallback: 0 } }));
  });

  test('golden: the seed example autoscaled (an HPA on CPU for v2-m3 and its CPU fallback, KEDA on the queue for v1), with PDBs', () => {
    golden('seed-autoscaling', planDesiredObjects(autoscaledSeed(), IMAGES, allReady));
  });

  test('every object validates against the Kubernetes and Gateway API schemas', () => {
    const objects = [
      ...planDesiredObjects(example('seed'), IMAGES, allReady),
      ...planDesiredObjects(example('router'), IMAGES, {}),
      ...planDesiredObjects(autoscaledSeed(), IMAGES, allReady).filter((o) => o.kind !== 'ScaledObject'),
    ];
    const models: Record<string, new (data: any) => { validate(): void }> = {
      Deployment, Service, ConfigMap, HTTPRoute, HorizontalPodAutoscaler, PodDisruptionBudget,
    };
    for (const object of objects) {
      const Model = models[object.kind];
      assert.ok(Model, `no schema model for ${object.kind}`);
      assert.doesNotThrow(() => new Model(object).validate(), `${object.kind} ${object.metadata.name}`);
    }
  });

  test('objects: one Deployment and Service per enabled version pool, the ConfigMap, the routing; all owned and labelled', () => {
    const rrc = example('seed');
    const objects = planDesiredObjects(rrc, IMAGES, allReady);
    assert.deepEqual(
      objects.map((o) => `${o.kind}/${o.metadata.name}`),
      [
        'ConfigMap/rerankers-config',
        'Service/rerankers-v2-m3', 'Service/rerankers-v2-m3-cpu', 'Service/rerankers-v2-gemma', 'Service/rerankers-v1',
        'Deployment/rerankers-v2-m3', 'PodDisruptionBudget/rerankers-v2-m3',
        'Deployment/rerankers-v2-m3-cpu', 'PodDisruptionBudget/rerankers-v2-m3-cpu',
        'Deployment/rerankers-v2-gemma', 'PodDisruptionBudget/rerankers-v2-gemma',
        'Deployment/rerankers-v1', 'PodDisruptionBudget/rerankers-v1',
        'HTTPRoute/rerankers',
      ],
    );
    for (const o of objects) {
      assert.equal(o.metadata.namespace, 'rag');
      assert.equal(o.metadata.labels?.['rerank.dev/owner'], 'rerankers');
      assert.deepEqual(o.metadata.ownerReferences, [
        { apiVersion: 'rerank.dev/v1alpha1', kind: 'RerankerConfig', name: 'rerankers', uid: 'uid-seed', controller: true, blockOwnerDeletion: true },
      ]);
    }
  });

  test('a version Deployment: GPU request, placement, probes, hardening, model init container, config dir mount', () => {
    const d = byName(planDesiredObjects(example('seed'), IMAGES, allReady), 'Deployment', 'rerankers-v2-gemma');
    const pod = d.spec.template.spec;
    const [server] = pod.containers;
    const [init] = pod.initContainers;
    assert.equal(server.resources.limits['nvidia.com/gpu'], 1);
    assert.deepEqual(pod.nodeSelector, { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-40GB' });
    assert.equal(pod.tolerations[0].key, 'nvidia.com/gpu');
    assert.equal(server.readinessProbe.httpGet.path, '/readyz');
    assert.equal(server.livenessProbe.httpGet.path, '/healthz');
    for (const c of [server, init]) {
      assert.equal(c.securityContext.runAsNonRoot, true);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    }
    assert.deepEqual(init.args, [
      'models', 'pull', 'oci://registry.example.com/models/bge-reranker-v2-gemma:2024-06', '--dir', '/models/v2-gemma',
      '--sha256', '4f2a1c7e9b3d5a6f8e0c1b2d3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f',
    ]);
    assert.deepEqual(server.args, ['start', '--config', '/etc/rerank/version-v2-gemma.yaml', '--port', '8080']);
    const configMount = server.volumeMounts.find((m: { name: string }) => m.name === 'config');
    assert.deepEqual(configMount, { name: 'config', mountPath: '/etc/rerank', readOnly: true });
    for (const c of [server, init]) assert.ok(c.volumeMounts.every((m: { subPath?: string }) => m.subPath === undefined));
  });

  test('a model token Secret reaches only the init container, as HF_TOKEN from a secretKeyRef', () => {
    const rrc = example('seed');
    rrc.spec.versions[0]!.model.tokenSecretRef = { name: 'hf-token', key: 'token', optional: true };
    const objects = planDesiredObjects(rrc, IMAGES, allReady);
    for (const name of ['rerankers-v2-m3', 'rerankers-v2-m3-cpu']) {
      const pod = byName(objects, 'Deployment', name).spec.template.spec;
      assert.deepEqual(pod.initContainers[0].env, [{ name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf-token', key: 'token', optional: true } } }]);
      assert.equal(pod.containers[0].env, undefined, 'the serving container has no use for the token');
      assert.doesNotThrow(() => new Deployment(byName(objects, 'Deployment', name) as any).validate());
    }
    assert.equal(byName(objects, 'Deployment', 'rerankers-v2-gemma').spec.template.spec.initContainers[0].env, undefined);
  });

  test("the model init container fetches the version's variant: as configured, auto decided on CPU pods, fp32 for auto on GPU pods", () => {
    const pullArgs = (objects: KubeObject[], deployment: string) => byName(objects, 'Deployment', deployment).spec.template.spec.initContainers[0].args as string[];
    const variantOf = (args: string[]) => (args.includes('--variant') ? args[args.indexOf('--variant') + 1] : undefined);
    // v2-m3 is hf:// on a GPU with a CPU fallback; v2-gemma is oci://, which brings its own files.
    const cases: Array<{ variant: 'auto' | 'fp32' | 'int8' | 'fp16'; gpu: string | undefined; cpu: string | undefined }> = [
      { variant: 'auto', gpu: undefined, cpu: 'auto' },
      { variant: 'int8', gpu: 'int8', cpu: 'int8' },
      { variant: 'fp16', gpu: 'fp16', cpu: 'fp16' },
      { variant: 'fp32', gpu: 'fp32', cpu: 'fp32' },
    ];
    for (const { variant, gpu, cpu } of cases) {
      const rrc = example('seed');
      for (const version of rrc.spec.versions) version.variant = variant;
      const objects = planDesiredObjects(rrc, IMAGES, allReady);
      assert.equal(variantOf(pullArgs(objects, 'rerankers-v2-m3')), gpu, `${variant}: GPU pods`);
      assert.equal(variantOf(pullArgs(objects, 'rerankers-v2-m3-cpu')), cpu, `${variant}: CPU fallback pods`);
      assert.equal(variantOf(pullArgs(objects, 'rerankers-v2-gemma')), undefined, `${variant}: an oci:// source`);
      // The serving config the pods read asks for the same variant.
      const key = names.versionConfigKey('v2-m3', 'cpu');
      const { config } = parseConfig(byName(objects, 'ConfigMap', names.configMap('rerankers')).data[key]!, { source: key, baseDir: '/etc/rerank' });
      assert.equal(config.versions['v2-m3']?.variant, variant);
    }
    const cpuOnly = example('seed');
    const v2m3 = cpuOnly.spec.versions.find((v) => v.name === 'v2-m3')!;
    delete v2m3.resources;
    delete v2m3.cpuFallback;
    assert.deepEqual(pullArgs(planDesiredObjects(cpuOnly, IMAGES, allReady), 'rerankers-v2-m3').slice(-2), ['--variant', 'auto'], 'a CPU-only version decides auto in its pod');
  });

  test('the CPU fallback and CPU-only versions request no GPU and are not pinned to GPU nodes', () => {
    const objects = planDesiredObjects(example('seed'), IMAGES, allReady);
    for (const name of ['rerankers-v2-m3-cpu', 'rerankers-v1']) {
      const pod = byName(objects, 'Deployment', name).spec.template.spec;
      assert.equal(JSON.stringify(pod.containers[0].resources).includes('gpu'), false, name);
      assert.equal(pod.nodeSelector, undefined);
    }
  });

  test('a knob change changes only the ConfigMap: no pod template moves, so no pod restarts', () => {
    const before = example('seed');
    const after = example('seed');
    after.spec.serving = { ...after.spec.serving, topK: 20, maxBatchSize: 8, logLevel: 'debug' };
    const a = planDesiredObjects(before, IMAGES, allReady);
    const b = planDesiredObjects(after, IMAGES, allReady);
    for (let i = 0; i < a.length; i++) {
      if (a[i]!.kind === 'ConfigMap') assert.notDeepEqual(a[i], b[i]);
      else assert.deepEqual(a[i], b[i], `${a[i]!.kind} ${a[i]!.metadata.name} changed`);
    }
  });

  test('each rendered config file is accepted by the server\'s loader and hashes to what the plan expects', () => {
    const { objects, config } = plan(example('seed'), IMAGES, allReady);
    const data = byName(objects, 'ConfigMap', 'rerankers-config').data;
    for (const [key, hash] of Object.entries(config.hashByKey)) {
      const loaded = parseConfig(data[key]!, { source: key, baseDir: '/etc/rerank' });
      assert.equal(loaded.hash, hash, key);
    }
    const gemma = parseConfig(data['version-v2-gemma.yaml']!, { source: 'x', baseDir: '/etc/rerank' }).config;
    assert.deepEqual(Object.keys(gemma.versions), ['v2-gemma']);
    assert.equal(gemma.versions['v2-gemma']?.model, '/models/v2-gemma');
    assert.equal(gemma.versions['v2-gemma']?.device, 'cuda');
    const fallback = parseConfig(data['version-v2-m3.cpu.yaml']!, { source: 'x', baseDir: '/etc/rerank' }).config;
    assert.equal(fallback.versions['v2-m3']?.device, 'cpu');
    assert.equal(fallback.serving.topK, 5);
  });

  test('HTTPRoute: one header rule per version, then weights in effect on the catch-all', () => {
    const route = byName(planDesiredObjects(example('seed'), IMAGES, allReady), 'HTTPRoute', 'rerankers');
    const rules = route.spec.rules;
    assert.deepEqual(rules.slice(0, 3).map((r: any) => [r.matches[0].headers[0].value, r.backendRefs[0].name]), [
      ['v2-m3', 'rerankers-v2-m3'], ['v2-gemma', 'rerankers-v2-gemma'], ['v1', 'rerankers-v1'],
    ]);
    assert.deepEqual(rules[3].backendRefs.map((b: any) => [b.name, b.weight]), [['rerankers-v2-m3', 90], ['rerankers-v2-gemma', 10]]);
  });

  test('a version with no ready endpoints gets no weight; one on its CPU fallback is routed to the fallback Service', () => {
    const route = byName(
      planDesiredObjects(example('seed'), IMAGES, { ...allReady, 'v2-gemma': { primary: 0, fallback: 0 }, 'v2-m3': { primary: 0, fallback: 1 } }),
      'HTTPRoute',
      'rerankers',
    );
    assert.deepEqual(route.spec.rules[3].backendRefs.map((b: any) => [b.name, b.weight]), [['rerankers-v2-m3-cpu', 100]]);
    assert.equal(route.spec.rules[0].backendRefs[0].name, 'rerankers-v2-m3-cpu');
  });

  test('router mode: router Deployment and Service, upstream URLs under router: in router.yaml, no HTTPRoute', () => {
    const objects = planDesiredObjects(example('router'), IMAGES, { stable: { primary: 2, fallback: 0 } });
    assert.equal(objects.some((o) => o.kind === 'HTTPRoute'), false);
    const router = byName(objects, 'Deployment', 'rerankers-lite-router');
    assert.deepEqual(router.spec.template.spec.containers[0].args.slice(0, 5), [
      'router', '--config', '/etc/rerank/config.yaml', '--router-config', '/etc/rerank/router.yaml',
    ]);
    assert.equal(byName(objects, 'Service', 'rerankers-lite').spec.selector['app.kubernetes.io/component'], 'router');
    const data = byName(objects, 'ConfigMap', 'rerankers-lite-config').data;
    const routerConfig = RouterConfigSchema.parse(load(data['router.yaml']!));
    assert.deepEqual(routerConfig.router.upstreams, {
      stable: 'http://rerankers-lite-stable.rag.svc:8080',
      candidate: 'http://rerankers-lite-candidate.rag.svc:8080',
    });
    const full = parseConfig(data['config.yaml']!, { source: 'x', baseDir: '/' }).config;
    assert.deepEqual([full.versions.stable?.weight, full.versions.candidate?.weight], [100, 0]);
  });

  test('a disabled version has no Deployment, Service or header rule, and keeps enabled: false in config.yaml', () => {
    const rrc = example('seed');
    rrc.spec.versions[1]!.enabled = false;
    const { objects } = plan(rrc, IMAGES, allReady);
    assert.equal(objects.some((o) => o.metadata.name.includes('gemma')), false);
    const full = parseConfig(byName(objects, 'ConfigMap', 'rerankers-config').data['config.yaml']!, { source: 'x', baseDir: '/' }).config;
    assert.equal(full.versions['v2-gemma']?.enabled, false);
  });

  test('a version\'s faults reach the config.yaml its pods and the router read, and its own pool file, as written', () => {
    const rrc = parseRerankerConfig({ ...readExample('seed'), metadata: { name: 'rerankers', namespace: 'rag', uid: 'uid-seed', generation: 1 } });
    rrc.spec.versions[1]!.faults = { errorRatio: 0.3, errorStatus: 503, delayMs: 200, delayRatio: 0.5 };
    const { objects } = plan(rrc, IMAGES, allReady);
    const data = byName(objects, 'ConfigMap', 'rerankers-config').data as Record<string, string>;
    const name = rrc.spec.versions[1]!.name;
    for (const key of ['config.yaml', names.versionConfigKey(name, 'gpu')]) {
      const config = parseConfig(data[key]!, { source: key, baseDir: '/' }).config;
      assert.deepEqual(config.versions[name]?.faults, { errorRatio: 0.3, errorStatus: 503, delayMs: 200, delayRatio: 0.5 }, key);
    }
    const full = parseConfig(data['config.yaml']!, { source: 'x', baseDir: '/' }).config;
    assert.equal(full.versions[rrc.spec.versions[0]!.name]?.faults, undefined);
  });

  test('spec.images overrides the operator\'s default images', () => {
    const rrc = example('seed');
    rrc.spec.images = { server: 'registry.local/rerank:dev', modelFetcher: 'registry.local/fetch:1', pullPolicy: 'Always' };
    const pod = byName(planDesiredObjects(rrc, IMAGES, allReady), 'Deployment', 'rerankers-v1').spec.template.spec;
    assert.equal(pod.containers[0].image, 'registry.local/rerank:dev');
    assert.equal(pod.initContainers[0].image, 'registry.local/fetch:1');
    assert.equal(pod.containers[0].imagePullPolicy, 'Always');
  });

  test('a pvc:// model mounts its claim read-only for the init container', () => {
    const pod = byName(planDesiredObjects(example('router'), IMAGES, {}), 'Deployment', 'rerankers-lite-stable').spec.template.spec;
    assert.deepEqual(pod.volumes.at(-1), { name: 'model-source', persistentVolumeClaim: { claimName: 'reranker-models', readOnly: true } });
    assert.deepEqual(pod.initContainers[0].volumeMounts.at(-1), { name: 'model-source', mountPath: '/mnt/pvc/reranker-models', readOnly: true });
  });
});
