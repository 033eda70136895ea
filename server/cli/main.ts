#!/usr/bin/env node
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfigFile } from '../config/load.ts';
import { createLogger } from '../logger.ts';
import { prepareLocalModels } from './local-mode.ts';
import { serve } from '../serve.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const LOCAL_CONFIG = path.join(repoRoot, 'config/local.yaml');

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('must be an integer 0-65535');
  return port;
}

export function buildCli(): Command {
  const program = new Command('rerank-server')
    .description('Serve cross-encoder rerankers (ONNX) over the TEI, Cohere and Jina rerank APIs.')
    .showHelpAfterError();

  program
    .command('start')
    .description('load the models of a config file and serve them')
    .option('-c, --config <file>', 'serving config (YAML)')
    .option('--local', `serve ${path.relative(process.cwd(), LOCAL_CONFIG) || LOCAL_CONFIG}, generating its stand-in model if absent`)
    .option('-p, --port <port>', 'port to listen on (default: $PORT or 8080)', parsePort)
    .option('--host <host>', 'address to bind', '0.0.0.0')
    .action(async (opts: { config?: string; local?: boolean; port?: number; host: string }) => {
      const configFile = opts.config ?? (opts.local ? LOCAL_CONFIG : undefined);
      if (!configFile) return program.error('start: give --config FILE, or --local for the local default config');
      const port = opts.port ?? (process.env.PORT ? parsePort(process.env.PORT) : 8080);
      await start({ configFile, port, host: opts.host, local: Boolean(opts.local) });
    });

  program
    .command('check-config')
    .description('validate a config file; exits 1 and names each bad key when it is invalid')
    .argument('<file>', 'serving config (YAML)')
    .action(async (file: string) => {
      try {
        const loaded = await loadConfigFile(file);
        const versions = Object.entries(loaded.config.versions)
          .map(([name, v]) => `${name}${v.enabled ? '' : ' (disabled)'}`)
          .join(', ');
        process.stdout.write(`${loaded.source}: ok (hash ${loaded.hash}; versions: ${versions})\n`);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        process.stderr.write(`${error.message.split(':')[0]}:\n${error.issues.map((i) => `  - ${i}\n`).join('')}`);
        process.exitCode = 1;
      }
    });

  return program;
}

async function start(options: { configFile: string; port: number; host: string; local: boolean }): Promise<void> {
  const bootLogger = createLogger('info');
  let loaded;
  try {
    loaded = await loadConfigFile(options.configFile);
  } catch (error) {
    if (error instanceof ConfigError) {
      bootLogger.fatal({ issues: error.issues }, error.message);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger(loaded.config.serving.logLevel);
  if (options.local) await prepareLocalModels(loaded, logger);
  const running = await serve({ loaded, port: options.port, host: options.host, logger });
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'signal received');
    running.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildCli().parseAsync(process.argv);
}
