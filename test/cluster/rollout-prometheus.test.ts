import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { KINDS } from '../../operator/kube.ts';
import { ClientNodeKube } from '../../operator/kube-client.ts';
import { FakePrometheus, vector, type FakeAnswer } from '../operator/support/fake-prometheus.ts';
import { clusterSkip, installCrd, installGatewayApi, startCluster, type Cluster } from './harness.ts';
import { eventually, startOperator, type OperatorProcess } from './operator-process.ts';
import { Resources } from './resources.ts';
import { configWeights, promo, rb, Recorder, rolloutChecks, rolloutOf, routeWeights } from './rollout-support.ts';

/**
 * spec.rollout.analysis.prometheus on the real API server: the operator process takes each step's
 * figures from a Prometheus HTTP API on loopback (the test's), not from the pods, which are never asked
 * (they are marked Ready, with addresses nothing listens on). The fake answers the default queries
 * with the figures of each version, and records what it was asked. It wants a bearer token, which the
 * operator reads from a Secret in the RerankerConfig's namespace (analysis.prometheus.auth).
 */

const TOKEN = 'cluster-t0k3n';

/** Which figure a default query reads, by the series it names. */
function figureOf(query: string): 'requests' | 'errors' | 'mirrored' | 'p99Ms' | 'fallbacks' | 'loadFailures' | undefined {
  if (query.includes('reranker_request_duration_seconds_bucket')) return 'p99Ms';
  // These rollouts judge no ranking, so nothing is mirrored: the copies and their errors have no series.
  if (query.includes('reranker_mirrored_requests_total')) return 'mirrored';
  if (query.includes('reranker_fallback_count_total')) return 'fallbacks';
  if (query.includes('reranker_version_load_failures_total')) return 'loadFailures';
  if (query.includes('reranker_requests_total')) return query.includes('status=~"5.."') ? 'errors' : 'requests';
  return undefined;
}

const FIGURES: Record<string, { requests: number; errors: number }> = { v1: { requests: 500, errors: 0 }, v2: { requests: 100, errors: 0 }, bad: { requests: 100, errors: 40 } };

describe('spec.rollout judged on figures from Prometheus (real API server, operator process)', { skip: clusterSkip, timeout: 90_000, concurrency: true }, () => {
  const context = {} as { cluster: Cluster; r: Resources; operator: OperatorProcess; recorder: Recorder; prometheus: FakePrometheus };
  before(async () => {
    context.prometheus = await FakePrometheus.start({ authorization: `Bearer ${TOKEN}` });
    context.prometheus.answer = (query): FakeAnswer => {
      const version = /version="([^"]+)"/.exec(query)?.[1] ?? '';
      const figure = figureOf(query);
      if (!figure || !FIGURES[version]) return { status: 400, body: { status: 'error', errorType: 'bad_data', error: `unexpected query ${query}` } };
      if (figure === 'requests' || figure === 'errors') return vector(FIGURES[version][figure]);
      return figure === 'p99Ms' ? vector('NaN') : vector();
    };
    context.cluster = await startCluster();
    await installCrd(context.cluster);
    await installGatewayApi(context.cluster);
    context.r = new Resources(context.cluster, await context.cluster.namespace('rrc-rollout-prom'));
    // A token written with a trailing newline, as `echo token > file` makes it.
    await context.cluster.kubectl(['create', 'secret', 'generic', 'prom-token', '-n', context.r.namespace, `--from-literal=token=${TOKEN}\n`]);
    context.operator = await startOperator({ kubeconfig: context.cluster.kubeconfig, env: { LEADER_ELECT: 'false', WATCH_NAMESPACE: context.r.namespace } });
    context.recorder = new Recorder(new ClientNodeKube(context.cluster.kubeConfig()));
    await Promise.all([KINDS.rerankerConfig, KINDS.configMap, KINDS.httpRoute].map((kind) => context.recorder.watch(kind, context.r.namespace)));
    for (const object of [promo, rb]) await context.r.apply(object);
    const selector = 'app.kubernetes.io/component=server';
    await eventually('4 server pods created', async () => (await context.r.list('pods', selector)).length === 4, 30_000);
    // 127.0.1.40-43: nothing listens there; the figures must come from Prometheus.
    await context.r.markPodsReady(selector, 40);
  });
  after(async () => {
    context.recorder?.stop();
    await context.operator?.stop();
    await context.cluster?.cleanup();
    await context.prometheus?.close();
  });
  const { rolloutIs, wasRendered, events } = rolloutChecks(() => context);
  const withPrometheus = (canary: string) => ({
    ...rolloutOf(canary),
    analysis: { maxErrorRatio: 0.05, prometheus: { url: `${context.prometheus.url}/`, auth: { bearerTokenSecret: { name: 'prom-token' } }, headers: [{ name: 'X-Scope-OrgID', value: 'rag' }] } },
  });

  test('router mode: each step passes on the Prometheus figures and the canary is promoted; the queries name the namespace, the version and the window', async () => {
    await eventually('ConfigMap at 0 %', async () => configWeights(await context.r.get('configmap', 'promo-config')) === 'v1=100,v2=0 default=v1');
    await context.r.mergePatch('rerankerconfig', 'promo', { spec: { rollout: withPrometheus('v2') } });
    await wasRendered('ConfigMap', 'promo-config', configWeights, 'v1=75,v2=25 default=v1');
    const done = await rolloutIs('promo', (s) => s.phase === 'Succeeded');
    assert.deepEqual(done.lastAnalysis, { errorRatio: { value: 0, threshold: 0.05, ok: true } });
    const asked = context.prometheus.received.filter((q) => /version="v2"/.test(q.query));
    assert.ok(asked.length >= 10, `${asked.length} queries for v2`);
    // Every request carried the Secret's token (its newline dropped) and the tenant header; none was refused.
    assert.ok(context.prometheus.headers.length > 0);
    for (const headers of context.prometheus.headers) assert.deepEqual([headers.authorization, headers['x-scope-orgid']], [`Bearer ${TOKEN}`, 'rag']);
    for (const { path, query } of asked) {
      assert.equal(path, '/api/v1/query');
      assert.doesNotMatch(query, /\{\{/);
      assert.match(query, new RegExp(`namespace="${context.r.namespace}",version="v2".*\\[\\d+s\\]`));
    }
  });

  test('gateway mode: a canary whose Prometheus figures fail the gate is rolled back at the end of its first step', async () => {
    const route = 'httproutes.gateway.networking.k8s.io';
    await eventually('HTTPRoute at 0 %', async () => routeWeights(await context.r.get(route, 'rb')) === 'rb-v1=100');
    await context.r.mergePatch('rerankerconfig', 'rb', { spec: { rollout: withPrometheus('bad') } });
    await wasRendered('HTTPRoute', 'rb', routeWeights, 'rb-bad=25,rb-v1=75');
    const rolledBack = await rolloutIs('rb', (s) => s.phase === 'RolledBack');
    assert.deepEqual([rolledBack.weight, rolledBack.lastAnalysis], [0, { errorRatio: { value: 0.4, threshold: 0.05, ok: false } }]);
    await eventually('HTTPRoute back at 0 %', async () => routeWeights(await context.r.get(route, 'rb')) === 'rb-v1=100');
    const warning = await eventually('the RolloutRolledBack Event', async () => (await events('rb')).find((e) => e.reason === 'RolloutRolledBack'));
    assert.match(warning.message, /errorRatio 0\.4 > 0\.05/);
  });
});
