import type { Middleware } from 'koa';
import type { Reranker } from '../../engine/types.ts';
import { RerankError } from '../../errors.ts';
import type { HttpMetrics } from '../../metrics.ts';
import { buildOpenApiDocument, packageVersion } from '../openapi.ts';

/** Extra fields for /info, e.g. notices that a version serves a synthetic model. */
export interface InfoExtras {
  notices?: string[];
  [key: string]: unknown;
}

export function healthz(): Middleware {
  return (ctx) => {
    ctx.body = { status: 'ok' };
  };
}

/** 200 once `source` is ready for traffic (a reranker's versions loaded, a router's files read), else 503. */
export function readyz(source: Pick<Reranker, 'isReady'>): Middleware {
  return (ctx) => {
    const ready = source.isReady();
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready' };
  };
}

export function info(reranker: Reranker, extras: InfoExtras | (() => InfoExtras) | undefined): Middleware {
  return (ctx) => {
    const more = typeof extras === 'function' ? extras() : (extras ?? {});
    ctx.body = { name: 'rerank-server', version: packageVersion, ...reranker.info(), ...more, notices: more.notices ?? [] };
  };
}

/** GET /config: what the config reloader says is in force. */
export function configStatus(status: (() => unknown) | undefined): Middleware {
  return (ctx) => {
    if (!status) throw new RerankError('not_found', 'this server has no config file to report');
    ctx.body = status();
  };
}

/** GET /config/hash: only the hash and when it was applied, for callers without the API key (the operator). */
export function configHash(status: (() => { hash: string; appliedAt: string }) | undefined): Middleware {
  return (ctx) => {
    if (!status) throw new RerankError('not_found', 'this server has no config file to report');
    const { hash, appliedAt } = status();
    ctx.body = { hash, appliedAt };
  };
}

export function metricsText(metrics: HttpMetrics): Middleware {
  return async (ctx) => {
    const text = await metrics.registry.metrics();
    ctx.type = metrics.registry.contentType;
    ctx.body = text;
  };
}

export function openapi(): Middleware {
  let document: Record<string, unknown> | undefined;
  return (ctx) => {
    document ??= buildOpenApiDocument();
    ctx.body = document;
  };
}
