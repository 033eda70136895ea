import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { InfoResponseSchema } from '../../server/http/apis/schemas.ts';
import { createRouter } from '../../server/http/app.ts';
import { buildOpenApiDocument } from '../../server/http/openapi.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { silentLogger } from '../../server/logger.ts';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import { FakeReranker } from '../support/fake-reranker.ts';
import { json, startServer, type Harness } from './harness.ts';

const packageVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

describe('operational routes', () => {
  let h: Harness;
  before(async () => {
    h = await startServer({ info: { notices: ['synthetic model, scores are not meaningful'] } });
  });
  after(() => h.close());

  test('/healthz is always 200 {status: "ok"}, also while not ready', async () => {
    h.reranker.ready = false;
    const response = await h.get('/healthz');
    assert.equal(response.status, 200);
    assert.deepEqual(await json(response), { status: 'ok' });
    h.reranker.ready = true;
  });

  test('/readyz follows reranker.isReady()', async () => {
    h.reranker.ready = false;
    assert.equal((await h.get('/readyz')).status, 503);
    h.reranker.ready = true;
    const ready = await h.get('/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(await json(ready), { status: 'ready' });
  });

  test('/info: engine info, notices and the package version', async () => {
    const info = await json<{ version: string; defaultVersion: string; versions: Array<{ name: string }>; notices: string[]; limits: object }>(
      await h.get('/info'),
    );
    assert.equal(info.version, packageVersion);
    assert.equal(info.defaultVersion, 'v1');
    assert.deepEqual(
      info.versions.map((v) => v.name),
      ['v1', 'v2'],
    );
    assert.deepEqual(info.notices, ['synthetic model, scores are not meaningful']);
    assert.ok('maxDocuments' in info.limits);
    assert.deepEqual(InfoResponseSchema.parse(info).devices, [{ device: 'cpu', versions: ['v1', 'v2'] }], 'as the OpenAPI document describes it');
  });

  test('/metrics: Prometheus text with route patterns, statuses and per-version request counts', async () => {
    await h.post('/rerank/v2', { query: 'q', texts: ['a'] });
    await h.post('/rerank/v2', { query: '', texts: ['a'] });
    await h.get('/some/random/path/123');
    const response = await h.get('/metrics');
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    assert.match(text, /http_request_duration_seconds_bucket\{le="[^"]+",method="POST",route="\/rerank\/:version",status="200"\} 1/);
    assert.match(text, /http_request_duration_seconds_count\{method="POST",route="\/rerank\/:version",status="400"\} 1/);
    assert.match(text, /http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} 1/);
    assert.doesNotMatch(text, /some\/random/, 'raw paths never become labels');
    assert.match(text, /reranker_requests_total\{version="v2",status="200"\} 1/);
    assert.match(text, /reranker_requests_total\{version="none",status="400"\} 1/);
    assert.match(text, /reranker_request_duration_seconds_count\{version="v2"\} 1/);
    assert.doesNotMatch(text, /reranker_request_duration_seconds_count\{version="none"\}/, 'only requests a version answered');
  });

  test('X-Request-Id: a sane incoming id is echoed, otherwise one is generated', async () => {
    const given = await h.get('/healthz', { 'X-Request-Id': 'trace-abc.123' });
    assert.equal(given.headers.get('x-request-id'), 'trace-abc.123');
    const generated = await h.get('/healthz');
    assert.match(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    const unsafe = await h.get('/healthz', { 'X-Request-Id': 'x'.repeat(500) });
    assert.match(unsafe.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  });

  test('one access log line per request: id, method, route, status, duration', async () => {
    h.logs.length = 0;
    await h.post('/v1/rerank', { query: 'q', documents: ['a'] }, { 'X-Request-Id': 'log-me' });
    const lines = h.logs.filter((line) => line.msg === 'request');
    assert.equal(lines.length, 1);
    const line = lines[0] ?? {};
    assert.equal(line.reqId, 'log-me');
    assert.equal(line.method, 'POST');
    assert.equal(line.route, '/v1/rerank');
    assert.equal(line.status, 200);
    assert.equal(line.version, 'v1');
    assert.equal(typeof line.durationMs, 'number');
  });

  test('/openapi.json serves the document built from the route table', async () => {
    const response = await h.get('/openapi.json');
    assert.equal(response.status, 200);
    assert.deepEqual(await json(response), JSON.parse(JSON.stringify(buildOpenApiDocument())));
  });
});

describe('OpenAPI document', () => {
  const document = buildOpenApiDocument() as {
    openapi: string;
    info: { title: string; version: string };
    paths: Record<string, Record<string, Operation>>;
    components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
  };
  type Operation = {
    operationId: string;
    parameters?: Array<{ name: string; in: string; required?: boolean }>;
    requestBody?: { content: Record<string, { schema: unknown }> };
    responses: Record<string, { description: string; content?: Record<string, { schema: unknown }> }>;
    security?: Array<Record<string, string[]>>;
  };

  test('lists exactly the routes the router registers, with the same methods', () => {
    const router = createRouter({
      reranker: new FakeReranker(),
      metrics: new ServerMetrics({ defaultMetrics: false }),
      logger: silentLogger(),
      serving: () => ServingConfigSchema.parse({}),
      apiKey: () => undefined,
    });
    const registered = router.stack
      .flatMap((layer) => layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m} ${String(layer.path).replace(/:(\w+)/g, '{$1}')}`))
      .sort();
    const documented = Object.entries(document.paths)
      .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`))
      .sort();
    assert.deepEqual(documented, registered);
    assert.ok(registered.includes('POST /rerank/{version}'));
  });

  test('is OpenAPI 3.1 in shape: info, unique operation ids, declared path parameters, a 2xx per operation, resolvable $refs', () => {
    assert.match(document.openapi, /^3\.1\.\d+$/);
    assert.equal(typeof document.info.title, 'string');
    assert.equal(document.info.version, packageVersion);
    const ids = new Set<string>();
    for (const [path, operations] of Object.entries(document.paths)) {
      assert.ok(path.startsWith('/'), path);
      for (const [method, operation] of Object.entries(operations)) {
        assert.ok(['get', 'post', 'put', 'delete', 'patch', 'head', 'options'].includes(method), method);
        assert.ok(!ids.has(operation.operationId), `duplicate operationId ${operation.operationId}`);
        ids.add(operation.operationId);
        const templated = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
        const declared = (operation.parameters ?? []).filter((p) => p.in === 'path');
        assert.deepEqual(
          declared.map((p) => p.name),
          templated,
          `${method} ${path}: path parameters`,
        );
        for (const parameter of declared) assert.equal(parameter.required, true);
        for (const parameter of operation.parameters ?? []) assert.ok(['path', 'query', 'header', 'cookie'].includes(parameter.in));
        const statuses = Object.keys(operation.responses);
        assert.ok(statuses.some((s) => /^2\d\d$/.test(s)), `${method} ${path}: no 2xx response`);
        for (const [status, response] of Object.entries(operation.responses)) {
          assert.match(status, /^[1-5]\d\d$/);
          assert.equal(typeof response.description, 'string');
        }
        if (method === 'post') assert.ok(operation.requestBody?.content['application/json'], `${path}: request body`);
        for (const requirement of operation.security ?? []) {
          for (const scheme of Object.keys(requirement)) assert.ok(scheme in document.components.securitySchemes);
        }
      }
    }
    const text = JSON.stringify(document);
    for (const match of text.matchAll(/"\$ref":"([^"]+)"/g)) {
      const ref = match[1] ?? '';
      assert.match(ref, /^#\/components\/schemas\//);
      assert.ok(ref.slice('#/components/schemas/'.length) in document.components.schemas, `unresolved ${ref}`);
    }
    assert.doesNotMatch(text, /"\$schema"/);
  });

  test('request and response schemas come from the zod schemas', () => {
    const schemas = document.components.schemas as Record<string, { properties?: Record<string, unknown>; required?: string[]; type?: string }>;
    assert.deepEqual(schemas.TeiRerankRequest?.required?.sort(), ['query', 'texts']);
    assert.ok(schemas.TeiRerankRequest?.properties && 'truncation_direction' in schemas.TeiRerankRequest.properties);
    assert.equal(schemas.TeiRerankResponse?.type, 'array');
    assert.deepEqual(schemas.CohereRerankRequest?.required?.sort(), ['documents', 'query']);
    assert.ok(schemas.CohereRerankResponse?.properties && 'results' in schemas.CohereRerankResponse.properties);
    assert.deepEqual(schemas.Error?.required?.sort(), ['error', 'error_type']);
  });
});
