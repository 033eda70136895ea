import type { z } from 'zod';
import {
  CohereRerankRequestSchema,
  ConfigHashResponseSchema,
  ConfigStatusResponseSchema,
  CohereRerankResponseSchema,
  HealthResponseSchema,
  InfoResponseSchema,
  OpenApiResponseSchema,
  TeiRerankRequestSchema,
  TeiRerankResponseSchema,
} from './apis/schemas.ts';

/**
 * Every route, described once: app.ts builds the router from this table and openapi.ts the document, and
 * a test checks the router's registered routes against the document.
 */
export interface RouteResponse {
  description: string;
  schema?: z.ZodType;
  /** Default application/json. */
  contentType?: string;
}

export interface RouteSpec {
  operationId: string;
  method: 'GET' | 'POST';
  /** Router syntax: `/rerank/:version`. */
  path: string;
  summary: string;
  tag: 'rerank' | 'operations';
  /** Needs the API key when one is configured. */
  guarded: boolean;
  /** A rerank route: takes X-Rerank-Version, answers with it. */
  rerank: boolean;
  /** Error bodies also carry `detail` (Jina clients read it). */
  errorDetail: boolean;
  /** A body's `model` field names the version when no header does and it names a configured one (Cohere, Jina). */
  modelVersion: boolean;
  /** JSON request body. */
  request?: z.ZodType;
  responses: Readonly<Record<number, RouteResponse>>;
  /** Statuses answered with the Error body. */
  errors: readonly number[];
}

const RERANK_ERRORS = [400, 401, 408, 413, 422, 429, 499, 500, 503, 504] as const;

/** What the four rerank routes share: POST, guarded, counted; the TEI ones and the Cohere/Jina ones differ in body and errors. */
const rerankRoute = { method: 'POST', tag: 'rerank', guarded: true, rerank: true, errors: RERANK_ERRORS } as const;
const teiRoute = {
  ...rerankRoute,
  errorDetail: false,
  modelVersion: false,
  request: TeiRerankRequestSchema,
  responses: { 200: { description: 'Results, best first.', schema: TeiRerankResponseSchema } },
} as const;
const cohereRoute = {
  ...rerankRoute,
  errorDetail: true,
  modelVersion: true,
  request: CohereRerankRequestSchema,
  responses: { 200: { description: 'Results, best first.', schema: CohereRerankResponseSchema } },
} as const;

export const ROUTES = [
  { operationId: 'rerank', path: '/rerank', summary: 'Rerank texts against a query (text-embeddings-inference API).', ...teiRoute },
  {
    operationId: 'rerankVersion',
    path: '/rerank/:version',
    summary:
      'Rerank with a named version (text-embeddings-inference API). A version that is not configured is a 404 listing the configured ones; a disabled one (or one not ready) is answered by the default one, and X-Rerank-Version says which.',
    ...teiRoute,
    errors: [...RERANK_ERRORS, 404],
  },
  { operationId: 'rerankV1', path: '/v1/rerank', summary: 'Rerank documents (Cohere v1 and Jina API).', ...cohereRoute },
  { operationId: 'rerankV2', path: '/v2/rerank', summary: 'Rerank documents (Cohere v2 API).', ...cohereRoute },
  {
    operationId: 'healthz',
    method: 'GET',
    path: '/healthz',
    summary: 'Liveness: the process answers.',
    tag: 'operations',
    guarded: false,
    rerank: false,
    errorDetail: false,
    modelVersion: false,
    responses: { 200: { description: 'Alive.', schema: HealthResponseSchema } },
    errors: [],
  },
  {
    operationId: 'readyz',
    method: 'GET',
    path: '/readyz',
    summary: 'Readiness: every enabled version has loaded and warmed up.',
    tag: 'operations',
    guarded: false,
    rerank: false,
    errorDetail: false,
    modelVersion: false,
    responses: {
      200: { description: 'Ready for traffic.', schema: HealthResponseSchema },
      503: { description: 'Still loading; or draining after SIGTERM (`reason: draining`).', schema: HealthResponseSchema },
    },
    errors: [],
  },
  {
    operationId: 'info',
    method: 'GET',
    path: '/info',
    summary: 'Versions, their state and device, limits, notices and the server version.',
    tag: 'operations',
    guarded: true,
    rerank: false,
    errorDetail: false,
    modelVersion: false,
    responses: { 200: { description: 'Server and model information.', schema: InfoResponseSchema } },
    errors: [401],
  },
  {
    operationId: 'config',
    method: 'GET',
    path: '/config',
    summary: 'The config in force (model paths included): its hash, when it was applied, and the last rejected edit if any.',
    tag: 'operations',
    guarded: true,
    rerank: false,
    errorDetail: false,
    modelVersion: false,
    responses: { 200: { description: 'The applied config.', schema: ConfigStatusResponseSchema } },
    errors: [401, 404],
  },
  {
    operationId: 'configHash',
    method: 'GET',
    path: '/config/hash',
    summary: 'Only the hash of the config in force and when it was applied, open like /readyz: what the operator compares across pods.',
    tag: 'operations',
    guarded: false,
    rerank: false,
    errorDetail: false,
    modelVersion: false,
    responses: { 200: { description: 'The applied config\'s hash.', schema: ConfigHashResponseSchema } },
    errors: [404],
  },
  {
    operationId: 'metrics',
    method: 'GET',
    path: '/metrics',
    summary: 'Prometheus metrics.',
    tag: 'operations',
    guarded: false,
    rerank: false,
    errorDetail: false,
    modelVersion: false,
    responses: { 200: { description: 'Prometheus text exposition format.', contentType: 'text/plain' } },
    errors: [],
  },
  {
    operationId: 'openapi',
    method: 'GET',
    path: '/openapi.json',
    summary: 'This OpenAPI document.',
    tag: 'operations',
    guarded: false,
    rerank: false,
    errorDetail: false,
    modelVersion: false,
    responses: { 200: { description: 'OpenAPI 3.1 document.', schema: OpenApiResponseSchema } },
    errors: [],
  },
] as const satisfies readonly RouteSpec[];

export type OperationId = (typeof ROUTES)[number]['operationId'];

/** `/rerank/:version` → `/rerank/{version}`. */
export function openApiPath(routerPath: string): string {
  return routerPath.replace(/:(\w+)/g, '{$1}');
}
