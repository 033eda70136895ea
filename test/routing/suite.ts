import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { stickyPoint } from '../../server/engine/version-choice.ts';
import { postMany, type VersionSpec } from '../router/harness.ts';

/**
 * Which version answers a request, as a client sees it over HTTP: one suite that every implementation
 * runs (the server choosing in-process, the router choosing an upstream), so the two cannot drift apart.
 * The answering version is read from the response's X-Rerank-Version.
 *
 * @example
 * runRoutingSuite({ name: 'the server, in-process', start: (setup) => startServerFor(setup) });
 */

export interface RoutingSetup {
  defaultVersion: string;
  versions: Record<string, VersionSpec>;
  /** Seed of the weighted draw, so a split is the same on every run. */
  seed: number;
}

export interface RoutingTarget {
  url: string;
  close(): Promise<void>;
}

export interface RoutingImplementation {
  name: string;
  /** Serve this config on loopback; resolves once it is ready for traffic. */
  start(setup: RoutingSetup): Promise<RoutingTarget>;
}

const TEI_BODY = { query: 'what is a reranker?', texts: ['a cross-encoder', 'a vector index'] };
const COHERE_BODY = { query: 'what is a reranker?', documents: ['a cross-encoder', 'a vector index'] };

/** A valid body for the API behind `path`. */
function bodyFor(path: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...(/^\/v[12]\//.test(path) ? COHERE_BODY : TEI_BODY), ...extra };
}

async function post(target: RoutingTarget, path: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${target.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(bodyFor(path, extra)) });
}

/** The version that answered: a 200 naming it in X-Rerank-Version. */
async function answeredBy(response: Response | Promise<Response>, what = ''): Promise<string | null> {
  const answer = await response;
  assert.equal(answer.status, 200, `${what}: ${await answer.clone().text()}`);
  await answer.arrayBuffer();
  return answer.headers.get('x-rerank-version');
}

/** The version that answered each of these sticky keys on /rerank, 50 requests at a time. */
export async function stickyAnswers(target: RoutingTarget, keys: readonly string[]): Promise<Array<string | null>> {
  const answers: Array<string | null> = [];
  for (let at = 0; at < keys.length; at += 50) {
    answers.push(...(await Promise.all(keys.slice(at, at + 50).map((key) => answeredBy(post(target, '/rerank', { 'X-Rerank-Sticky-Key': key }), key)))));
  }
  return answers;
}

/** The first `count` keys `user-N`, with the version the weight line in name order puts each on. */
function stickyKeys(count: number, line: ReadonlyArray<readonly [string, number]>): Array<[string, string]> {
  const total = line.reduce((sum, [, weight]) => sum + weight, 0);
  return Array.from({ length: count }, (_, n) => {
    const key = `user-${n}`;
    let point = stickyPoint(key) * total;
    const hit = line.find(([, weight]) => (point -= weight) < 0) ?? line.at(-1);
    return [key, hit?.[0] ?? ''];
  });
}

export function runRoutingSuite(implementation: RoutingImplementation): void {
  describe(`version routing: ${implementation.name}`, () => {
    let target: RoutingTarget;
    before(async () => {
      target = await implementation.start({
        defaultVersion: 'stable',
        // Not in name order, on purpose: the order of a file must not matter.
        versions: {
          stable: { weight: 80 },
          canary: { weight: 20 },
          old: { weight: 0 },
          off: { enabled: false, weight: 50 },
          custom: { endpoint: '/custom/rerank' },
        },
        seed: 7,
      });
    });
    after(() => target.close());

    test('a path version answers, and X-Rerank-Version names it', async () => {
      assert.equal(await answeredBy(post(target, '/rerank/canary')), 'canary');
      assert.equal(await answeredBy(post(target, '/rerank/old')), 'old', 'weight 0 still serves when named');
    });

    test('a disabled path version is answered by the default, and X-Rerank-Version names the default', async () => {
      assert.equal(await answeredBy(post(target, '/rerank/off')), 'stable');
    });

    test('a path version that is not configured is a 404 listing the configured versions', async () => {
      const answer = await post(target, '/rerank/nope', { 'X-Rerank-Version': 'canary' });
      assert.equal(answer.status, 404);
      const body = (await answer.json()) as { error: string; error_type: string };
      assert.deepEqual(body, { error: 'no version "nope": the configured versions are canary, custom, off (disabled), old, stable', error_type: 'not_found' });
    });

    test('X-Rerank-Version pins a version on every rerank API; an unknown or disabled one gets the default', async () => {
      for (const path of ['/rerank', '/v1/rerank', '/v2/rerank']) {
        assert.equal(await answeredBy(post(target, path, { 'X-Rerank-Version': 'old' }), path), 'old', path);
        for (const named of ['nope', 'off']) assert.equal(await answeredBy(post(target, path, { 'X-Rerank-Version': named }), path), 'stable', `${path} ${named}`);
      }
    });

    test('the path version beats the header', async () => {
      assert.equal(await answeredBy(post(target, '/rerank/canary', { 'X-Rerank-Version': 'old' })), 'canary');
    });

    test('a Cohere/Jina body\'s `model` naming a version picks it when no header does', async () => {
      for (const path of ['/v1/rerank', '/v2/rerank']) {
        assert.equal(await answeredBy(post(target, path, {}, { model: 'canary' })), 'canary', path);
        assert.equal(await answeredBy(post(target, path, { 'X-Rerank-Version': 'old' }, { model: 'canary' })), 'old', `${path}: the header wins`);
        assert.equal(await answeredBy(post(target, path, {}, { model: 'off' })), 'stable', `${path}: a disabled version named by model`);
      }
      const versions = new Set<string | null>();
      for (let i = 0; i < 40; i += 1) versions.add(await answeredBy(post(target, '/v1/rerank', {}, { model: 'rerank-english-v3.0' })));
      assert.deepEqual([...versions].sort(), ['canary', 'stable'], 'a model id that is no version is weighted as usual');
    });

    test('a version\'s own endpoint serves it as /rerank/{version} does, for POST only', async () => {
      assert.equal(await answeredBy(post(target, '/custom/rerank')), 'custom');
      assert.equal((await fetch(`${target.url}/custom/rerank`)).status, 404);
    });

    test('unpinned traffic splits by weight: 80/20 within 3 points over 1000 requests; weight 0 and disabled versions get none', async () => {
      const counts: Record<string, number> = {};
      for (const answer of await postMany(`${target.url}/rerank`, TEI_BODY, 1000)) {
        assert.equal(answer.status, 200, answer.body);
        counts[answer.version ?? '?'] = (counts[answer.version ?? '?'] ?? 0) + 1;
      }
      assert.deepEqual(Object.keys(counts).sort(), ['canary', 'stable']);
      const share = (counts.canary ?? 0) / 1000;
      assert.ok(Math.abs(share - 0.2) <= 0.03, `canary share ${share}`);
    });

    test('a sticky key stays on one version: the one its point falls on, the versions laid out by name', async () => {
      const keys = stickyKeys(100, [['canary', 20], ['stable', 80]]);
      const expected = keys.map(([, version]) => version);
      const names = keys.map(([key]) => key);
      assert.deepEqual(await stickyAnswers(target, names), expected);
      assert.deepEqual(await stickyAnswers(target, names), expected, 'asked again');
      assert.deepEqual(new Set(keys.map(([, version]) => version)), new Set(['canary', 'stable']), 'the keys tried reach both versions');
    });

    test('a sticky key never overrides a path or header version', async () => {
      const [key] = stickyKeys(20, [['canary', 20], ['stable', 80]]).find(([, version]) => version === 'stable') ?? [];
      assert.ok(key);
      assert.equal(await answeredBy(post(target, '/rerank/canary', { 'X-Rerank-Sticky-Key': key })), 'canary');
      assert.equal(await answeredBy(post(target, '/rerank', { 'X-Rerank-Sticky-Key': key, 'X-Rerank-Version': 'canary' })), 'canary');
    });

    test('X-Request-Id: a sane one comes back, else one is made', async () => {
      const given = await post(target, '/rerank', { 'X-Request-Id': 'trace-123' });
      assert.equal(given.headers.get('x-request-id'), 'trace-123');
      const made = await post(target, '/rerank', { 'X-Request-Id': 'no spaces allowed' });
      assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    });

    test('/healthz and /readyz answer; GET on a rerank path is 405 with Allow, an unknown path 404, both JSON errors', async () => {
      assert.deepEqual(await (await fetch(`${target.url}/healthz`)).json(), { status: 'ok' });
      const ready = await fetch(`${target.url}/readyz`);
      // The router adds its upstreams' health to the body.
      assert.deepEqual([ready.status, ((await ready.json()) as { status: string }).status], [200, 'ready']);
      const wrongMethod = await fetch(`${target.url}/rerank/canary`);
      assert.equal(wrongMethod.status, 405);
      assert.equal(wrongMethod.headers.get('allow'), 'POST');
      assert.equal(((await wrongMethod.json()) as { error_type: string }).error_type, 'method_not_allowed');
      const unknown = await fetch(`${target.url}/nothing`);
      assert.equal(unknown.status, 404);
      assert.equal(((await unknown.json()) as { error_type: string }).error_type, 'not_found');
    });

    test('http_request_duration_seconds is labelled by route pattern, method and status', async () => {
      await answeredBy(post(target, '/rerank/canary'));
      await fetch(`${target.url}/nothing`);
      const text = await (await fetch(`${target.url}/metrics`)).text();
      assert.match(text, /http_request_duration_seconds_count\{method="POST",route="\/rerank\/:version",status="200"\} \d+/);
      assert.match(text, /http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} \d+/);
    });
  });

  describe(`version routing: ${implementation.name}: the order of versions in the file`, () => {
    test('a sticky key lands on the same version whether the file lists {b: 50, a: 50} or {a: 50, b: 50}', async () => {
      const keys = stickyKeys(100, [['a', 50], ['b', 50]]);
      for (const versions of [{ b: { weight: 50 }, a: { weight: 50 } }, { a: { weight: 50 }, b: { weight: 50 } }]) {
        const target = await implementation.start({ defaultVersion: 'a', versions, seed: 1 });
        try {
          const answers = await stickyAnswers(target, keys.map(([key]) => key));
          assert.deepEqual(answers, keys.map(([, version]) => version), Object.keys(versions).join(', '));
        } finally {
          await target.close();
        }
      }
    });
  });
}
