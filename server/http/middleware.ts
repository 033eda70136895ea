import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { bodyParser } from '@koa/bodyparser';
import type { Context, Middleware, Next } from 'koa';
import { RerankError, isRerankError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { HttpMetrics } from '../metrics.ts';
import { receiveTimedOut } from './client-errors.ts';
import { errorResponse, HttpError } from './errors.ts';

/** What the middleware keep on `ctx.state` for the layers below them. */
export interface HttpState {
  requestId: string;
  /** performance.now() when the request arrived. */
  startedAt: number;
  /** Logger bound to this request's id. */
  log: Logger;
  /** Route pattern for metrics and logs when the router did not set one (405). */
  route?: string;
  /** The version that answered a rerank request. */
  version?: string;
  /** Add Jina's `detail` to error bodies (set by the /v1 and /v2 routes). */
  errorDetail?: boolean;
}

export function httpState(ctx: Context): HttpState {
  return ctx.state as HttpState;
}

/**
 * Aborted when the connection closes before the response was sent, so the work for it (the core's, or
 * the upstream request) is dropped. The reason is a `cancelled` RerankError.
 */
export function abortOnClientGone(ctx: Context): AbortSignal {
  const controller = new AbortController();
  const res = ctx.res;
  const gone = () => controller.abort(new RerankError('cancelled', 'the client went away'));
  if (res.destroyed && !res.writableEnded) gone();
  else res.once('close', () => !res.writableEnded && gone());
  return controller.signal;
}

const REQUEST_ID_HEADER = 'X-Request-Id';
// Incoming ids end up in logs and a response header: take only short, printable ones.
const SAFE_REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

/** Honours a sane incoming X-Request-Id, else makes one; echoes it on the response. */
export function requestId(logger: Logger): Middleware {
  return async (ctx, next) => {
    const incoming = ctx.get(REQUEST_ID_HEADER);
    const id = SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const state = httpState(ctx);
    state.requestId = id;
    state.startedAt = performance.now();
    state.log = logger.child({ reqId: id });
    ctx.set(REQUEST_ID_HEADER, id);
    await next();
  };
}

/**
 * The route label: the router's matched pattern (`/rerank/:version`), never the raw path, so a client
 * cannot grow the metric's label set; anything the router did not match is `unmatched`.
 */
export function routeLabel(ctx: Context): string {
  const matched = (ctx as Context & { _matchedRoute?: string | RegExp })._matchedRoute;
  if (typeof matched === 'string') return matched;
  return httpState(ctx).route ?? 'unmatched';
}

/** Kubelet's probes, a few a second per pod: logged only when they fail, unless the log level is debug. */
const PROBE_ROUTES = new Set(['/healthz', '/readyz']);

/** Probes: debug when they pass, warn when they fail (a 503 while loading or draining is no server error). Else error for 5xx, info for the rest. */
export function accessLogLevel(route: string, status: number): 'debug' | 'info' | 'warn' | 'error' {
  if (PROBE_ROUTES.has(route)) return status < 400 ? 'debug' : 'warn';
  return status >= 500 ? 'error' : 'info';
}

/** One JSON line per request, written when the response is done. */
export function accessLog(): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } finally {
      const state = httpState(ctx);
      const status = ctx.status;
      const fields = {
        method: ctx.method,
        route: routeLabel(ctx),
        path: ctx.path,
        status,
        durationMs: Math.round((performance.now() - state.startedAt) * 1000) / 1000,
        version: state.version,
      };
      state.log[accessLogLevel(fields.route, status)](fields, 'request');
    }
  };
}

/** http_request_duration_seconds{method,route,status}: what canary analysis reads. */
export function httpMetrics(metrics: HttpMetrics): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } finally {
      const seconds = (performance.now() - httpState(ctx).startedAt) / 1000;
      metrics.httpRequestDuration.observe({ method: ctx.method, route: routeLabel(ctx), status: String(ctx.status) }, seconds);
    }
  };
}

/** Turns anything thrown below into the JSON error body; the process never sees it. */
export function errorHandler(): Middleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      const response = errorResponse(error);
      const state = httpState(ctx);
      if (response.serverFault) {
        state.log.error({ err: error, route: routeLabel(ctx) }, 'request failed');
      }
      ctx.status = response.status;
      ctx.set(response.headers);
      ctx.body = state.errorDetail ? { ...response.body, detail: response.body.error } : response.body;
    }
  };
}

type BodyParser = (ctx: Context, next: Next) => Promise<unknown>;

/**
 * Parses every body as JSON whatever its Content-Type (curl -d sends form-urlencoded), with the size limit
 * read per request so a config change applies at once. Parse failures become RerankErrors naming `body`.
 */
export function jsonBody(limitBytes: () => number): Middleware {
  let cached: { limit: number; parse: BodyParser } | undefined;
  return async (ctx, next) => {
    const limit = limitBytes();
    if (cached?.limit !== limit) {
      const parse = bodyParser({
        enableTypes: ['json'],
        detectJSON: () => true,
        jsonLimit: limit,
        onError: (error, ctx) => {
          throw bodyError(error, limit, ctx.req);
        },
      }) as BodyParser;
      cached = { limit, parse };
    }
    await cached.parse(ctx, next);
  };
}

function bodyError(error: unknown, limit: number, req: IncomingMessage): RerankError | HttpError {
  if (isRerankError(error)) return error;
  const type = (error as { type?: unknown }).type;
  if (type === 'entity.too.large') {
    return new RerankError('payload_too_large', `body: larger than the limit of ${limit} bytes`, { field: 'body', cause: error });
  }
  if (type === 'request.aborted') {
    if (receiveTimedOut(req)) return requestTimeout(error);
    return new RerankError('cancelled', 'body: the client went away while sending it', { field: 'body', cause: error });
  }
  const reason = error instanceof Error ? error.message : String(error);
  if ((error as { status?: unknown }).status === 415) {
    return new RerankError('validation', `body: ${reason}`, { field: 'body', cause: error });
  }
  return new RerankError('validation', `body: not valid JSON (${reason})`, { field: 'body', cause: error });
}

/**
 * The body stopped arriving because the receive timeout closed the connection (it was answered 408 there):
 * what the access log and metrics then say, rather than a client that went away.
 */
export function requestTimeout(cause: unknown): HttpError {
  return new HttpError(408, 'request_timeout', 'body: not received within the receive timeout (serving.receiveTimeoutMs)', { cause });
}
