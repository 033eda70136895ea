import type { z } from 'zod';

/**
 * The one error type of the serving core. Every failure a caller can see is a RerankError with a kind;
 * the HTTP layer maps the kind to a status code in one place (http/error-middleware.ts).
 */
export type RerankErrorKind =
  | 'validation' // a request field is missing, of the wrong type or out of range
  | 'payload_too_large' // body, document count or token count over a configured limit
  | 'tokenizer' // the tokenizer could not encode an input
  | 'overloaded' // the queue is full: retry later
  | 'unauthorized' // missing or wrong API key
  | 'not_found' // unknown route or resource
  | 'unavailable' // no version is loaded and ready
  | 'cancelled' // the caller went away before the work ran
  | 'deadline' // the caller's deadline (X-Request-Timeout-Ms) passes, or would, before the work is done
  | 'model'; // the inference backend failed

export interface RerankErrorOptions {
  /** Dotted path of the request field at fault, e.g. `documents.3.text`. */
  field?: string;
  /** Seconds a client should wait before retrying (overloaded). */
  retryAfterSeconds?: number;
  cause?: unknown;
}

export class RerankError extends Error {
  readonly kind: RerankErrorKind;
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(kind: RerankErrorKind, message: string, options: RerankErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RerankError';
    this.kind = kind;
    this.field = options.field;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** The version a failure happened on, once one was chosen for the request: set by the engine, read by the metrics. */
const failedOn = new WeakMap<object, string>();

/** Marks `error` as a failure of `version` (a model that throws, a queue refusal, a deadline); returns it. */
export function failedVersion<T>(error: T, version: string): T {
  if (typeof error === 'object' && error !== null) failedOn.set(error, version);
  return error;
}

/** The version `error` (or an error it wraps) happened on; undefined when it came before a version was chosen. */
export function versionOfFailure(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const version = failedOn.get(e);
    if (version !== undefined) return version;
  }
  return undefined;
}

export function isRerankError(error: unknown): error is RerankError {
  return error instanceof RerankError;
}

/** The caller went away before the work ran: nothing to answer, nothing to count as a failure. */
export function cancelled(reason = 'the caller went away before its documents were scored'): RerankError {
  return new RerankError('cancelled', reason);
}

/** An error's message, or its first line (onnxruntime's messages carry a stack of native frames). */
export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}

/** An error's message with the messages of its causes that it does not already include ("fetch failed: connect ECONNREFUSED ..."). */
export function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  let message = error.message;
  for (let e: unknown = error.cause, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (!message.includes(e.message)) message = `${message}: ${e.message}`;
  }
  return message;
}

/** zod issues as `path.to.field: why` lines (a bad record key, e.g. a version name, says why the name is wrong). */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const where = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    if (issue.code === 'invalid_key') {
      return `${where}: version name ${issue.issues.map((inner) => inner.message).join('; ')}`;
    }
    return `${where}: ${issue.message}`;
  });
}
