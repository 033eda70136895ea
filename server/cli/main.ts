#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { defaultStateDir, LastGoodStore, STATE_DIR_ENV } from '../config/last-good.ts';
import { ConfigError, loadConfigFile } from '../config/load.ts';
import { loadStartConfig } from '../config/start-config.ts';
import type { RerankConfig } from '../config/schema.ts';
import type { WatchMode } from '../config/watcher.ts';
import { checkHead } from '../engine/head-check.ts';
import { describeModelFiles, modelFiles } from '../engine/model-files.ts';
import { createLogger } from '../logger.ts';
import { chooseLocalConfig, prepareLocalModels, writeDefaultConfig } from './local-mode.ts';
import { closeOnSignals } from '../http/listen.ts';
import { buildOpenApiDocument } from '../http/openapi.ts';
import type { DeviceInfo } from '../engine/types.ts';
import { unknownVersionsMessage } from '../engine/version-choice.ts';
import { fetchInfo, RemoteError, scoreWith, type RemoteOptions } from './remote.ts';
import { renderTable } from './table.ts';
import { addRouterCommand } from '../router/cli.ts';
import { addModelsCommand } from '../models/cli.ts';
import { addPrepareCommand } from '../models/prepare-cli.ts';
import { INSTALLED, PACKAGE_ROOT } from '../package-root.ts';

export const LOCAL_CONFIG = path.join(PACKAGE_ROOT, 'config/local.yaml');

/** A failure the CLI reports as one line on stderr (exit 1), without a stack trace. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

function parsePositive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

function parseUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new InvalidArgumentError('must be an http:// or https:// URL, e.g. http://127.0.0.1:8080');
  }
  return value;
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
    .option(
      '--state-dir <dir>',
      `where the last good config is kept when the config file's directory is read-only (a mounted ConfigMap) (default: $${STATE_DIR_ENV} or ${defaultStateDir({})})`,
    )
    .action(async (opts: { config?: string; local?: boolean; port?: number; host: string; watch: string; pollInterval: number; stateDir?: string }) => {
      if (!opts.config && !opts.local) return program.error('start: give --config FILE, or --local for the local default config');
      if (!['auto', 'events', 'poll'].includes(opts.watch)) return program.error(`start: --watch must be auto, events or poll`);
      let port = opts.port;
      if (port === undefined) {
        try {
          port = process.env.PORT ? parsePort(process.env.PORT) : 8080;
        } catch (error) {
          return program.error(`start: $PORT (${process.env.PORT}) ${(error as Error).message}`);
        }
      }
      await start({
        config: opts.config,
        port,
        host: opts.host,
        local: Boolean(opts.local),
        watchMode: opts.watch as WatchMode,
        pollIntervalMs: opts.pollInterval,
        stateDir: opts.stateDir ? path.resolve(opts.stateDir) : defaultStateDir(),
      });
    });

  program
    .command('check-config')
    .description('validate a config file (exits 1 and names each bad key when it is invalid) and say, per version, whether its model files exist')
    .argument('<file>', 'serving config (YAML)')
    .action(async (file: string) => {
      try {
        const loaded = await loadConfigFile(file);
        const versions = Object.entries(loaded.config.versions)
          .map(([name, v]) => `${name}${v.enabled ? '' : ' (disabled)'}`)
          .join(', ');
        process.stdout.write(`${loaded.source}: ok (hash ${loaded.hash}; versions: ${versions})\n`);
        const presence = await modelPresence(loaded.config);
        for (const { line } of presence) process.stdout.write(`  ${line}\n`);
        // Model files may be absent where the config is checked (they come at deploy); a head that does not fit them is an error.
        const misfits = presence.filter((p) => !p.headFits).map((p) => p.name);
        if (misfits.length > 0) {
          process.stderr.write(`check-config: the head of ${misfits.join(', ')} does not fit its model's tokenizer (see above)\n`);
          process.exitCode = 1;
        }
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        const unreadable = error.issues.length === 1 && error.issues[0]?.startsWith('(file): ');
        if (unreadable) process.stderr.write(`check-config: cannot read ${path.resolve(file)} (${describeFileError(error.issues[0]!.slice(8))})\n`);
        else process.stderr.write(`${error.message.split(':')[0]}:\n${error.issues.map((i) => `  - ${i}\n`).join('')}`);
        process.exitCode = 1;
      }
    });

  const remote = (command: Command) =>
    command
      .option('--url <url>', 'the running server', parseUrl, `http://127.0.0.1:${process.env.PORT ?? 8080}`)
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
      if (info.devices) process.stdout.write(`devices: ${info.devices.map(describeDevice).join('; ')}\n`);
      for (const notice of info.notices ?? []) process.stdout.write(`! ${notice}\n`);
    },
  );

  program
    .command('export')
    .description('print the OpenAPI 3.1 document of the server\'s routes')
    .option('--format <format>', `what to print; supported: ${EXPORT_FORMATS}`, 'openapi')
    .option('--version <name>', 'document only the routes of this version (/rerank/<name>)')
    .action((opts: { format: string; version?: string }, command: Command) => {
      if (opts.format !== 'openapi') return command.error(`export: unknown format "${opts.format}"; supported formats: ${EXPORT_FORMATS}`);
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
    const info = await fetchInfo(options);
    const versions = opts.versions ? opts.versions.split(',').map((v) => v.trim()).filter(Boolean) : info.versions.filter((v) => v.state === 'ready').map((v) => v.name);
    const unknown = versions.filter((name) => !info.versions.some((v) => v.name === name));
    if (unknown.length > 0) throw new CliError(`compare --versions: ${unknownVersionsMessage(unknown, info.versions)} (on ${opts.url})`);
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
  addPrepareCommand(addModelsCommand(program));
  return program;
}

/**
 * Per version, whether its model files are where the config says (a valid config may still point at
 * nothing), and when they are, which scoring head it gets and whether the tokenizer has its tokens.
 */
async function modelPresence(config: RerankConfig): Promise<{ name: string; line: string; headFits: boolean }[]> {
  return Promise.all(
    Object.entries(config.versions).map(async ([name, version]) => {
      const label = `${name}${version.enabled ? '' : ' (disabled)'}`;
      let files;
      try {
        files = await modelFiles(version.model);
      } catch (error) {
        return { name, line: `${label}: model files MISSING: ${(error as Error).message}`, headFits: true };
      }
      const head = await checkHead(files, version.head);
      return { name, line: `${label}: model files found in ${version.model}: ${describeModelFiles(files)}; ${head.line}`, headFits: head.ok };
    }),
  );
}

const EXPORT_FORMATS = 'openapi (the OpenAPI 3.1 document, as JSON)';

const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'a directory, not a file',
};

function describeFileError(code: string): string {
  return FILE_ERRORS[code] ? `${code}: ${FILE_ERRORS[code]}` : code;
}

/** `cpu (a, b)`, `cuda: GPU 0 9000/16000 MiB free (c)`: a device of /info, with the versions on it. */
function describeDevice(device: DeviceInfo): string {
  const gpus = device.gpus?.map((gpu) => `GPU ${gpu.deviceId} ${gpu.freeMb}/${gpu.totalMb} MiB free`);
  const on = device.versions.length > 0 ? device.versions.join(', ') : 'no version';
  return `${device.device}${gpus === undefined ? '' : `: ${gpus.join(', ') || 'GPU not read'}`} (${on})`;
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
  /** --config; absent with --local alone (the package's local config). */
  config: string | undefined;
  port: number;
  host: string;
  local: boolean;
  watchMode: WatchMode;
  pollIntervalMs: number;
  /** Where the last good config goes when the config file's directory is read-only. */
  stateDir: string;
}

/**
 * Fails with one line naming the port when the address cannot be listened on. Run before anything
 * else (models take long to load), so a port in use is said at once. The probe closes before the
 * server listens; losing that race ends the same way, later.
 */
async function checkListen(port: number, host: string): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ port, host, exclusive: true }, () => resolve());
    });
  } catch (error) {
    throw new CliError(listenErrorMessage(error as NodeJS.ErrnoException, port, host));
  }
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

function listenErrorMessage(error: NodeJS.ErrnoException, port: number, host: string): string {
  switch (error.code) {
    case 'EADDRINUSE':
      return `start: port ${port} is already in use on ${host} (EADDRINUSE): stop what listens there, or pass another --port`;
    case 'EACCES':
      return `start: not allowed to listen on port ${port} (EACCES): ports below 1024 need privileges; pass another --port`;
    case 'EADDRNOTAVAIL':
      return `start: cannot listen on ${host}:${port}: ${host} is not an address of this machine (EADDRNOTAVAIL); check --host`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `start: cannot listen on ${host}:${port}: the host name does not resolve (${error.code}); check --host`;
    default:
      return `start: cannot listen on ${host}:${port}: ${error.message}`;
  }
}

async function start(options: StartOptions): Promise<void> {
  await checkListen(options.port, options.host);
  const bootLogger = createLogger('info');
  let local = options.local;
  let configFile = options.config;
  if (!configFile) {
    const choice = await chooseLocalConfig(LOCAL_CONFIG, { installed: INSTALLED });
    configFile = choice.file;
    if (choice.copiedBecause) {
      bootLogger.info(
        { file: configFile, from: LOCAL_CONFIG, models: path.join(path.dirname(path.dirname(configFile)), 'models') },
        `local mode: ${choice.copiedBecause}, so serving a copy of its config/local.yaml from the user cache directory; the stand-in model is generated beside it`,
      );
    }
  } else if (await writeDefaultConfig(configFile)) {
    bootLogger.warn({ file: configFile }, 'config file absent: wrote a default one (a generated stand-in model) and serving it');
    local = true;
  }
  // Only for a config the user gave: local mode's own config is the package's or a generated one.
  const lastGood = options.config ? new LastGoodStore({ file: configFile, stateDir: options.stateDir }) : undefined;
  let startConfig;
  try {
    startConfig = await loadStartConfig(configFile, lastGood);
  } catch (error) {
    if (error instanceof ConfigError) {
      bootLogger.fatal({ issues: error.issues }, error.message);
      process.exit(1);
    }
    throw error;
  }
  const { loaded, text: configText, lastGood: startedOnLastGood } = startConfig;
  if (startedOnLastGood) {
    bootLogger.warn(
      { file: path.resolve(configFile), issues: startedOnLastGood.issues, copy: startedOnLastGood.copy, hash: loaded.hash },
      `config file is invalid (${startedOnLastGood.issues.join('; ')}): starting on the last good config ${loaded.hash} from ${startedOnLastGood.copy}; the file stays watched and a valid one is applied`,
    );
  }
  const logger = createLogger(loaded.config.serving.logLevel);
  if (local) await prepareLocalModels(loaded, logger);
  // Loaded here, not at the top: the server (Koa, ONNX Runtime, tokenizers) is what `start` needs, not `status` or `--help`.
  const { serve } = await import('../serve.ts');
  const running = await serve({
    configFile,
    loaded,
    configText,
    port: options.port,
    host: options.host,
    logger,
    watchMode: options.watchMode,
    pollIntervalMs: options.pollIntervalMs,
    ...(lastGood ? { lastGood } : {}),
    ...(startedOnLastGood ? { startedOnLastGood } : {}),
  });
  closeOnSignals(running.close, logger, () => void running.reloader.forceReload());
}

/** One line, no stack trace: what a failed command prints on stderr ($RERANK_DEBUG=1 adds the stack). */
function failureLine(error: unknown): string {
  if (error instanceof CliError || error instanceof RemoteError) return error.message;
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}

/** Runs the CLI: a failed command prints one line on stderr and exits 1; output cut short by a closed pipe (`| head`) too. */
export async function runCli(argv: string[]): Promise<void> {
  const fail = (line: string) => {
    process.stderr.write(`rerank-server: ${line}\n`, () => process.exit(1));
    setTimeout(() => process.exit(1), 1000).unref();
  };
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') fail('output closed before it was all written (EPIPE)');
    else fail(`cannot write the output: ${error.message}`);
  });
  // Nothing is left to tell when stderr itself is gone.
  process.stderr.on('error', () => process.exit(1));
  try {
    await buildCli().parseAsync(argv);
  } catch (error) {
    if (process.env.RERANK_DEBUG) process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    fail(failureLine(error));
  }
}

/**
 * Whether this module is the program Node runs. Node resolves the entry point's real path, so a
 * symlinked bin (npm's node_modules/.bin, npx, `npm link`, a global install) still counts; Node before
 * 22.18 has no import.meta.main, and the real paths are compared instead.
 */
function isMain(): boolean {
  if (typeof import.meta.main === 'boolean') return import.meta.main;
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) await runCli(process.argv);
