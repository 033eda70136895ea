import type { z } from 'zod';
import { RerankError, isRerankError, type RerankErrorKind } from '../errors.ts';
import { isInjectedFault } from '../engine/fault-injection.ts';
import type { ErrorBody } from './apis/schemas.ts';

/**
 * The one place a failure becomes an HTTP status. Everything a handler, the core or a middleware throws
 * lands here through the error middleware; nothing else sets an error status.
 */
export const STATUS_BY_KIND: Readonly<Record<RerankErrorKind, number>> = {
  validation: 400,
  payload_too_large: 413,
  tokenizer: 422,
  overloaded: 429,
  unauthorized: 401,
  not_found: 404,
  unavailable: 503,
  // nginx's "client closed request": nobody reads it, but the access log and metrics then tell a caller
  // that left apart from a server failure.
  cancelled: 499,
  // The caller's own deadline passed (or would pass) before its pairs ran. 504, as a gateway answers a
  // request its upstream did not finish in time (Envoy, gRPC's DEADLINE_EXCEEDED): the request arrived
  // whole, so not 408, which says the server gave up waiting for the request itself (a slow body).
  deadline: 504,
  // TEI answers backend failures with 424. We answer 500: canary analysis (Flagger's request-success-rate)
  // and generic retry policies count 5xx as the server failing, while a 424 would be counted as the
  // client's fault and a broken model version would pass its canary.
  model: 500,
};

/**
 * A failure of HTTP itself, not of the core (a method a path does not serve, an upstream that did not
 * answer), so not a RerankError kind: it carries its own status, `error_type` and headers. The caller is
 * not at fault, nor is this server's code: it is answered without a stack in the log.
 */
export class HttpError extends Error {
  readonly status: number;
  readonly errorType: string;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, errorType: string, message: string, options: { headers?: Record<string, string>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = 'HttpError';
    this.status = status;
    this.errorType = errorType;
    this.headers = options.headers ?? {};
  }
}

/** A path that exists, asked with a method it does not serve. */
export class MethodNotAllowedError extends HttpError {
  readonly allowed: readonly string[];
  constructor(method: string, path: string, allowed: readonly string[]) {
    super(405, 'method_not_allowed', `method ${method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`, { headers: { Allow: allowed.join(', ') } });
    this.name = 'MethodNotAllowedError';
    this.allowed = allowed;
  }
}

export interface ErrorResponse {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
  /** Not the caller's fault: log it with its stack. */
  serverFault: boolean;
}

const DEFAULT_RETRY_AFTER_SECONDS = 1;

/** Status, body and headers for any thrown value. Unknown errors become a 500 that reveals nothing. */
export function errorResponse(error: unknown): ErrorResponse {
  if (isRerankError(error)) {
    const status = STATUS_BY_KIND[error.kind];
    const headers: Record<string, string> = {};
    if (error.kind === 'overloaded' || (error.kind === 'unavailable' && error.retryAfterSeconds !== undefined)) {
      headers['Retry-After'] = String(Math.max(1, Math.ceil(error.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS)));
    }
    if (error.kind === 'unauthorized') headers['WWW-Authenticate'] = 'Bearer realm="rerank"';
    const body: ErrorBody = { error: error.message, error_type: error.kind };
    if (error.field !== undefined) body.field = error.field;
    // An injected fault is the config's doing, not the server's: the access log has it, without a stack.
    return { status, body, headers, serverFault: status >= 500 && !isInjectedFault(error) };
  }
  if (error instanceof HttpError) {
    return { status: error.status, body: { error: error.message, error_type: error.errorType }, headers: { ...error.headers }, serverFault: false };
  }
  return { status: 500, body: { error: 'internal server error', error_type: 'internal' }, headers: {}, serverFault: true };
}

export function statusForError(error: unknown): number {
  return errorResponse(error).status;
}

/**
 * A zod failure as one validation error naming the field at fault. For a union (a document that is a
 * string or an object), an object whose `text` is wrong is reported at `documents.3.text`, not just
 * `documents.3`.
 */
export function validationError(error: z.ZodError, root = 'body'): RerankError {
  const issues = error.issues;
  const first = issues[0];
  if (!first) return new RerankError('validation', `${root}: invalid`, { field: root });
  const { path, message } = innermost(first);
  const field = path.length > 0 ? path.map(String).join('.') : root;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return new RerankError('validation', `${field}: ${message}${more}`, { field, cause: error });
}

function innermost(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string } {
  if (issue.code === 'invalid_union') {
    // The branch that got past the type check at the union's own level is the one the caller meant.
    for (const branch of issue.errors) {
      const deeper = branch.find((inner) => inner.path.length > 0);
      if (deeper) {
        const inner = innermost(deeper);
        return { path: [...issue.path, ...inner.path], message: inner.message };
      }
    }
  }
  return { path: issue.path, message: issue.message };
}
