import { InvalidArgumentError, type Command } from 'commander';
import type { WatchMode } from '../config/watcher.ts';
import { closeOnSignals } from '../http/listen.ts';
import { createLogger } from '../logger.ts';
import { startRouter } from './start.ts';

export const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000;

function parsePositive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('must be an integer 0-65535');
  return port;
}

interface RouterCommandOptions {
  config: string;
  routerConfig: string;
  port?: number;
  host: string;
  upstreamTimeout: number;
  watch: string;
  pollInterval: number;
}

/**
 * `rerank-server router --config config.yaml --router-config router.yaml --port 8080`: the built-in router
 * the operator runs in routing mode `router` (its Deployment passes exactly these flags).
 */
export function addRouterCommand(program: Command): Command {
  return program
    .command('router')
    .description('proxy rerank requests to each version\'s upstream by path, header and weights (clusters without a Gateway API)')
    .requiredOption('-c, --config <file>', 'serving config (config.yaml): versions, weights, defaultVersion')
    .requiredOption('--router-config <file>', 'router config (router.yaml): headerName, upstreams')
    .option('-p, --port <port>', 'port to listen on (default: $PORT or 8080)', parsePort)
    .option('--host <host>', 'address to bind', '0.0.0.0')
    .option('--upstream-timeout <ms>', 'answer 504 when an upstream has not answered within this time', parsePositive, DEFAULT_UPSTREAM_TIMEOUT_MS)
    .option('--watch <mode>', 'how the files are watched: auto (directory events + polling), events, poll', 'auto')
    .option('--poll-interval <ms>', 'content-hash polling interval', parsePositive, 2000)
    .action(async (opts: RouterCommandOptions) => {
      if (!['auto', 'events', 'poll'].includes(opts.watch)) return program.error('router: --watch must be auto, events or poll');
      const port = opts.port ?? (process.env.PORT ? parsePort(process.env.PORT) : 8080);
      const logger = createLogger('info');
      const running = await startRouter({
        configFile: opts.config,
        routerFile: opts.routerConfig,
        port,
        host: opts.host,
        logger,
        upstreamTimeoutMs: opts.upstreamTimeout,
        watchMode: opts.watch as WatchMode,
        pollIntervalMs: opts.pollInterval,
      });
      closeOnSignals(running.close, logger, () => void running.routing.forceReload());
    });
}
