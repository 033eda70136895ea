import type Router from '@koa/router';
import type { default as Koa, Middleware } from 'koa';
import type { ServingConfig } from '../config/schema.ts';
import type { Reranker } from '../engine/types.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { cohereAdapter } from './apis/cohere.ts';
import { configHash, configStatus, healthz, info, metricsText, openapi, readyz, type InfoExtras } from './apis/ops.ts';
import { countRerankRequests, rerankHandler } from './apis/pipeline.ts';
import { teiAdapter } from './apis/tei.ts';
import { requireApiKey } from './auth.ts';
import { jsonBody } from './middleware.ts';
import type { OperationId } from './routes.ts';
import { createShellApp, routerFromTable } from './shell.ts';
import type { ShutdownState } from './shutdown.ts';

export type { InfoExtras };

export interface AppDeps {
  reranker: Reranker;
  metrics: ServerMetrics;
  logger: Logger;
  /** Read per request: the config can change at runtime. */
  serving: () => ServingConfig;
  /** The API key guarding the rerank routes, /info and /config; undefined (or absent) leaves them open. */
  apiKey?: () => string | undefined;
  /** Extra fields for /info, e.g. `notices`. */
  info?: InfoExtras | (() => InfoExtras);
  /** GET /config: the config in force, from the config reloader (GET /config/hash shows its hash alone). */
  configStatus?: () => { hash: string; appliedAt: string };
  /** Extra paths that serve one version (a version's `endpoint`), read per request: path → version. */
  endpoints?: () => ReadonlyMap<string, string>;
  /** Shared with listen(): while draining, /readyz is 503 and every answer closes its connection. */
  shutdown?: ShutdownState;
}

/** The server's HTTP app, not listening: the shared HTTP shell around every route of the route table. */
export function createApp(deps: AppDeps): Koa {
  return createShellApp({
    logger: deps.logger,
    metrics: deps.metrics,
    router: createRouter(deps),
    ...(deps.endpoints ? { endpoints: deps.endpoints } : {}),
    ...(deps.shutdown ? { shutdown: deps.shutdown } : {}),
  });
}

/** The router with every route of the route table; exported so tests can compare it with the OpenAPI document. */
export function createRouter(deps: AppDeps): Router {
  const pipeline = { reranker: deps.reranker, metrics: deps.metrics, serving: deps.serving };
  const guard = deps.apiKey ? requireApiKey(deps.apiKey) : undefined;
  const body = jsonBody(() => deps.serving().maxBodyBytes);
  const handlers: Record<OperationId, Middleware> = {
    rerank: rerankHandler(pipeline, teiAdapter),
    rerankVersion: rerankHandler(pipeline, teiAdapter),
    rerankV1: rerankHandler(pipeline, cohereAdapter({ apiVersion: '1', returnDocumentsByDefault: true })),
    rerankV2: rerankHandler(pipeline, cohereAdapter({ apiVersion: '2', returnDocumentsByDefault: false })),
    healthz: healthz(),
    readyz: readyz(deps.reranker),
    info: info(deps.reranker, deps.info),
    config: configStatus(deps.configStatus),
    configHash: configHash(deps.configStatus),
    metrics: metricsText(deps.metrics),
    openapi: openapi(),
  };
  return routerFromTable({
    handlers,
    countRerank: countRerankRequests(deps.metrics),
    extra: (route) => [...(route.guarded && guard ? [guard] : []), ...(route.request ? [body] : [])],
  });
}
