import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_PROMETHEUS_QUERIES, PROMETHEUS_FIGURES, PrometheusAnalysisSchema, type PrometheusFigure } from '../../operator/crd/prometheus-spec.ts';
import { RolloutSpecSchema, type RolloutStatus } from '../../operator/crd/rollout-spec.ts';
import type { RerankerConfigSpec } from '../../operator/crd/spec.ts';
import type { PodScrape } from '../../operator/rollout/figures.ts';
import { HttpPrometheusClient, type PrometheusClient, type PrometheusTarget } from '../../operator/rollout/prometheus.ts';
import { fillTemplate, prometheusStepFigures, prometheusWindow, promDuration } from '../../operator/rollout/prometheus-figures.ts';
import { parsePromQL, registeredNames } from '../packaging/promql.ts';
import { FakePrometheus, vector, type FakeAnswer } from './support/fake-prometheus.ts';

const AT = new Date('2026-01-01T00:02:00Z');
const FROM = new Date('2026-01-01T00:00:30Z');
const WINDOW = { namespace: 'rag', name: 'rerankers', canary: 'v2-gemma', stable: 'v2-m3', from: FROM, at: AT };
const FILLED = (version: string) => ({ version, namespace: 'rag', name: 'rerankers', window: '90s' });
/** A Prometheus at `url` asked without credentials, waiting `timeoutMs` for each answer. */
const plain = (url: string, timeoutMs = 5000): PrometheusTarget => ({ url, timeoutMs, headers: {} });

/** Which default figure of which version a query is, when it is exactly that template filled in for the window; else undefined. */
function defaultFigureOf(query: string): { figure: PrometheusFigure; version: string } | undefined {
  for (const version of ['v2-gemma', 'v2-m3']) {
    for (const figure of PROMETHEUS_FIGURES) if (fillTemplate(DEFAULT_PROMETHEUS_QUERIES[figure], FILLED(version)) === query) return { figure, version };
  }
  return undefined;
}

describe('the Prometheus client', () => {
  let prometheus: FakePrometheus;
  before(async () => (prometheus = await FakePrometheus.start()));
  const client = new HttpPrometheusClient();
  after(() => Promise.all([prometheus.close(), client.close()]));
  const answering = (answer: FakeAnswer) => (prometheus.answer = () => answer);

  test('asks GET {url}/api/v1/query with the query and the evaluation time, and reads one series, a scalar, or no series', async () => {
    answering(vector('41.5'));
    assert.equal(await client.query(plain(`${prometheus.url}/prom/`), 'sum(up)', AT), 41.5);
    assert.deepEqual(prometheus.received.at(-1), { path: '/prom/api/v1/query', query: 'sum(up)', time: String(AT.getTime() / 1000) + '.000' });
    answering({ body: { status: 'success', data: { resultType: 'scalar', result: [1, '7'] } } });
    assert.equal(await client.query(plain(prometheus.url), 'scalar(sum(up))', AT), 7);
    answering(vector());
    assert.equal(await client.query(plain(prometheus.url), 'sum(up)', AT), undefined);
    answering(vector('NaN'));
    assert.ok(Number.isNaN(await client.query(plain(prometheus.url), 'x', AT)));
  });

  test('a refused query, an answer that is not Prometheus\', several series or a range vector are errors saying so', async () => {
    answering({ status: 400, body: { status: 'error', errorType: 'bad_data', error: '1:5: parse error: unexpected <by>' } });
    await assert.rejects(client.query(plain(prometheus.url), 'sum by', AT), /HTTP 400 bad_data: 1:5: parse error: unexpected <by>/);
    answering({ status: 503, raw: 'Service Unavailable' });
    await assert.rejects(client.query(plain(prometheus.url), 'up', AT), /HTTP 503, not a JSON answer: Service Unavailable/);
    answering(vector(1, 2));
    await assert.rejects(client.query(plain(prometheus.url), 'up', AT), /the query gives 2 series \(\{\}, \{"pod":"p1"\}\); it must give one/);
    answering({ body: { status: 'success', data: { resultType: 'matrix', result: [] } } });
    await assert.rejects(client.query(plain(prometheus.url), 'up[1m]', AT), /gives a matrix result; it must give an instant vector or a scalar/);
    answering({ body: null });
    await assert.rejects(client.query(plain(prometheus.url), 'up', AT), /HTTP 200: no error given/);
    answering({ body: { status: 'success', data: { resultType: 'scalar', result: null } } });
    await assert.rejects(client.query(plain(prometheus.url), 'up', AT), /not a number: undefined/);
    answering(vector('many'));
    await assert.rejects(client.query(plain(prometheus.url), 'up', AT), /not a number: "many"/);
  });

  test('a Prometheus that does not answer in time, or is not there, is an error naming it', async () => {
    answering('hang');
    await assert.rejects(client.query(plain(prometheus.url, 300), 'up', AT), new RegExp(`Prometheus ${prometheus.url}: no answer within 300 ms`));
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await assert.rejects(client.query(plain(url), 'up', AT), new RegExp(`Prometheus ${url}: fetch failed: connect ECONNREFUSED`));
  });
});

describe("a step's figures from Prometheus", () => {
  let prometheus: FakePrometheus;
  before(async () => (prometheus = await FakePrometheus.start()));
  const client = new HttpPrometheusClient();
  after(() => Promise.all([prometheus.close(), client.close()]));

  test('each default query is filled in for canary and stable and the window, and its answer is that figure', async () => {
    prometheus.received.length = 0;
    const answers: Record<string, Record<PrometheusFigure, FakeAnswer>> = {
      'v2-gemma': {
        requests: vector('120.4'),
        errors: vector('3'),
        mirrored: vector('40'),
        mirroredErrors: vector('2'),
        p99Ms: vector('250.04'),
        fallbacks: vector(),
        loadFailures: vector('0'),
      },
      'v2-m3': { requests: vector('1000'), errors: vector(), mirrored: vector(), mirroredErrors: vector(), p99Ms: vector('NaN'), fallbacks: vector('1'), loadFailures: vector() },
    };
    prometheus.answer = (query) => {
      const known = defaultFigureOf(query);
      return known ? answers[known.version]![known.figure] : { status: 400, body: { status: 'error', errorType: 'bad_data', error: `unexpected query ${query}` } };
    };
    const figures = await prometheusStepFigures(client, { url: prometheus.url }, plain(prometheus.url), WINDOW);
    assert.deepEqual(figures, {
      canary: { requests: 120.4, errors: 3, mirrored: 40, mirroredErrors: 2, p99Ms: 250, fallbacks: 0, loadFailures: 0 },
      stable: { requests: 1000, errors: 0, mirrored: 0, mirroredErrors: 0, fallbacks: 1, loadFailures: 0 },
    });
    assert.equal(prometheus.received.length, 2 * PROMETHEUS_FIGURES.length);
    for (const { query, time } of prometheus.received) {
      assert.doesNotMatch(query, /\{\{|\}\}/);
      assert.match(query, /namespace="rag",version="v2-(gemma|m3)"/);
      assert.match(query, /\[90s\]/);
      assert.equal(time, '1767225720.000');
    }
  });

  test("a figure's own template is used, with {{name}} filled in too; the others keep their defaults", async () => {
    prometheus.received.length = 0;
    prometheus.answer = () => vector('5');
    const requests = 'sum(increase(my_requests_total{ns="{{namespace}}",rrc="{{name}}",v="{{version}}"}[{{window}}]))';
    await prometheusStepFigures(client, { url: prometheus.url, queries: { requests } }, plain(prometheus.url), WINDOW);
    const queries = prometheus.received.map((r) => r.query);
    assert.ok(queries.includes('sum(increase(my_requests_total{ns="rag",rrc="rerankers",v="v2-gemma"}[90s]))'));
    assert.ok(queries.includes('sum(increase(my_requests_total{ns="rag",rrc="rerankers",v="v2-m3"}[90s]))'));
    assert.equal(queries.filter((q) => defaultFigureOf(q)?.figure === 'requests').length, 0);
    assert.equal(queries.filter((q) => defaultFigureOf(q) !== undefined).length, 2 * (PROMETHEUS_FIGURES.length - 1));
  });

  test('a query that fails makes the figures fail, naming the figure, the version and the query', async () => {
    prometheus.answer = (query) =>
      defaultFigureOf(query)?.figure === 'errors' && defaultFigureOf(query)?.version === 'v2-m3'
        ? { status: 422, body: { status: 'error', errorType: 'execution', error: 'query timed out in expression evaluation' } }
        : vector('1');
    await assert.rejects(
      prometheusStepFigures(client, { url: prometheus.url }, plain(prometheus.url), WINDOW),
      /query errors of v2-m3 \(sum\(increase\(reranker_requests_total\{namespace="rag",version="v2-m3",rerank_dev_owner=~"rerankers\|",status=~"5\.\."\}\[90s\]\)\)\): Prometheus http:\/\/127\.0\.0\.1:\d+: HTTP 422 execution: query timed out/,
    );
    prometheus.answer = () => vector('-Inf');
    await assert.rejects(prometheusStepFigures(client, { url: prometheus.url }, plain(prometheus.url), WINDOW), /gives -Infinity, not a (count|latency)/);
  });

  test('the window is whole seconds, at least one', () => {
    assert.equal(promDuration(90_000), '90s');
    assert.equal(promDuration(120_499), '120s');
    assert.equal(promDuration(200), '1s');
  });
});

describe("a step's window with Prometheus", () => {
  /** Answers every query with `value`, recording the query; no HTTP. */
  const stub = (value: number | undefined) => {
    const asked: string[] = [];
    const client: PrometheusClient = { query: async (_url, query) => (asked.push(query), value) };
    return { client, asked };
  };
  const rollout = RolloutSpecSchema.parse({ canary: 'v2-gemma', steps: [10, 50], stepInterval: '1m', analysis: { minTopKOverlap: 0.8, prometheus: { url: 'http://prom:9090' } } });
  const spec = { defaultVersion: 'v2-m3', routing: { mode: 'router' }, versions: [], rollout } as unknown as RerankerConfigSpec & { rollout: typeof rollout };
  const step = { phase: 'Progressing', step: 0, stepStartedAt: '2026-01-01T00:00:00.000Z' } as RolloutStatus;
  const input = { spec, prometheus: rollout.analysis.prometheus!, namespace: 'rag', name: 'rerankers', step, target: async () => plain('http://prom:9090', 5000) };
  const router = (comparisons: number, overlapSum: number): PodScrape => ({
    pod: 'rerankers-router-0',
    version: '',
    samples: [
      { name: 'reranker_router_agreement_comparisons_total', labels: { from: 'v2-m3', to: 'v2-gemma' }, value: comparisons },
      { name: 'reranker_router_agreement_topk_overlap_count', labels: { from: 'v2-m3', to: 'v2-gemma' }, value: comparisons },
      { name: 'reranker_router_agreement_topk_overlap_sum', labels: { from: 'v2-m3', to: 'v2-gemma' }, value: overlapSum },
    ],
  });

  test('before the window has run its interval nothing is asked; then the window is the whole step, restarts of the operator or not', async () => {
    const early = stub(3);
    const noAgreement = { ...input, spec: { ...spec, routing: { mode: 'gateway' } } as typeof spec };
    assert.deepEqual(await prometheusWindow(early.client, { ...noAgreement, now: new Date('2026-01-01T00:00:59Z') }), { startedAt: new Date(step.stepStartedAt) });
    assert.equal(early.asked.length, 0);
    const judged = await prometheusWindow(early.client, { ...noAgreement, now: new Date('2026-01-01T00:01:30Z') });
    assert.equal(judged.figures?.canary.requests, 3);
    assert.ok(early.asked.every((q) => q.includes('[90s]')));
  });

  test('with a ranking gate the agreement comes from the routers since the baseline, and the window starts there; without a baseline it waits', async () => {
    const { client, asked } = stub(7);
    const now = new Date('2026-01-01T00:02:00Z');
    const none = await prometheusWindow(client, { ...input, agreement: { baseline: undefined, scrapes: [router(10, 9)] }, now });
    assert.deepEqual(none, { startedAt: now, unavailable: 'no baseline of the router pods for this step yet' });
    const baseline = { at: new Date('2026-01-01T00:00:45Z'), scrapes: [router(10, 9)] };
    const window = await prometheusWindow(client, { ...input, agreement: { baseline, scrapes: [router(30, 25)] }, now });
    assert.equal(window.startedAt.getTime(), baseline.at.getTime());
    assert.deepEqual(window.figures?.agreement, { comparisons: 20, topKOverlap: 0.8 });
    assert.ok(asked.length === 2 * PROMETHEUS_FIGURES.length && asked.every((q) => q.includes('[75s]')));
  });

  test('a failing query leaves the window without figures, saying why', async () => {
    const client: PrometheusClient = { query: async () => Promise.reject(new Error('Prometheus http://prom:9090: no answer within 5000 ms')) };
    const window = await prometheusWindow(client, { ...input, agreement: { baseline: { at: new Date(0), scrapes: [] }, scrapes: [] }, now: new Date('2026-01-01T00:01:00Z') });
    assert.equal(window.figures, undefined);
    assert.match(window.unavailable ?? '', /^query \w+ of v2-(gemma|m3) \(.*\): Prometheus http:\/\/prom:9090: no answer within 5000 ms$/);
  });
});

describe('the default queries', () => {
  test('filled in, each is PromQL and reads only metrics the server exports', async () => {
    const known = await registeredNames();
    for (const figure of PROMETHEUS_FIGURES) {
      const query = fillTemplate(DEFAULT_PROMETHEUS_QUERIES[figure], FILLED('v2-gemma'));
      const parsed = parsePromQL(query);
      assert.deepEqual(parsed.errors, [], `${figure}: ${query} does not parse`);
      assert.ok(parsed.metrics.length > 0, `${figure}: ${query} reads no metric`);
      for (const metric of parsed.metrics) assert.ok(known.has(metric), `${figure}: ${metric} is no metric the server exports`);
    }
  });

  test("each selects the RerankerConfig's series where the scrape labels them with it (the chart's PodMonitor), and any series of the namespace and version where it does not", () => {
    for (const figure of PROMETHEUS_FIGURES) {
      const query = fillTemplate(DEFAULT_PROMETHEUS_QUERIES[figure], FILLED('v2-gemma'));
      // An =~ matcher that matches the empty string also matches series without the label (PromQL).
      assert.match(query, /\{namespace="rag",version="v2-gemma",rerank_dev_owner=~"rerankers\|"[,}]/, figure);
    }
  });

  test('an unfilled placeholder would not parse: the templates are PromQL only once filled', () => {
    assert.notDeepEqual(parsePromQL(DEFAULT_PROMETHEUS_QUERIES.requests).errors, []);
  });
});

describe('analysis.prometheus in the spec', () => {
  test('a URL alone takes every default; templates may use the four placeholders and PromQL braces', () => {
    assert.deepEqual(PrometheusAnalysisSchema.parse({ url: 'http://prometheus-operated.monitoring.svc:9090' }), { url: 'http://prometheus-operated.monitoring.svc:9090' });
    const queries = { requests: 'sum(increase(x_total{a="{{namespace}}",b="{{name}}",c="{{version}}"}[{{window}}]))', p99Ms: '{__name__="y"}' };
    assert.equal(PrometheusAnalysisSchema.safeParse({ url: 'https://prom.example/prefix', queries }).success, true);
  });

  for (const [what, value] of [
    ['an unknown placeholder', { url: 'http://prom:9090', queries: { errors: 'sum(x{pod="{{pod}}"})' } }],
    ['a placeholder with spaces', { url: 'http://prom:9090', queries: { errors: 'sum(x{v="{{ version }}"})' } }],
    ['an unknown figure', { url: 'http://prom:9090', queries: { p95Ms: 'x' } }],
    ['a URL that is not http(s)', { url: 'ftp://prom:9090' }],
    ['a URL with a query string', { url: 'http://prom:9090/?x=1' }],
  ] as const) {
    test(`refused: ${what}`, () => assert.equal(PrometheusAnalysisSchema.safeParse(value).success, false));
  }
});
