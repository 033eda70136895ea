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

export function isRerankError(error: unknown): error is RerankError {
  return error instanceof RerankError;
}
