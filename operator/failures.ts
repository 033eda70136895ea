import type { Logger } from 'pino';
import { KubeApiError } from './kube.ts';

/**
 * The kind of a failure, for "log once per new kind": an API error by its HTTP code and reason, a
 * network error by its code, anything else by its class. Messages are not part of it: they carry
 * resourceVersions, times and names that change with every retry.
 */
export function failureKind(error: unknown): string {
  if (error instanceof KubeApiError) return `${error.code} ${error.reason}`;
  // Network errors hide their code (ECONNREFUSED, ENOTFOUND, ...) a cause or two down.
  for (let e: unknown = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return error instanceof Error ? error.name : typeof error;
}

import { messageOf } from '../server/errors.ts';

export { messageOf };

/**
 * One retried operation (a watch, leader election, Events): every failure is counted; the log gets a
 * warning when the kind of failure is new (first failure, or a different kind than the last) and one
 * info line when it works again. So a retry loop is visible without flooding the log.
 */
export class FailureReporter {
  readonly #logger: Logger;
  readonly #what: string;
  readonly #fields: Record<string, unknown>;
  readonly #count: ((kind: string) => void) | undefined;
  #kind: string | undefined;
  /** Consecutive failures, for the line that says it works again. */
  #failures = 0;

  constructor(options: { logger: Logger; what: string; fields?: Record<string, unknown>; count?: (kind: string) => void }) {
    this.#logger = options.logger;
    this.#what = options.what;
    this.#fields = options.fields ?? {};
    this.#count = options.count;
  }

  failed(error: unknown, extra: Record<string, unknown> = {}): void {
    const kind = failureKind(error);
    const message = messageOf(error);
    this.#count?.(kind);
    this.#failures += 1;
    if (kind === this.#kind) return;
    this.#kind = kind;
    this.#logger.warn({ ...this.#fields, ...extra, kind, err: message }, `${this.#what} failed`);
  }

  succeeded(): void {
    if (this.#kind !== undefined) this.#logger.info({ ...this.#fields, failures: this.#failures }, `${this.#what} works again`);
    this.#kind = undefined;
    this.#failures = 0;
  }
}
