import type { Middleware } from 'koa';
import { httpState } from './middleware.ts';

/**
 * Whether the process is shutting down, shared by the listener (which flips it on SIGTERM) and the app
 * (which then fails readiness and closes every connection it answers on).
 *
 * @example
 * const shutdown = new ShutdownState();
 * const app = createApp({ ..., shutdown });
 * await listen(app, { ..., shutdown });
 */
export class ShutdownState {
  #since: number | undefined;

  /** True from the first `begin()` on. */
  get draining(): boolean {
    return this.#since !== undefined;
  }

  begin(): void {
    this.#since ??= performance.now();
  }
}

/**
 * While draining: GET /readyz is 503 `{status: "not_ready", reason: "draining"}` whatever the app would
 * say, so endpoints drop this pod; and every response carries `Connection: close`, so a keep-alive client
 * moves to another pod after the answer it is waiting for rather than keeping this one alive.
 */
export function drainingResponses(shutdown: ShutdownState): Middleware {
  return async (ctx, next) => {
    if (shutdown.draining && ctx.method === 'GET' && ctx.path === '/readyz') {
      ctx.set('Connection', 'close');
      httpState(ctx).route = '/readyz';
      ctx.status = 503;
      ctx.body = { status: 'not_ready', reason: 'draining' };
      return;
    }
    await next();
    // Also for a request that came in before the drain began: its answer is sent after this.
    if (shutdown.draining) ctx.set('Connection', 'close');
  };
}
