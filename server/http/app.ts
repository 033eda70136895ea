import Router, { type RouterMiddleware } from '@koa/router';
import Koa, { type Middleware } from 'koa';
import type { ServingConfig } from '../config/schema.ts';
import type { Reranker } from '../engine/types.ts';
import { RerankError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { cohereAdapter } from './apis/cohere.ts';
import { configStatus, healthz, info, metricsText, openapi, readyz, type InfoExtras } from './apis/ops.ts';
import { countRerankRequests, rerankHandler } from './apis/pipeline.ts';
import { teiAdapter } from './apis/tei.ts';
import { requireApiKey } from './auth.ts';
import { MethodNotAllowedError } from './errors.ts';
import { accessLog, errorHandler, httpMetrics, httpState, jsonBody, requestId } from './middleware.ts';
import { ROUTES, type OperationId } from './routes.ts';

export type { InfoExtras };

export interface AppDeps {
  reranker: Reranker;
  metrics: ServerMetrics;
  logger: Logger;
  /** Read per request: the config can change at runtime. */
  serving: () => ServingConfig;
  /** The API key guarding the rerank routes and /info; undefined (or absent) leaves them open. */
  apiKey?: () => string | undefined;
  /** Extra fields for /info, e.g. `notices`. */
  info?: InfoExtras | (() => InfoExtras);
  /** GET /config: the config in force, from the config reloader. */
  configStatus?: () => unknown;
  /** Extra paths that serve one version (a version's `endpoint`), read per request: path → version. */
  endpoints?: () => ReadonlyMap<string, string>;
}

/**
 * The HTTP app, not listening. Order: request id → access log → metrics → errors → router. Auth and the
 * body parser run per route, inside the router, so that a 401 or a malformed body is still labelled with
 * its route pattern in logs and metrics (app-level, they would run before routing and count as
 * `unmatched`); open routes never reach them.
 */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  const router = createRouter(deps);
  app.use(requestId(deps.logger));
  app.use(accessLog());
  app.use(httpMetrics(deps.metrics));
  app.use(errorHandler());
  if (deps.endpoints) app.use(versionEndpoints(deps.endpoints));
  app.use(router.routes());
  app.use(unrouted());
  // Errors past the error middleware (a socket failing mid-response): log them, never crash.
  app.on('error', (error: unknown) => {
    deps.logger.warn({ err: error }, 'response failed');
  });
  return app;
}

/** The router with every route of the route table; exported so tests can compare it with the OpenAPI document. */
export function createRouter(deps: AppDeps): Router {
  const pipeline = { reranker: deps.reranker, metrics: deps.metrics, serving: deps.serving };
  const handlers: Record<OperationId, Middleware> = {
    rerank: rerankHandler(pipeline, teiAdapter),
    rerankVersion: rerankHandler(pipeline, teiAdapter),
    rerankV1: rerankHandler(pipeline, cohereAdapter({ apiVersion: '1', returnDocumentsByDefault: true })),
    rerankV2: rerankHandler(pipeline, cohereAdapter({ apiVersion: '2', returnDocumentsByDefault: false })),
    healthz: healthz(),
    readyz: readyz(deps.reranker),
    info: info(deps.reranker, deps.info),
    config: configStatus(deps.configStatus),
    metrics: metricsText(deps.metrics),
    openapi: openapi(),
  };
  const count = countRerankRequests(deps.metrics);
  const guard = deps.apiKey ? requireApiKey(deps.apiKey) : undefined;
  const body = jsonBody(() => deps.serving().maxBodyBytes);
  const withDetail: Middleware = (ctx, next) => {
    httpState(ctx).errorDetail = true;
    return next();
  };

  const router = new Router();
  for (const route of ROUTES) {
    const chain: Middleware[] = [];
    if (route.rerank) chain.push(count);
    if (route.errorDetail) chain.push(withDetail);
    if (route.guarded && guard) chain.push(guard);
    if ('request' in route) chain.push(body);
    chain.push(handlers[route.operationId]);
    router.register(route.path, [route.method], chain as RouterMiddleware[], { name: route.operationId });
  }
  return router;
}

/**
 * A version's own `endpoint` path serves it as `/rerank/{version}` does: rewritten before routing, so
 * it shares that route's handler, auth, logs and metrics labels.
 */
function versionEndpoints(endpoints: () => ReadonlyMap<string, string>): Middleware {
  return (ctx, next) => {
    const version = ctx.method === 'POST' ? endpoints().get(ctx.path) : undefined;
    if (version !== undefined) ctx.path = `/rerank/${encodeURIComponent(version)}`;
    return next();
  };
}

/** Past the router: 405 when the path exists under other methods, else 404; both as JSON errors. */
function unrouted(): Middleware {
  return (ctx) => {
    const matched = (ctx as typeof ctx & { matched?: Array<{ path: string | RegExp; methods: string[] }> }).matched ?? [];
    const allowed = [...new Set(matched.flatMap((layer) => layer.methods))];
    const first = matched[0];
    if (first && allowed.length > 0) {
      httpState(ctx).route = String(first.path);
      throw new MethodNotAllowedError(ctx.method, ctx.path, allowed);
    }
    throw new RerankError('not_found', `no route for ${ctx.method} ${ctx.path}`);
  };
}
