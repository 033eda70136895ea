/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from the fake apiserver and the router as JSON */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump, load } from 'js-yaml';
import type { RerankerConfigObject } from '../../operator/crd/spec.ts';
import { KINDS, type KubeObject } from '../../operator/kube.ts';
import { LABEL } from '../../operator/names.ts';
import { Reconciler } from '../../operator/reconciler.ts';
import { parseExposition, type Sample } from '../../operator/rollout/exposition.ts';
import type { PodMetricsReader } from '../../operator/rollout/pod-metrics.ts';
import { tinyModel } from '../support/models.ts';
import { FakeClock } from './support/fake-clock.ts';
import { FakeKube, FakePodConfigReader } from './support/fake-kube.ts';
import { IMAGES } from './support/examples.ts';

/**
 * A rollout judged on real processes: three `rerank-server start` processes (stable and twin serve the
 * same generated model, other a model of other weights) behind a real `rerank-server router` process.
 * The operator's reconciler (against the fake apiserver, on a stepped clock) renders config.yaml and
 * router.yaml, which are handed to the router as written (only the Service URLs become the processes'
 * loopback URLs), and reads the processes' own /metrics as it reads pods': the servers' request counters
 * and the router's agreement histograms. Client requests go through the router; with a ranking gate the
 * router mirrors stable's answers to the canary, and the canary's pod counts those copies apart.
 */

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../server/cli/main.ts');
const NAMESPACE = 'rag';
const NAME = 'agree';
const STEP_MS = 60_000;

interface Process {
  child: ChildProcess;
  url: string;
}

async function spawnCli(args: string[], listening: string): Promise<Process> {
  const child = spawn(process.execPath, [cli, ...args, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.msg === listening) resolve(entry.url as string);
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited early (${code})`)));
  });
  child.stdout!.resume();
  return { child, url };
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** One series of a process's /metrics (summed over the series that match the given labels). */
async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const samples = parseExposition(await (await fetch(`${url}/metrics`)).text());
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

/** The fake apiserver's pods answer with the real processes' /metrics: server pods by their version, router pods with the router. */
class ProcessMetrics implements PodMetricsReader {
  readonly urls: { servers: Record<string, string>; router: string };
  constructor(urls: { servers: Record<string, string>; router: string }) {
    this.urls = urls;
  }
  async read(pod: KubeObject): Promise<Sample[]> {
    const labels = pod.metadata.labels ?? {};
    const url = labels[LABEL.component] === 'router' ? this.urls.router : this.urls.servers[labels[LABEL.version] ?? ''];
    if (!url) throw new Error(`no process for pod ${pod.metadata.name}`);
    return parseExposition(await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text());
  }
}

// More than the mirror's top 10 (the operator renders topK: 10): with 10 or fewer, any two rankings share their top 10.
const TEXTS = [
  'a cross-encoder scores pairs', 'vector search recalls', 'bm25 is lexical', 'rerankers reorder', 'the sky is blue',
  'tokenizers split words', 'onnx runs graphs', 'kubernetes schedules pods', 'the river runs through the city', 'energy prices rose',
  'a school of music', 'retrieval augmented generation', 'dense and sparse vectors', 'the history of the market', 'query expansion',
  'late interaction models', 'a quiet evening', 'operators reconcile state', 'canary weights move in steps', 'the model answers fast',
];

describe('a rollout judged on real rerank-server processes behind the real router, with mirroring', { timeout: 120_000 }, () => {
  let dir: string;
  const servers: Record<string, Process> = {};
  let router: Process;
  let kube: FakeKube;
  let clock: FakeClock;
  let reconciler: Reconciler;
  let podMetrics: ProcessMetrics;

  const rrc = () => kube.find<KubeObject & RerankerConfigObject>('RerankerConfig', NAMESPACE, NAME)!;
  const rollout = () => rrc().status?.rollout as any;
  const reconcile = () => reconciler.reconcile({ namespace: NAMESPACE, name: NAME });

  /** The rendered ConfigMap into the router's files, Service URLs swapped for the processes'; resolves once the router serves them. */
  async function syncRouter(): Promise<{ weights: Record<string, number>; mirror: any }> {
    const data = (kube.find('ConfigMap', NAMESPACE, `${NAME}-config`) as any).data as Record<string, string>;
    const routerConfig = load(data['router.yaml']!) as any;
    for (const version of Object.keys(routerConfig.router.upstreams)) routerConfig.router.upstreams[version] = servers[version]!.url;
    for (const [file, text] of [['config.yaml', data['config.yaml']!], ['router.yaml', dump(routerConfig)]] as const) {
      await writeFile(path.join(dir, `${file}.tmp`), text);
      await rename(path.join(dir, `${file}.tmp`), path.join(dir, file));
    }
    const config = load(data['config.yaml']!) as any;
    const weights = Object.fromEntries(Object.entries(config.versions).map(([name, v]: [string, any]) => [name, v.weight as number]));
    const mirror = routerConfig.router.mirror;
    await until('the router to serve the rendered files', async () => {
      const served = (await (await fetch(`${router.url}/config`)).json()) as any;
      const routing = served.routing;
      const servedWeights = Object.fromEntries(routing.versions.map((v: any) => [v.name, v.weight]));
      const upstreamsIn = routing.versions.every((v: any) => v.upstream === servers[v.name]!.url);
      return upstreamsIn && JSON.stringify(servedWeights) === JSON.stringify(weights) && routing.mirror?.to === mirror?.to && routing.mirror?.problem === undefined;
    });
    return { weights, mirror };
  }

  /**
   * `n` unpinned client requests through the router, each with its own sticky key (the same keys every run, so the
   * weighted split is the same every run); waits until every copy the router mirrored was compared or counted failed.
   */
  async function traffic(n: number): Promise<Record<string, number>> {
    const answeredBy: Record<string, number> = {};
    const settledCopies = async () =>
      (await metric(router.url, 'reranker_router_agreement_comparisons_total')) + (await metric(router.url, 'reranker_router_mirror_failures_total'));
    const settledBefore = await settledCopies();
    for (let i = 0; i < n; i += 1) {
      const rotated = [...TEXTS.slice(i % TEXTS.length), ...TEXTS.slice(0, i % TEXTS.length)];
      const response = await fetch(`${router.url}/rerank`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-rerank-sticky-key': `client-${i}` },
        body: JSON.stringify({ query: `what reorders search results ${i}`, texts: rotated }),
      });
      assert.equal(response.status, 200);
      await response.arrayBuffer();
      const version = response.headers.get('x-rerank-version')!;
      answeredBy[version] = (answeredBy[version] ?? 0) + 1;
    }
    // Mirroring fraction 1: each request stable answered ends in one comparison or one counted failure.
    await until('the mirrored copies to settle', async () => (await settledCopies()) === settledBefore + (answeredBy.stable ?? 0));
    return answeredBy;
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-rollout-real-'));
    const models = { stable: (await tinyModel({ seed: 42 })).dir, twin: (await tinyModel({ seed: 42 })).dir, other: (await tinyModel({ seed: 7 })).dir };
    const started = await Promise.all(
      Object.entries(models).map(async ([version, model]) => {
        const file = path.join(dir, `server-${version}.yaml`);
        await writeFile(file, dump({ defaultVersion: version, versions: { [version]: { model, weight: 100 } }, serving: { logLevel: 'info' } }));
        return [version, await spawnCli(['start', '--config', file], 'listening')] as const;
      }),
    );
    for (const [version, running] of started) servers[version] = running;

    kube = new FakeKube();
    clock = new FakeClock();
    podMetrics = new ProcessMetrics({ servers: Object.fromEntries(started.map(([v, p]) => [v, p.url])), router: '' });
    reconciler = new Reconciler({
      kube,
      podConfig: new FakePodConfigReader(kube),
      podMetrics,
      clock,
      images: IMAGES,
    });
    const version = (name: string, weight: number) => ({ name, model: { source: `hf://example/${name}` }, replicas: 1, weight });
    await kube.create({
      apiVersion: 'rerank.dev/v1alpha1',
      kind: 'RerankerConfig',
      metadata: { name: NAME, namespace: NAMESPACE },
      spec: { defaultVersion: 'stable', versions: [version('stable', 100), version('twin', 0), version('other', 0)], routing: { mode: 'router', router: { replicas: 1 } } },
    } as unknown as KubeObject);
    await reconcile();
    kube.settleDeployments();
    await reconcile();
    // The router process starts on the files the operator rendered.
    const data = (kube.find('ConfigMap', NAMESPACE, `${NAME}-config`) as any).data as Record<string, string>;
    await writeFile(path.join(dir, 'config.yaml'), data['config.yaml']!);
    await writeFile(path.join(dir, 'router.yaml'), 'router: {upstreams: {}}\n');
    router = await spawnCli(['router', '--config', path.join(dir, 'config.yaml'), '--router-config', path.join(dir, 'router.yaml'), '--watch', 'poll', '--poll-interval', '100'], 'router listening');
    podMetrics.urls.router = router.url;
    await syncRouter();
  });

  after(async () => {
    for (const p of [router, ...Object.values(servers)]) {
      if (!p || p.child.exitCode !== null) continue;
      p.child.kill('SIGTERM');
      await once(p.child, 'exit');
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const rolloutOf = (canary: string) => ({
    canary,
    steps: [25, 50],
    stepInterval: '1m',
    minRequests: 5,
    analysis: { minTopKOverlap: 0.9, minKendallTau: 0.8, maxErrorRatio: 0.05, mirrorFraction: 1 },
  });

  test('a canary of other weights disagrees with stable on the mirrored requests: agreement under the gates, rolled back at the end of its first step', async (t) => {
    await kube.mergePatch({ ...KINDS.rerankerConfig, namespace: NAMESPACE, name: NAME }, { spec: { rollout: rolloutOf('other') } });
    await reconcile();
    assert.deepEqual([rollout().phase, rollout().weight], ['Progressing', 25]);
    const { weights, mirror } = await syncRouter();
    assert.deepEqual(weights, { stable: 75, twin: 0, other: 25 });
    assert.deepEqual([mirror.from, mirror.to, mirror.fraction], ['stable', 'other', 1]);

    const answeredBy = await traffic(40);
    const mirrored = await metric(router.url, 'reranker_router_mirrored_requests_total', { from: 'stable', to: 'other' });
    assert.equal(mirrored, answeredBy.stable, 'every request stable answered was mirrored (fraction 1)');
    // The canary's pod: its client requests in reranker_requests_total, the copies apart.
    assert.equal(await metric(servers.other!.url, 'reranker_requests_total', { version: 'other' }), answeredBy.other ?? 0);
    assert.equal(await metric(servers.other!.url, 'reranker_mirrored_requests_total', { version: 'other', status: '200' }), mirrored);

    await clock.advance(STEP_MS);
    await reconcile();
    const judged = rollout();
    assert.equal(judged.phase, 'RolledBack', judged.message);
    assert.equal(judged.lastAnalysis.topKOverlap.ok, false);
    assert.ok(judged.lastAnalysis.topKOverlap.value < 0.9, JSON.stringify(judged.lastAnalysis));
    assert.ok(judged.lastAnalysis.kendallTau.value < 0.8, JSON.stringify(judged.lastAnalysis));
    assert.deepEqual(judged.lastAnalysis.errorRatio, { value: 0, threshold: 0.05, ok: true });
    assert.match(judged.message, /^step 1\/2 \(25%\) failed topKOverlap [\d.]+ < 0\.9, kendallTau -?[\d.]+ < 0\.8: rolled back, canary other gets no traffic$/);
    t.diagnostic(`client requests: ${JSON.stringify(answeredBy)}; copies mirrored to the canary: ${mirrored}; gates: ${JSON.stringify(judged.lastAnalysis)}`);
    const after = await syncRouter();
    assert.deepEqual([after.weights, after.mirror], [{ stable: 100, twin: 0, other: 0 }, undefined]);
  });

  test('a canary serving the same model agrees fully: overlap 1 and tau 1 at every step, then promoted', async (t) => {
    await kube.mergePatch({ ...KINDS.rerankerConfig, namespace: NAMESPACE, name: NAME }, { spec: { rollout: rolloutOf('twin') } });
    await reconcile();
    assert.deepEqual([rollout().phase, rollout().canary, rollout().weight], ['Progressing', 'twin', 25]);
    for (const [step, weight] of [[0, 25], [1, 50]] as const) {
      const { weights, mirror } = await syncRouter();
      assert.deepEqual([weights.twin, weights.stable, mirror.to], [weight, 100 - weight, 'twin']);
      const answeredBy = await traffic(40);
      assert.ok((answeredBy.twin ?? 0) >= 5, `the canary answered ${answeredBy.twin} client requests`);
      t.diagnostic(`step ${step + 1}: client requests ${JSON.stringify(answeredBy)}`);
      await clock.advance(STEP_MS);
      await reconcile();
      const judged = rollout();
      assert.deepEqual(judged.lastAnalysis, {
        errorRatio: { value: 0, threshold: 0.05, ok: true },
        topKOverlap: { value: 1, threshold: 0.9, ok: true },
        kendallTau: { value: 1, threshold: 0.8, ok: true },
      }, `step ${step + 1}`);
    }
    assert.equal(rollout().phase, 'Succeeded', rollout().message);
    assert.match(rollout().message, /^every step passed: twin is promoted/);
    const promoted = await syncRouter();
    assert.deepEqual([promoted.weights.twin, promoted.mirror], [100, undefined]);
  });
});
