import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Logger } from '../logger.ts';

/**
 * Listening and shutting down, the same for the server and the router: bind, then on close stop taking
 * new connections, let the requests in flight finish, and release what the app holds.
 *
 * @example
 * const listening = await listen(app, { port: 8080, host: '0.0.0.0', logger, stop: () => watcher.stop(), release: () => engine.close() });
 * closeOnSignals(listening.close, logger);
 */

export interface ListenOptions {
  port: number;
  host: string;
  logger: Logger;
  /** First on close, before the last requests finish: stop what feeds the app (file watchers). */
  stop?: () => void;
  /** Last on close, once no request is in flight: release what the requests used (models, upstream connections). */
  release?: () => Promise<void> | void;
}

export interface Listening {
  /** `http://host:port` as bound (port 0 becomes the one the system gave). */
  url: string;
  /** Stop accepting, finish in-flight requests, then release; the same promise however often it is called. */
  close(): Promise<void>;
}

/** Resolves once the port is bound. */
export async function listen(app: Koa, options: ListenOptions): Promise<Listening> {
  const { logger } = options;
  const server = http.createServer(app.callback());
  // A rerank can take seconds under load, and a proxied one is bounded by the upstream timeout: Node's own
  // request timeout would cut them short.
  server.requestTimeout = 0;
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      logger.info('shutting down: no new connections, finishing in-flight requests');
      options.stop?.();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
      await options.release?.();
      logger.info('shut down');
    })();
    return closing;
  };
  return { url: `http://${host}:${address.port}`, close };
}

/**
 * SIGTERM and SIGINT close (exit 0, or 1 when closing fails); SIGHUP calls `hangup` (a forced reload)
 * each time it comes.
 */
export function closeOnSignals(close: () => Promise<void>, logger: Logger, hangup?: () => void): void {
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'signal received');
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  if (hangup) process.on('SIGHUP', hangup);
}
