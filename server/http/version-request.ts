import type { Context, Middleware } from 'koa';
import type { RerankConfig } from '../config/schema.ts';

/**
 * How a request names the version that should answer it, read the same way by the server (which answers)
 * and the router (which passes it on): the path (`/rerank/:version`, or a version's own `endpoint`), else
 * the version header, else a Cohere/Jina body's `model` when that names a configured version. Unnamed,
 * the weighted draw decides, sticky when the request has a sticky key.
 *
 * @example
 * const version = pathVersion(ctx);
 * const named = headerVersion(ctx, { model: body.model, isVersion: (name) => name in config.versions });
 */

/** The version a request asks for; on a response, the version that answered. */
export const VERSION_HEADER = 'X-Rerank-Version';
/** A user or session id: keeps its requests on one version while the weights stay the same. */
export const STICKY_KEY_HEADER = 'X-Rerank-Sticky-Key';

/** The `:version` of `/rerank/:version`. */
export function pathVersion(ctx: Context): string | undefined {
  return (ctx as Context & { params?: Record<string, string> }).params?.version;
}

/**
 * Marks a router's mirrored copy of a request (`1`): the client got another version's answer, this one is
 * only compared. The server counts such requests apart from client traffic (reranker_mirrored_requests_total).
 */
export const MIRROR_HEADER = 'X-Rerank-Mirror';

/** Whether this request is a router's mirrored copy. */
export function isMirrored(ctx: Context): boolean {
  return ctx.get(MIRROR_HEADER).trim() === '1';
}

/** The request's sticky key; absent or blank: none. */
export function stickyKey(ctx: Context): string | undefined {
  return ctx.get(STICKY_KEY_HEADER).trim() || undefined;
}

/**
 * Below the path version: the version header, else a `model` naming a configured version. The header is
 * this service's own routing signal (a gateway may set it to pin a canary); `model` is usually a client
 * library's hard-coded model id, so it only counts when it names a version here.
 */
export function headerVersion(
  ctx: Context,
  options: { headerName?: string; model?: string | (() => string | undefined) | undefined; isVersion: (name: string) => boolean },
): string | undefined {
  const header = ctx.get(options.headerName ?? VERSION_HEADER).trim();
  if (header) return header;
  // A function is asked only here, when no header decided: the router reads `model` out of the raw body.
  const model = typeof options.model === 'function' ? options.model() : options.model;
  return model !== undefined && options.isVersion(model) ? model : undefined;
}

/** Path → version for every version with its own `endpoint`. */
export function versionEndpoints(config: RerankConfig): Map<string, string> {
  const endpoints = new Map<string, string>();
  for (const [name, version] of Object.entries(config.versions)) if (version.endpoint !== undefined) endpoints.set(version.endpoint, name);
  return endpoints;
}

/**
 * A version's own `endpoint` path serves it as `/rerank/{version}` does: a POST to it is rewritten before
 * routing, so it shares that route's handler, auth, logs and metrics labels. Read per request.
 */
export function rewriteVersionEndpoints(endpoints: () => ReadonlyMap<string, string> | undefined): Middleware {
  return (ctx, next) => {
    const version = ctx.method === 'POST' ? endpoints()?.get(ctx.path) : undefined;
    if (version !== undefined) ctx.path = `/rerank/${encodeURIComponent(version)}`;
    return next();
  };
}
