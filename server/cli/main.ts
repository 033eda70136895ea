#!/usr/bin/env node
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfigFile, readConfigFile } from '../config/load.ts';
import type { WatchMode } from '../config/watcher.ts';
import { createLogger } from '../logger.ts';
import { prepareLocalModels, writeDefaultConfig } from './local-mode.ts';
import { serve } from '../serve.ts';
import { buildOpenApiDocument } from '../http/openapi.ts';
import { fetchInfo, scoreWith, type RemoteOptions } from './remote.ts';
import { renderTable } from './table.ts';
import { addRouterCommand } from '../router/cli.ts';
import { addModelsCommand } from '../models/cli.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const LOCAL_CONFIG = path.join(repoRoot, 'config/local.yaml');

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
    .option('--watch <mode>', 'how the config file is watched: auto (directory events + polling), events, poll', 'auto')
    .option('--poll-interval <ms>', 'content-hash polling interval', parsePositive, 2000)
    .action(async (opts: { config?: string; local?: boolean; port?: number; host: string; watch: string; pollInterval: number }) => {
      const configFile = opts.config ?? (opts.local ? LOCAL_CONFIG : undefined);
      if (!configFile) return program.error('start: give --config FILE, or --local for the local default config');
      if (!['auto', 'events', 'poll'].includes(opts.watch)) return program.error(`start: --watch must be auto, events or poll`);
      const port = opts.port ?? (process.env.PORT ? parsePort(process.env.PORT) : 8080);
      await start({ configFile, port, host: opts.host, local: Boolean(opts.local), watchMode: opts.watch as WatchMode, pollIntervalMs: opts.pollInterval });
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

  const remote = (command: Command) =>
    command
      .option('--url <url>', 'the running server', `http://127.0.0.1:${process.env.PORT ?? 8080}`)
      .option('--api-key <key>', 'bearer token (default: $RERANK_API_KEY)');
  const remoteOptions = (opts: { url: string; apiKey?: string }): RemoteOptions => {
    const apiKey = opts.apiKey ?? process.env.RERANK_API_KEY;
    return apiKey ? { url: opts.url, apiKey } : { url: opts.url };
  };

  remote(program.command('status').description('show each version of a running server: state, device, weight, queue, config hash')).action(
    async (opts: { url: string; apiKey?: string }) => {
      const info = await fetchInfo(remoteOptions(opts));
      const rows = info.versions.map((v) => [
        v.name + (v.name === info.defaultVersion ? ' (default)' : ''),
        v.state,
        v.device,
        String(v.weight),
        String(v.queuedPairs ?? 0),
        v.error ?? v.description,
      ]);
      process.stdout.write(`config ${info.configHash}${info.appliedAt ? ` applied ${info.appliedAt}` : ''}; pid ${info.pid ?? '?'}\n`);
      process.stdout.write(`${renderTable(['VERSION', 'STATE', 'DEVICE', 'WEIGHT', 'QUEUED', 'NOTE'], rows)}\n`);
      for (const notice of info.notices ?? []) process.stdout.write(`! ${notice}\n`);
    },
  );

  program
    .command('export')
    .description('print the OpenAPI 3.1 document of the server\'s routes')
    .option('--format <format>', 'openapi', 'openapi')
    .option('--version <name>', 'document only the routes of this version (/rerank/<name>)')
    .action((opts: { format: string; version?: string }) => {
      if (opts.format !== 'openapi') return program.error(`export: unknown format "${opts.format}" (openapi)`);
      const document = buildOpenApiDocument();
      if (opts.version) pinVersion(document, opts.version);
      process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    });

  remote(
    program
      .command('compare')
      .description('rank one query\'s documents with several versions of a running server, scores side by side')
      .requiredOption('-q, --query <text>', 'the query')
      .requiredOption('-d, --doc <text...>', 'documents (repeat or list)')
      .option('--versions <a,b>', 'versions to compare (default: every ready version)'),
  ).action(async (opts: { query: string; doc: string[]; versions?: string; url: string; apiKey?: string }) => {
    const options = remoteOptions(opts);
    const versions = opts.versions
      ? opts.versions.split(',').map((v) => v.trim()).filter(Boolean)
      : (await fetchInfo(options)).versions.filter((v) => v.state === 'ready').map((v) => v.name);
    const results = await Promise.all(versions.map((version) => scoreWith(options, version, opts.query, opts.doc)));
    const header = ['#', 'DOCUMENT', ...results.map((r) => (r.answeredBy === r.version ? r.version : `${r.version}→${r.answeredBy}`))];
    const rows = opts.doc.map((doc, i) => [
      String(i),
      doc.length > 48 ? `${doc.slice(0, 47)}…` : doc,
      ...results.map((r) => `${(r.scores[i] ?? Number.NaN).toFixed(4)} (#${rankOf(r.scores, i)})`),
    ]);
    process.stdout.write(`query: ${opts.query}\n${renderTable(header, rows)}\n`);
  });

  addRouterCommand(program);
  addModelsCommand(program);
  return program;
}

/** 1-based rank of document `i` among the scores (best = 1). */
function rankOf(scores: readonly number[], i: number): number {
  const own = scores[i] ?? Number.NaN;
  return 1 + scores.filter((score) => score > own).length;
}

/** Narrow the document to one version: its `/rerank/{version}` path with the version fixed. */
function pinVersion(document: Record<string, unknown>, version: string): void {
  const paths = document.paths as Record<string, Record<string, { parameters?: Array<{ in: string }> }>>;
  const template = paths['/rerank/{version}'];
  for (const key of Object.keys(paths)) if (key.includes('rerank')) delete paths[key];
  if (template) {
    for (const operation of Object.values(template)) {
      if (operation.parameters) operation.parameters = operation.parameters.filter((p) => p.in !== 'path');
    }
    paths[`/rerank/${version}`] = template;
  }
  (document.info as Record<string, unknown>).title = `rerank-server — version ${version}`;
}

interface StartOptions {
  configFile: string;
  port: number;
  host: string;
  local: boolean;
  watchMode: WatchMode;
  pollIntervalMs: number;
}

async function start(options: StartOptions): Promise<void> {
  const bootLogger = createLogger('info');
  let local = options.local;
  if (await writeDefaultConfig(options.configFile)) {
    bootLogger.warn({ file: options.configFile }, 'config file absent: wrote a default one (a generated stand-in model) and serving it');
    local = true;
  }
  let loaded, configText;
  try {
    ({ loaded, text: configText } = await readConfigFile(options.configFile));
  } catch (error) {
    if (error instanceof ConfigError) {
      bootLogger.fatal({ issues: error.issues }, error.message);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger(loaded.config.serving.logLevel);
  if (local) await prepareLocalModels(loaded, logger);
  const running = await serve({
    configFile: options.configFile,
    loaded,
    configText,
    port: options.port,
    host: options.host,
    logger,
    watchMode: options.watchMode,
    pollIntervalMs: options.pollIntervalMs,
  });
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
  process.on('SIGHUP', () => void running.reloader.forceReload());
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildCli().parseAsync(process.argv);
}
