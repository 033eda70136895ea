import type { IncomingMessage } from 'node:http';
import Router, { type RouterMiddleware } from '@koa/router';
import Koa, { type Context, type Middleware } from 'koa';
import type { RerankConfig } from '../config/schema.ts';
import { ServingConfigSchema } from '../config/schema.ts';
import { RerankError } from '../errors.ts';
import { MethodNotAllowedError, statusForError } from '../http/errors.ts';
import { accessLog, errorHandler, httpMetrics, httpState, requestId } from '../http/middleware.ts';
import type { Logger } from '../logger.ts';
import type { RouterMetrics } from './metrics.ts';
import { STATUS_BY_UPSTREAM_FAILURE, UpstreamFailure, createAgents, endToEndHeaders, forward, readBody, type Agents } from './proxy.ts';
import { routeRequest, upstreamUrl, type RoutingTable } from './routing-table.ts';

/** Header the pods read the version from; the router sets it on every upstream request to the version it chose. */
export const VERSION_HEADER = 'X-Rerank-Version';
/** A user or session id: keeps its requests on one version while the weights stay the same. */
export const STICKY_KEY_HEADER = 'X-Rerank-Sticky-Key';

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
  /** Until an upstream's response headers arrive; read per request. */
  upstreamTimeoutMs: number | (() => number);
  /** Uniform in [0, 1) for the weighted draw; `Math.random` unless a test seeds it. */
  random?: () => number;
  /** Keep-alive agents to the upstreams; made here when absent (close them with `destroy()`). */
  agents?: Agents;
}

const DEFAULT_MAX_BODY_BYTES = ServingConfigSchema.parse({}).maxBodyBytes;

/** The rerank routes the router proxies: the server's own, so clients need not know a router is in front. */
const RERANK_ROUTES = [
  { name: 'rerank', path: '/rerank', modelField: false },
  { name: 'rerankVersion', path: '/rerank/:version', modelField: false },
  { name: 'rerankV1', path: '/v1/rerank', modelField: true },
  { name: 'rerankV2', path: '/v2/rerank', modelField: true },
] as const;

/**
 * The router's HTTP app, not listening. The server's request id, access log, metrics and error
 * middleware, then the proxied rerank routes and the operations routes.
 */
export function createRouterApp(deps: RouterAppDeps): Koa {
  const app = new Koa();
  app.use(requestId(deps.logger));
  app.use(accessLog());
  app.use(httpMetrics(deps.metrics.forHttpMiddleware()));
  app.use(errorHandler());
  app.use(upstreamErrors());
  app.use(versionEndpoints(deps.routing));
  app.use(createRoutes(deps).routes());
  app.use(unrouted());
  // Errors past the error middleware (an upstream or a client socket failing mid-response): log, never crash.
  app.on('error', (error: unknown) => {
    deps.logger.warn({ err: error }, 'response failed');
  });
  return app;
}

function createRoutes(deps: RouterAppDeps): Router {
  const agents = deps.agents ?? createAgents();
  const router = new Router();
  const count = countRouted(deps.metrics);
  const withDetail: Middleware = (ctx, next) => {
    httpState(ctx).errorDetail = true;
    return next();
  };
  for (const route of RERANK_ROUTES) {
    const chain: Middleware[] = [count];
    if (route.modelField) chain.push(withDetail);
    chain.push(proxyHandler(deps, agents, route.modelField));
    router.register(route.path, ['POST'], chain as RouterMiddleware[], { name: route.name });
  }
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', (ctx) => {
    const ready = deps.routing.isReady();
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready' };
  });
  router.get('/config', (ctx) => {
    ctx.body = deps.routing.status();
  });
  router.get('/metrics', async (ctx) => {
    const text = await deps.metrics.registry.metrics();
    ctx.type = deps.metrics.registry.contentType;
    ctx.body = text;
  });
  return router;
}

function proxyHandler(deps: RouterAppDeps, agents: Agents, modelField: boolean): Middleware {
  const random = deps.random ?? Math.random;
  return async (ctx) => {
    const table = deps.routing.table;
    if (!table) throw new RerankError('unavailable', 'the router has no routing table yet (config.yaml or router.yaml not loaded)', { retryAfterSeconds: 1 });
    const body = await readBody(ctx.req, deps.routing.config?.serving.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
    const pathVersion = (ctx as Context & { params?: Record<string, string> }).params?.version;
    const route = routeRequest(table, {
      pathVersion,
      headerVersion: ctx.get(table.headerName).trim() || (modelField ? modelVersion(body, table) : undefined),
      stickyKey: ctx.get(STICKY_KEY_HEADER) || undefined,
      random,
    });
    const { version } = route.choice;
    const state = httpState(ctx);
    state.version = version;
    if (route.upstream === undefined) {
      throw new RerankError('unavailable', `version ${version} has no upstream in router.yaml`, { retryAfterSeconds: 1 });
    }
    // A named version that fell back is asked for by the name of the one that answers.
    const path = pathVersion === undefined ? ctx.path : `/rerank/${encodeURIComponent(version)}`;
    const url = upstreamUrl(route.upstream, ctx.querystring ? `${path}?${ctx.querystring}` : path);
    const headers = endToEndHeaders(ctx.req.headers, ['host', 'content-length', 'expect', 'x-request-id', VERSION_HEADER.toLowerCase()]);
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
        signal: clientGone(ctx),
        version,
        agents,
      });
    } catch (error) {
      if (error instanceof UpstreamFailure) {
        deps.metrics.upstreamErrors.inc({ version, kind: error.kind });
        state.log.warn({ version, upstream: route.upstream, kind: error.kind, err: error.cause }, error.message);
      }
      throw error;
    }
    res.on('error', (error) => state.log.warn({ version, upstream: route.upstream, err: error }, 'upstream response broke off'));
    ctx.status = res.statusCode ?? 502;
    // The router's X-Request-Id stays; everything else end-to-end is the pod's, X-Rerank-Version included.
    for (const [name, value] of Object.entries(endToEndHeaders(res.headers, ['x-request-id']))) {
      if (value !== undefined) ctx.set(name, typeof value === 'number' ? String(value) : value);
    }
    if (EMPTY_STATUSES.has(ctx.status)) {
      res.resume();
      ctx.body = null;
    } else {
      ctx.body = res;
    }
  };
}

const EMPTY_STATUSES = new Set([204, 205, 304]);

/**
 * A Cohere/Jina body's `model` names the version when it is one config.yaml knows, as in the server
 * (header first, then `model`). A body that is not JSON is the pod's to refuse.
 */
function modelVersion(body: Buffer, table: RoutingTable): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const model = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>).model : undefined;
  return typeof model === 'string' && table.versions.some((v) => v.name === model) ? model : undefined;
}

/** Aborts when the connection closes before the response was sent, so the upstream request is dropped. */
function clientGone(ctx: Context): AbortSignal {
  const controller = new AbortController();
  const res = ctx.res;
  if (res.destroyed && !res.writableEnded) controller.abort();
  else res.once('close', () => !res.writableEnded && controller.abort());
  return controller.signal;
}

/** reranker_router_requests_total{version,status}, refusals before a version was chosen under `none`. */
function countRouted(metrics: RouterMetrics): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      metrics.requests.inc({ version: httpState(ctx).version ?? 'none', status: String(ctx.status) });
    } catch (error) {
      const status = error instanceof UpstreamFailure ? STATUS_BY_UPSTREAM_FAILURE[error.kind] : statusForError(error);
      metrics.requests.inc({ version: httpState(ctx).version ?? 'none', status: String(status) });
      throw error;
    }
  };
}

/** An upstream that gave no response: 502 or 504 with the server's JSON error body. Other errors go on to errorHandler. */
function upstreamErrors(): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      if (!(error instanceof UpstreamFailure)) throw error;
      const errorType = error.kind === 'timeout' ? 'upstream_timeout' : 'upstream_unavailable';
      ctx.status = STATUS_BY_UPSTREAM_FAILURE[error.kind];
      ctx.body = httpState(ctx).errorDetail ? { error: error.message, error_type: errorType, detail: error.message } : { error: error.message, error_type: errorType };
    }
  };
}

/** A version's own `endpoint` path is `/rerank/{version}`, as in the server: rewritten before routing. */
function versionEndpoints(routing: RoutingSource): Middleware {
  return (ctx, next) => {
    const version = ctx.method === 'POST' ? routing.table?.endpoints.get(ctx.path) : undefined;
    if (version !== undefined) ctx.path = `/rerank/${encodeURIComponent(version)}`;
    return next();
  };
}

/** Past the routes: 405 when the path exists under other methods, else 404; both as JSON errors. */
function unrouted(): Middleware {
  return (ctx) => {
    const matched = (ctx as Context & { matched?: Array<{ path: string | RegExp; methods: string[] }> }).matched ?? [];
    const allowed = [...new Set(matched.flatMap((layer) => layer.methods))];
    const first = matched[0];
    if (first && allowed.length > 0) {
      httpState(ctx).route = String(first.path);
      throw new MethodNotAllowedError(ctx.method, ctx.path, allowed);
    }
    throw new RerankError('not_found', `no route for ${ctx.method} ${ctx.path}`);
  };
}
