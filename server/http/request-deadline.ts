import type { Context } from 'koa';
import { RerankError } from '../errors.ts';

/**
 * A client's deadline: `X-Request-Timeout-Ms: 2000` says the answer is of no use to it more than 2 s after
 * the request arrived (the timeout its own HTTP client will give up at). The server then refuses at once
 * a request it expects to queue past that, and answers 504 when the deadline passes before the last of
 * its documents was scored, dropping its pairs still waiting: work nobody would read.
 *
 * @example
 * const deadline = requestDeadline(ctx, httpState(ctx).startedAt); // performance.now() ms, or undefined
 */
export const REQUEST_TIMEOUT_HEADER = 'X-Request-Timeout-Ms';

/** Longest timeout taken: a day. Longer values are as good as none, and stay far from timer overflow. */
const MAX_TIMEOUT_MS = 86_400_000;

/**
 * The deadline on the `performance.now()` clock, counted from `arrivedAt`; undefined without the header.
 * A value that is not a whole number of milliseconds from 1 to a day is a 400 naming the header.
 */
export function requestDeadline(ctx: Context, arrivedAt: number): number | undefined {
  const raw = ctx.get(REQUEST_TIMEOUT_HEADER).trim();
  if (raw === '') return undefined;
  const ms = /^\d{1,9}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(ms >= 1 && ms <= MAX_TIMEOUT_MS)) {
    throw new RerankError('validation', `${REQUEST_TIMEOUT_HEADER}: must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, got ${JSON.stringify(raw.slice(0, 40))}`, {
      field: REQUEST_TIMEOUT_HEADER,
    });
  }
  return arrivedAt + ms;
}
