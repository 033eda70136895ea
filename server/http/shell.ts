import Router, { type RouterMiddleware } from '@koa/router';
import Koa, { type Context, type Middleware } from 'koa';
import { RerankError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { HttpMetrics } from '../metrics.ts';
import { MethodNotAllowedError } from './errors.ts';
import { accessLog, errorHandler, httpMetrics, httpState, requestId } from './middleware.ts';
import { ROUTES, type OperationId, type RouteSpec } from './routes.ts';
import { drainingResponses, type ShutdownState } from './shutdown.ts';
import { discardUnreadBody } from './unread-body.ts';
import { rewriteVersionEndpoints } from './version-request.ts';

/**
 * The HTTP shell the server and the router share: everything around their handlers. Order: request id →
 * access log → metrics → shutdown (readiness, Connection: close) → unread body (read before answering) →
 * errors → version endpoints → routes → 404/405. Per-route middleware (auth, the
 * body parser) runs inside the router, so that a 401 or a malformed body is still labelled with its route
 * pattern in logs and metrics (app-level, it would run before routing and count as `unmatched`).
 *
 * @example
 * const router = routerFromTable({ handlers: { healthz: healthz() } });
 * const app = createShellApp({ logger, metrics, router });
 */

export interface ShellDeps {
  logger: Logger;
  metrics: HttpMetrics;
  router: Router;
  /** A version's own `endpoint` paths → the version; read per request. */
  endpoints?: () => ReadonlyMap<string, string> | undefined;
  /** Set while the process drains (SIGTERM): readiness fails and connections close after their answer. */
  shutdown?: ShutdownState;
}

/** The HTTP app, not listening. */
export function createShellApp(deps: ShellDeps): Koa {
  const app = new Koa();
  app.use(requestId(deps.logger));
  app.use(accessLog());
  app.use(httpMetrics(deps.metrics));
  if (deps.shutdown) app.use(drainingResponses(deps.shutdown));
  app.use(discardUnreadBody());
  app.use(errorHandler());
  if (deps.endpoints) app.use(rewriteVersionEndpoints(deps.endpoints));
  app.use(deps.router.routes());
  app.use(unrouted());
  // Errors past the error middleware (a socket, or an upstream, failing mid-response): log them, never crash.
  app.on('error', (error: unknown) => {
    deps.logger.warn({ err: error }, 'response failed');
  });
  return app;
}

export interface TableRoutes {
  /** The routes of the table this app serves; the others are not registered (404). */
  handlers: Partial<Record<OperationId, Middleware>>;
  /** First in every rerank route's chain: counts its requests. */
  countRerank?: Middleware;
  /** Between the shared middleware and the handler, e.g. auth and the body parser. */
  extra?: (route: RouteSpec) => Middleware[];
}

/** A router of the route table's routes that `handlers` serve, under the table's paths, methods and names. */
export function routerFromTable(options: TableRoutes): Router {
  const router = new Router();
  for (const route of ROUTES) {
    const handler = options.handlers[route.operationId];
    if (!handler) continue;
    const chain: Middleware[] = [];
    if (route.rerank && options.countRerank) chain.push(options.countRerank);
    if (route.errorDetail) chain.push(withErrorDetail);
    chain.push(...(options.extra?.(route) ?? []), handler);
    router.register(route.path, [route.method], chain as RouterMiddleware[], { name: route.operationId });
  }
  return router;
}

/** Error bodies of this route also carry `detail` (Jina clients read it). */
const withErrorDetail: Middleware = (ctx, next) => {
  httpState(ctx).errorDetail = true;
  return next();
};

/** Past the router: 405 when the path exists under other methods, else 404; both as JSON errors. */
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
