import type { IncomingMessage } from 'node:http';
import type Koa from 'koa';
import type { Middleware } from 'koa';
import type { RerankConfig } from '../config/schema.ts';
import { ServingConfigSchema } from '../config/schema.ts';
import { RerankError } from '../errors.ts';
import { configStatus, healthz, metricsText } from '../http/apis/ops.ts';
import { requireApiKey } from '../http/auth.ts';
import { statusForError } from '../http/errors.ts';
import { abortOnClientGone, httpState } from '../http/middleware.ts';
import { REQUEST_TIMEOUT_HEADER, requestDeadline } from '../http/request-deadline.ts';
import { ROUTES, type OperationId } from '../http/routes.ts';
import { createShellApp, routerFromTable } from '../http/shell.ts';
import type { ShutdownState } from '../http/shutdown.ts';
import { headerVersion, MIRROR_HEADER, pathVersion, stickyKey, VERSION_HEADER } from '../http/version-request.ts';
import type { Logger } from '../logger.ts';
import type { RouterMetrics } from './metrics.ts';
import { Mirrorer } from './mirror.ts';
import { createAgents, endToEndHeaders, forward, readBody, UpstreamFailure, type Agents } from './proxy.ts';
import { routerReadiness, routerReadyz } from './readiness.ts';
import { routeRequest, upstreamUrl, type Route, type RoutingTable } from './routing-table.ts';
import type { UpstreamHealth } from './upstream-health.ts';

/** What the app routes by; RoutingFiles in production, a plain object in tests. */
export interface RoutingSource {
  readonly table: RoutingTable | undefined;
  readonly config: RerankConfig | undefined;
  isReady(): boolean;
  status(): unknown;
}

export interface RouterAppDeps {
  routing: RoutingSource;
  metrics: RouterMetrics;
  logger: Logger;
  /** The upstreams' health (kept in step with the routing table by the caller): routing avoids those out, requests report to it. */
  health: UpstreamHealth;
  /** Until an upstream's response headers arrive; read per request. */
  upstreamTimeoutMs: number | (() => number);
  /** Uniform in [0, 1) for the weighted draw; `Math.random` unless a test seeds it. */
  random?: () => number;
  /** Keep-alive agents to the upstreams; made here when absent (close them with `destroy()`). */
  agents?: Agents;
  /**
   * The API key guarding the router's own guarded routes (/config), read per request; undefined (or
   * absent) leaves them open. Rerank requests pass through with their Authorization: the pods check it.
   */
  apiKey?: () => string | undefined;
  /** Shared with listen(): while draining, /readyz is 503 and every answer closes its connection. */
  shutdown?: ShutdownState;
  /** router.yaml's mirroring; made here (over the same agents and health) when absent. */
  mirrorer?: Mirrorer;
}

const DEFAULT_MAX_BODY_BYTES = ServingConfigSchema.parse({}).maxBodyBytes;

/**
 * The router's HTTP app, not listening: the server's HTTP shell around the server's own rerank routes,
 * proxied (so clients need not know a router is in front), and the operations routes it shares.
 */
export function createRouterApp(deps: RouterAppDeps): Koa {
  const agents = deps.agents ?? createAgents();
  const mirrorer = deps.mirrorer ?? routerMirrorer(deps, agents);
  const handlers: Partial<Record<OperationId, Middleware>> = {
    healthz: healthz(),
    readyz: routerReadyz(() => routerReadiness(deps.routing.isReady(), deps.routing.table, deps.health)),
    config: configStatus(() => deps.routing.status()),
    metrics: metricsText(deps.metrics),
  };
  for (const route of ROUTES) if (route.rerank) handlers[route.operationId] = proxyHandler(deps, agents, mirrorer, route.modelVersion);
  const guard = deps.apiKey ? requireApiKey(deps.apiKey) : undefined;
  return createShellApp({
    logger: deps.logger,
    metrics: deps.metrics,
    router: routerFromTable({ handlers, countRerank: countRouted(deps.metrics), extra: (route) => (route.guarded && !route.rerank && guard ? [guard] : []) }),
    endpoints: () => deps.routing.table?.endpoints,
    ...(deps.shutdown ? { shutdown: deps.shutdown } : {}),
  });
}

/** The mirrorer over the router's agents and upstream health, its copies timed like the requests. */
export function routerMirrorer(deps: Pick<RouterAppDeps, 'metrics' | 'logger' | 'health' | 'upstreamTimeoutMs'>, agents: Agents): Mirrorer {
  const { upstreamTimeoutMs } = deps;
  return new Mirrorer({
    metrics: deps.metrics,
    logger: deps.logger,
    agents,
    available: (upstream) => deps.health.isAvailable(upstream),
    timeoutMs: typeof upstreamTimeoutMs === 'function' ? upstreamTimeoutMs : () => upstreamTimeoutMs,
  });
}

function proxyHandler(deps: RouterAppDeps, agents: Agents, mirrorer: Mirrorer, modelField: boolean): Middleware {
  const random = deps.random ?? Math.random;
  return async (ctx) => {
    const table = deps.routing.table;
    if (!table) throw new RerankError('unavailable', 'the router has no routing table yet (config.yaml or router.yaml not loaded)', { retryAfterSeconds: 1 });
    const body = await readBody(ctx.req, deps.routing.config?.serving.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
    // Checked as the pods check it (a bad value is a 400 naming the header), counted from the request's arrival here.
    const deadline = requestDeadline(ctx, httpState(ctx).startedAt);
    const named = pathVersion(ctx);
    const route = routeRequest(table, {
      pathVersion: named,
      // A path version decides alone; the body is parsed for `model` only when neither path nor header did.
      headerVersion: named
        ? undefined
        : headerVersion(ctx, {
            headerName: table.headerName,
            model: modelField ? () => modelOf(body) : undefined,
            isVersion: (name) => table.versions.some((v) => v.name === name),
          }),
      stickyKey: stickyKey(ctx),
      random,
      available: (upstream) => deps.health.isAvailable(upstream),
    });
    const { version } = route.choice;
    const state = httpState(ctx);
    state.version = version;
    if (route.upstream === undefined) {
      throw new RerankError('unavailable', `version ${version} has no upstream in router.yaml`, { retryAfterSeconds: 1 });
    }
    if (route.unavailable) throw unavailable(route, route.upstream, deps.health);
    // A named version that fell back is asked for by the name of the one that answers.
    const path = named === undefined ? ctx.path : `/rerank/${encodeURIComponent(version)}`;
    const pathAndQuery = ctx.querystring ? `${path}?${ctx.querystring}` : path;
    const url = upstreamUrl(route.upstream, pathAndQuery);
    // A client's own X-Rerank-Mirror is not passed on: only the router's copies are counted apart by the pods.
    const headers = endToEndHeaders(ctx.req.headers, [
      'host',
      'content-length',
      'expect',
      'x-request-id',
      VERSION_HEADER.toLowerCase(),
      MIRROR_HEADER.toLowerCase(),
      REQUEST_TIMEOUT_HEADER.toLowerCase(),
    ]);
    if (deadline !== undefined) headers[REQUEST_TIMEOUT_HEADER.toLowerCase()] = String(timeLeftMs(deadline, version));
    headers['content-length'] = String(body.length);
    headers['x-request-id'] = state.requestId;
    headers[VERSION_HEADER.toLowerCase()] = version;
    headers['x-forwarded-for'] = [ctx.get('x-forwarded-for'), ctx.req.socket.remoteAddress].filter(Boolean).join(', ');
    headers['x-forwarded-proto'] ??= ctx.protocol;
    if (ctx.get('host')) headers['x-forwarded-host'] ??= ctx.get('host');

    let res: IncomingMessage;
    try {
      res = await forward({
        url,
        method: ctx.method,
        headers,
        body,
        timeoutMs: typeof deps.upstreamTimeoutMs === 'function' ? deps.upstreamTimeoutMs() : deps.upstreamTimeoutMs,
        signal: abortOnClientGone(ctx),
        version,
        agents,
      });
    } catch (error) {
      if (error instanceof UpstreamFailure) {
        deps.health.requestFailed(route.upstream, error.detail);
        deps.metrics.upstreamErrors.inc({ version, kind: error.kind });
        state.log.warn({ version, upstream: route.upstream, kind: error.kind, err: error.cause }, error.message);
      }
      throw error;
    }
    res.on('error', (error) => state.log.warn({ version, upstream: route.upstream, err: error }, 'upstream response broke off'));
    ctx.status = res.statusCode ?? 502;
    // A 504 to a request with a deadline is the pod keeping the client's deadline (X-Request-Timeout-Ms):
    // it answered, so it says nothing against the upstream and does not count towards its ejection (the
    // router's requests counter still shows it, under status 504).
    if (ctx.status >= 500 && !(ctx.status === 504 && deadline !== undefined)) deps.health.requestFailed(route.upstream, `answered ${ctx.status}`);
    else if (ctx.status < 500) deps.health.requestSucceeded(route.upstream);
    // The router's X-Request-Id stays; everything else end-to-end is the pod's, X-Rerank-Version included.
    for (const [name, value] of Object.entries(endToEndHeaders(res.headers, ['x-request-id']))) {
      if (value !== undefined) ctx.set(name, typeof value === 'number' ? String(value) : value);
    }
    if (EMPTY_STATUSES.has(ctx.status)) {
      res.resume();
      ctx.body = null;
    } else {
      // A request to be mirrored streams through a recorder; the copy goes to the other version after this answer.
      ctx.body = mirrorer.tap({ table, route, pathAndQuery, headers, body, method: ctx.method }, ctx.status, res, random) ?? res;
    }
  };
}

const EMPTY_STATUSES = new Set([204, 205, 304]);

/**
 * What is left of the client's deadline as the request leaves for the pod, whole milliseconds rounded
 * down (the pod counts from its own arrival, so the router's time here is not given twice); a deadline
 * already passed is answered 504 here, without sending the request.
 */
function timeLeftMs(deadline: number, version: string): number {
  const left = Math.floor(deadline - performance.now());
  if (left < 1) throw new RerankError('deadline', `deadline exceeded: the ${REQUEST_TIMEOUT_HEADER} deadline passed in the router before the request was sent to version ${version}`);
  return left;
}

/** 503 at once, naming the upstream and why it is out, instead of a request that would wait for a timeout. */
function unavailable(route: Route, upstream: string, health: UpstreamHealth): RerankError {
  const { version, reason } = route.choice;
  const why = health.unavailableReason(upstream) ?? { reason: 'out of rotation', retryAfterMs: 1000 };
  const pinned = reason === 'path' || reason === 'header' || route.choice.fallbackFrom !== undefined;
  const prefix = pinned ? '' : 'no weighted version has an upstream taking requests; ';
  return new RerankError('unavailable', `${prefix}version ${version}: upstream ${upstream} is ${why.reason}; the request was not sent`, {
    retryAfterSeconds: Math.max(1, Math.ceil(why.retryAfterMs / 1000)),
  });
}

/** A Cohere/Jina body's `model`, which names the version when it is one config.yaml knows. A body that is not JSON is the pod's to refuse. */
function modelOf(body: Buffer): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const model = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>).model : undefined;
  return typeof model === 'string' ? model : undefined;
}

/** reranker_router_requests_total{version,status}, refusals before a version was chosen under `none`. */
function countRouted(metrics: RouterMetrics): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      metrics.requests.inc({ version: httpState(ctx).version ?? 'none', status: String(ctx.status) });
    } catch (error) {
      metrics.requests.inc({ version: httpState(ctx).version ?? 'none', status: String(statusForError(error)) });
      throw error;
    }
  };
}
