import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HealthCheckSchema, OutlierDetectionSchema, RouterConfigSchema, upstreamHealthSettings } from '../../server/config/router-schema.ts';
import { buildRoutingTable, routeRequest } from '../../server/router/routing-table.ts';
import { UpstreamHealth, type HealthEvent } from '../../server/router/upstream-health.ts';
import { parseConfig } from '../../server/config/load.ts';
import { configYaml } from './harness.ts';

const A = 'http://a:8080';
const B = 'http://b:8080';
const C = 'http://c:8080';

/** UpstreamHealth on a clock the test steps, with these settings over the defaults. */
function tracker(options: { healthCheck?: Record<string, unknown>; outlierDetection?: Record<string, unknown>; upstreams?: string[] } = {}) {
  let now = 1_000;
  const events: HealthEvent[] = [];
  const settings = {
    healthCheck: HealthCheckSchema.parse(options.healthCheck ?? {}),
    outlierDetection: OutlierDetectionSchema.parse({ baseEjectionTimeMs: 1000, maxEjectionTimeMs: 3500, maxEjectionPercent: 50, ...options.outlierDetection }),
  };
  const health = new UpstreamHealth({ settings: () => settings, now: () => now, wallClock: () => 0, onEvent: (event) => events.push(event) });
  health.sync(options.upstreams ?? [A, B, C]);
  return {
    health,
    events,
    settings,
    step: (ms: number) => {
      now += ms;
    },
    fail: (upstream: string, times: number, reason = 'no answer within 300 ms') => {
      for (let i = 0; i < times; i += 1) health.requestFailed(upstream, reason);
    },
    pass: (...upstreams: string[]) => upstreams.forEach((upstream) => health.checkPassed(upstream)),
  };
}

describe('upstream health: outlier detection (passive)', () => {
  test('consecutive failures eject an upstream for the base time; a success in between starts the count over', () => {
    const t = tracker();
    t.fail(A, 4);
    t.health.requestSucceeded(A);
    t.fail(A, 4);
    assert.equal(t.health.isAvailable(A), true, '4 + 4 with a success between: not 5 in a row');
    t.fail(A, 1, 'answered 500');
    assert.equal(t.health.isAvailable(A), false);
    assert.deepEqual(t.events, [{ type: 'ejected', upstream: A, forMs: 1000, failures: 5, reason: 'answered 500' }]);
    assert.match(t.health.unavailableReason(A)?.reason ?? '', /^ejected for 1 s more after failures in a row \(last: answered 500\)$/);
    t.step(999);
    assert.equal(t.health.isAvailable(A), false);
    t.step(1);
    assert.equal(t.health.isAvailable(A), true, 'back after the base ejection time');
    assert.deepEqual(t.events.at(-1), { type: 'returned', upstream: A });
    t.fail(A, 4);
    assert.equal(t.health.isAvailable(A), true, 'the count started over on return');
  });

  test('repeated ejections last longer, up to the maximum; time back in rotation decays the multiplier', () => {
    const t = tracker();
    const ejectedFor = () => {
      t.fail(A, 5);
      const event = t.events.at(-1);
      assert.equal(event?.type, 'ejected');
      return event?.type === 'ejected' ? event.forMs : -1;
    };
    const spans: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      spans.push(ejectedFor());
      t.step(spans.at(-1) as number);
      assert.equal(t.health.isAvailable(A), true);
    }
    assert.deepEqual(spans, [1000, 2000, 3000, 3500], 'base × times ejected, capped at maxEjectionTimeMs');
    t.step(2500); // two base times in rotation: the multiplier drops from 4 to 2
    assert.equal(ejectedFor(), 3000);
  });

  test('at most maxEjectionPercent are ejected at once (at least one), never the last upstream taking requests', () => {
    const t = tracker({ outlierDetection: { maxEjectionPercent: 10 } });
    t.fail(A, 5);
    t.fail(B, 5);
    assert.deepEqual([t.health.isAvailable(A), t.health.isAvailable(B)], [false, true], '10% of 3 still allows one');
    t.step(1000);
    assert.equal(t.health.isAvailable(A), true);
    t.fail(B, 1);
    assert.equal(t.health.isAvailable(B), false, 'B, past the threshold, goes at its next failure once there is room');

    const two = tracker({ outlierDetection: { maxEjectionPercent: 100 }, upstreams: [A, B] });
    two.fail(A, 5);
    two.fail(B, 50);
    assert.deepEqual([two.health.isAvailable(A), two.health.isAvailable(B)], [false, true], 'the last one taking requests stays in');

    const failingChecks = tracker({ outlierDetection: { maxEjectionPercent: 100 }, upstreams: [A, B] });
    failingChecks.health.checkFailed(B, 'GET /readyz: connection refused (ECONNREFUSED)');
    failingChecks.fail(A, 5);
    assert.equal(failingChecks.health.isAvailable(A), true, 'B fails its checks, so A is the last one: not ejected');

    const off = tracker({ outlierDetection: { maxEjectionPercent: 0 } });
    off.fail(A, 50);
    assert.equal(off.health.isAvailable(A), true, 'maxEjectionPercent 0: no ejections');
  });
});

describe('upstream health: active checks', () => {
  test('the first check decides; then unhealthyThreshold failures in a row mark it out, healthyThreshold passes bring it back', () => {
    const t = tracker({ healthCheck: { unhealthyThreshold: 2, healthyThreshold: 2 } });
    assert.deepEqual(
      t.health.status().map((s) => [s.active, s.available, s.healthy]),
      [['pending', true, false], ['pending', true, false], ['pending', true, false]],
      'pending: routable, not yet counted healthy',
    );
    assert.equal(t.health.anyHealthy(), false);
    t.health.checkFailed(A, 'GET /readyz answered 503');
    assert.equal(t.health.isAvailable(A), false, 'a pending upstream failing its first check is out at once');
    t.pass(B);
    assert.equal(t.health.anyHealthy(), true);
    t.health.checkFailed(B, 'GET /readyz: no answer within 2000 ms');
    assert.equal(t.health.isAvailable(B), true, 'one failure of a healthy upstream is not enough');
    t.health.checkFailed(B, 'GET /readyz: no answer within 2000 ms');
    assert.equal(t.health.isAvailable(B), false);
    assert.match(t.health.unavailableReason(B)?.reason ?? '', /failing its health checks \(GET \/readyz: no answer within 2000 ms\)/);
    t.pass(B);
    assert.equal(t.health.isAvailable(B), false, 'one pass of two');
    t.pass(B);
    assert.equal(t.health.isAvailable(B), true);
    assert.deepEqual(
      t.events.map((e) => [e.type, e.upstream]),
      [['unhealthy', A], ['unhealthy', B], ['healthy', B]],
    );
  });

  test('an ejection runs its time even when the checks pass (a /readyz that answers says nothing of requests that time out)', () => {
    const t = tracker();
    t.pass(A, B, C);
    t.fail(A, 5);
    t.pass(A);
    assert.equal(t.health.isAvailable(A), false);
    assert.deepEqual(t.health.status().find((s) => s.upstream === A), {
      upstream: A,
      available: false,
      healthy: false,
      active: 'healthy',
      ejectedUntil: new Date(1000).toISOString(),
      ejectionReason: 'no answer within 300 ms',
      consecutiveFailures: 5,
      ejections: 1,
    });
  });

  test('checks off: every upstream counts as passing; sync forgets upstreams gone and starts new ones pending', () => {
    const t = tracker({ healthCheck: { enabled: false } });
    assert.equal(t.health.anyHealthy([A]), true);
    const on = tracker({ upstreams: [A, B] });
    on.health.checkFailed(A, 'refused');
    on.health.sync([A, C]);
    assert.deepEqual(on.health.status().map((s) => [s.upstream, s.active]), [[A, 'unhealthy'], [C, 'pending']]);
    assert.equal(on.health.isAvailable(B), true, 'an upstream it does not know is not held back');
  });
});

describe('routing over upstream health', () => {
  const config = parseConfig(configYaml({ stable: { weight: 80 }, canary: { weight: 20 }, dark: { weight: 0 } }, 'stable'), { source: 'mem', baseDir: '/' }).config;
  const table = buildRoutingTable(config, RouterConfigSchema.parse({ router: { headerName: 'X-Rerank-Version', upstreams: { stable: A, canary: B, dark: C } } }));
  const out = (...upstreams: string[]) => (upstream: string) => !upstreams.includes(upstream);

  test('unpinned traffic whose version is out is drawn again among the versions that are in', () => {
    const points = [0, 0.5, 0.9, 0.99];
    assert.deepEqual(points.map((p) => routeRequest(table, { random: () => p }).choice.version), ['canary', 'stable', 'stable', 'stable']);
    for (const point of points) {
      let draws = 0;
      const route = routeRequest(table, { random: () => (draws++ === 0 ? point : 0.5), available: out(A) });
      assert.deepEqual([route.choice.version, route.upstream, route.unavailable], ['canary', B, undefined], `point ${point}`);
    }
    const sticky = routeRequest(table, { random: () => 0, stickyKey: 'user-1', available: out(B) });
    assert.deepEqual([sticky.choice, sticky.upstream], [{ version: 'stable', reason: 'sticky' }, A]);
  });

  test('pinned traffic is never moved: out means 503; with every weighted upstream out, unpinned traffic is refused too', () => {
    const pinned = routeRequest(table, { random: () => 0.5, headerVersion: 'canary', available: out(B) });
    assert.deepEqual(pinned, { choice: { version: 'canary', reason: 'header' }, upstream: B, unavailable: true });
    const path = routeRequest(table, { random: () => 0.5, pathVersion: 'stable', available: out(A) });
    assert.equal(path.unavailable, true);
    const none = routeRequest(table, { random: () => 0.5, available: out(A, B) });
    assert.deepEqual([none.choice.version, none.unavailable], ['stable', true], 'weight 0 (dark) gets no unpinned traffic, healthy or not');
  });

  test('router.yaml without health sections gets the defaults; the sections are validated', () => {
    const defaults = upstreamHealthSettings(RouterConfigSchema.parse({ router: { headerName: 'X', upstreams: {} } }));
    assert.deepEqual(defaults.healthCheck, { enabled: true, path: '/readyz', intervalMs: 5000, timeoutMs: 2000, unhealthyThreshold: 2, healthyThreshold: 1 });
    assert.deepEqual(defaults.outlierDetection, { consecutiveFailures: 5, baseEjectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectionPercent: 10 });
    const bad = RouterConfigSchema.safeParse({ router: { headerName: 'X', upstreams: {}, healthCheck: { path: 'readyz?x=1', intervalMs: 0 }, outlierDetection: { nope: 1 } } });
    assert.equal(bad.success, false);
    assert.deepEqual(bad.error?.issues.map((issue) => issue.path.join('.')).sort(), ['router.healthCheck.intervalMs', 'router.healthCheck.path', 'router.outlierDetection']);
  });
});
