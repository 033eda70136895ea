import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { apiSchemas, ErrorBodySchema } from './apis/schemas.ts';
import { openApiPath, ROUTES, type RouteSpec } from './routes.ts';
import { REQUEST_TIMEOUT_HEADER } from './request-deadline.ts';
import { VERSION_HEADER } from './version-request.ts';
import { PACKAGE_ROOT } from '../package-root.ts';

/** The server's package version, read once. */
export const packageVersion: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

type JsonSchema = Record<string, unknown>;
type SchemaRenderer = (schema: z.ZodType) => JsonSchema;

const COMPONENTS = '#/components/schemas/';

/**
 * OpenAPI 3.1 for every route in the route table, schemas rendered from the same zod schemas the
 * handlers validate with (request bodies as accepted, responses as produced).
 */
export function buildOpenApiDocument(routes: readonly RouteSpec[] = ROUTES, version = packageVersion): JsonSchema {
  const components: Record<string, JsonSchema> = {};
  const renderers = { input: renderer('input', components), output: renderer('output', components) };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = openApiPath(route.path);
    paths[path] ??= {};
    paths[path][route.method.toLowerCase()] = operation(route, renderers);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'rerank-server',
      version,
      description:
        'Reranks passages against a query with cross-encoder models. Speaks the text-embeddings-inference, ' +
        'Cohere (v1, v2) and Jina rerank APIs. Version choice: path, else the X-Rerank-Version header, else ' +
        'a `model` field naming a configured version, else weighted among enabled versions.',
    },
    tags: [
      { name: 'rerank', description: 'Rerank APIs.' },
      { name: 'operations', description: 'Health, readiness, metrics and information.' },
    ],
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => a.localeCompare(b))),
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'Required when the server is configured with an API key (RERANK_API_KEY or RERANK_API_KEY_FILE).',
        },
      },
    },
  };
}

/**
 * Renders a schema, moving every named one (registered in `apiSchemas`) into components and leaving a
 * $ref in its place. Request schemas are rendered as accepted (defaults optional), responses as produced.
 */
function renderer(io: 'input' | 'output', components: Record<string, JsonSchema>): SchemaRenderer {
  const rendered = z.toJSONSchema(apiSchemas, {
    io,
    target: 'draft-2020-12',
    unrepresentable: 'any',
    uri: (id) => `${COMPONENTS}${id}`,
  }).schemas as Record<string, JsonSchema>;
  return (schema) => {
    const id = apiSchemas.get(schema)?.id;
    if (!id) {
      const { $schema: _ignored, ...inline } = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' });
      return inline;
    }
    collect(id, rendered, components);
    return { $ref: `${COMPONENTS}${id}` };
  };
}

/** Adds a component and every component it refers to. */
function collect(id: string, rendered: Record<string, JsonSchema>, components: Record<string, JsonSchema>): void {
  const schema = rendered[id];
  if (!schema || components[id]) return;
  const { $schema: _schema, $id: _id, id: _name, ...rest } = schema;
  components[id] = rest;
  for (const ref of JSON.stringify(rest).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) {
    if (ref[1]) collect(ref[1], rendered, components);
  }
}

function operation(route: RouteSpec, render: { input: SchemaRenderer; output: SchemaRenderer }): Record<string, unknown> {
  const parameters: unknown[] = [];
  for (const match of route.path.matchAll(/:(\w+)/g)) {
    parameters.push({
      name: match[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
      description: 'Version name; an unknown or disabled one is answered by the default version.',
    });
  }
  if (route.rerank) {
    parameters.push({
      name: VERSION_HEADER,
      in: 'header',
      required: false,
      schema: { type: 'string' },
      description: 'Version to answer (below the path version). The response header says which version did.',
    });
    parameters.push({
      name: REQUEST_TIMEOUT_HEADER,
      in: 'header',
      required: false,
      schema: { type: 'integer', minimum: 1, maximum: 86_400_000 },
      description:
        'Milliseconds from arrival after which the answer is of no use to the client. A request expected to wait in the ' +
        'queue past it is answered 504 at once; one not scored by then is answered 504 and its waiting work dropped.',
    });
  }
  parameters.push({
    name: 'X-Request-Id',
    in: 'header',
    required: false,
    schema: { type: 'string', maxLength: 128 },
    description: 'Echoed on the response; generated when absent.',
  });

  const responses: Record<string, unknown> = {};
  for (const [status, response] of Object.entries(route.responses)) {
    const contentType = response.contentType ?? 'application/json';
    responses[status] = {
      description: response.description,
      ...(route.rerank && status === '200' ? { headers: rerankHeaders() } : {}),
      content: { [contentType]: { schema: response.schema ? render.output(response.schema) : { type: 'string' } } },
    };
  }
  for (const status of route.errors) {
    responses[String(status)] = {
      description: ERROR_DESCRIPTIONS[status] ?? 'Error.',
      ...(status === 429 ? { headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait.' } } } : {}),
      content: { 'application/json': { schema: render.output(ErrorBodySchema) } },
    };
  }
  return {
    operationId: route.operationId,
    summary: route.summary,
    tags: [route.tag],
    parameters,
    ...(route.request
      ? { requestBody: { required: true, content: { 'application/json': { schema: render.input(route.request) } } } }
      : {}),
    responses,
    security: route.guarded ? [{ bearerAuth: [] }, {}] : [],
  };
}

function rerankHeaders(): Record<string, unknown> {
  const ms = (description: string) => ({ schema: { type: 'integer' }, description: `${description}, milliseconds.` });
  return {
    [VERSION_HEADER]: { schema: { type: 'string' }, description: 'The version that answered.' },
    'x-total-time': ms('Time in the server'),
    'x-tokenization-time': ms('Tokenization time'),
    'x-queue-time': ms('Time queued for a batch'),
    'x-inference-time': ms('Model time'),
  };
}

const ERROR_DESCRIPTIONS: Readonly<Record<number, string>> = {
  400: 'A field is missing, of the wrong type or out of range, or the body is not JSON; `field` names it.',
  401: 'Missing or wrong API key.',
  408: 'The request (headers and body) did not arrive within serving.receiveTimeoutMs; the connection is closed.',
  413: 'Body, document count or (with truncate false) a pair over a configured limit.',
  422: 'The tokenizer could not encode an input.',
  429: 'The queue is full (in pairs, or in expected wait over maxQueueWaitMs); retry after Retry-After seconds, the time it takes to drain below the limit.',
  499: 'The client went away before the answer was ready.',
  500: 'The model failed, or an internal error.',
  503: 'No version is loaded and ready.',
  504: 'The X-Request-Timeout-Ms deadline passed, or would pass in the queue, before the documents were scored.',
};
