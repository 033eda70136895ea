import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Counter } from 'prom-client';
import { ServingConfigSchema } from '../config/schema.ts';
import type { Logger } from '../logger.ts';
import { clientErrorHandler } from './client-errors.ts';
import { ShutdownState } from './shutdown.ts';

/**
 * Listening and shutting down, the same for the server and the router: bind; bound the time a client
 * has to send its request (never the handler's work); and on close fail readiness, stop taking new
 * connections, let the requests in flight finish within the drain time, and release what the app holds.
 *
 * @example
 * const shutdown = new ShutdownState();
 * const listening = await listen(app, { port: 8080, host: '0.0.0.0', logger, shutdown, timeouts: () => config.serving, stop: () => watcher.stop(), release: () => engine.close() });
 * closeOnSignals(listening.close, logger);
 */

export interface ConnectionTimeouts {
  /** Until a request's headers and body are in; past it: 408 and the connection closed. */
  receiveTimeoutMs: number;
  /** From close() until the connections left are cut. */
  drainTimeoutMs: number;
}

const DEFAULTS = ServingConfigSchema.parse({});
export const DEFAULT_TIMEOUTS: ConnectionTimeouts = { receiveTimeoutMs: DEFAULTS.receiveTimeoutMs, drainTimeoutMs: DEFAULTS.drainTimeoutMs };

/** Node's own limit for the headers alone (60 s), kept when the receive timeout is longer. */
const HEADERS_TIMEOUT_MS = 60_000;

export interface ListenOptions {
  port: number;
  host: string;
  logger: Logger;
  /**
   * Read when used: the receive timeout at each connection check (so a config reload applies it to the
   * requests on their way in), the drain time at close. Default: the serving config's defaults.
   */
  timeouts?: () => ConnectionTimeouts;
  /** Flipped at close; the app's `drainingResponses` reads it. Made here when absent. */
  shutdown?: ShutdownState;
  /** http_connection_errors_total: requests refused before the app saw them. */
  connectionErrors?: Counter<'kind'>;
  /** First on close, before the last requests finish: stop what feeds the app (file watchers). */
  stop?: () => void;
  /** Last on close, once no request is in flight: release what the requests used (models, upstream connections). */
  release?: () => Promise<void> | void;
}

export interface Listening {
  /** `http://host:port` as bound (port 0 becomes the one the system gave). */
  url: string;
  /** Drain (at most the drain time), then release; the same promise however often it is called. */
  close(): Promise<void>;
}

/** Resolves once the port is bound. */
export async function listen(app: Koa, options: ListenOptions): Promise<Listening> {
  const { logger } = options;
  const timeouts = options.timeouts ?? (() => DEFAULT_TIMEOUTS);
  const shutdown = options.shutdown ?? new ShutdownState();
  const initial = timeouts().receiveTimeoutMs;
  const server = http.createServer(
    {
      requestTimeout: initial,
      headersTimeout: Math.min(HEADERS_TIMEOUT_MS, initial),
      // How often Node looks for requests past their time: the timeout is enforced within this much.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(initial / 4))),
    },
    app.callback(),
  );
  // Node reads both at every check, so the getters make a reloaded receive timeout apply at once. Node's
  // requestTimeout covers receiving the request only: a handler that takes minutes is never cut by it.
  Object.defineProperty(server, 'requestTimeout', { get: () => timeouts().receiveTimeoutMs, set: () => {}, configurable: true });
  Object.defineProperty(server, 'headersTimeout', { get: () => Math.min(HEADERS_TIMEOUT_MS, timeouts().receiveTimeoutMs), set: () => {}, configurable: true });
  server.on('clientError', clientErrorHandler({ logger, receiveTimeoutMs: () => timeouts().receiveTimeoutMs, ...(options.connectionErrors ? { counter: options.connectionErrors } : {}) }));
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const { drainTimeoutMs } = timeouts();
      shutdown.begin();
      logger.info({ drainTimeoutMs }, 'shutting down: readiness fails, no new connections, finishing in-flight requests');
      options.stop?.();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Idle keep-alive connections close now; busy ones after their answer, which says Connection: close.
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        closed.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), drainTimeoutMs))),
      ]);
      clearTimeout(timer);
      if (!drained) {
        const connections = await new Promise<number>((resolve) => server.getConnections((_error, count) => resolve(count)));
        logger.warn({ drainTimeoutMs, connections }, 'drain time is up: closing the connections left, their requests unanswered');
        server.closeAllConnections();
        await closed;
      }
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
