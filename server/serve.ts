import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createApp } from './http/app.ts';
import { resolveApiKey } from './http/auth.ts';
import { RerankEngine } from './engine/engine.ts';
import type { LoadedConfig } from './config/load.ts';
import { ServerMetrics } from './metrics.ts';
import type { Logger } from './logger.ts';

export interface ServeOptions {
  loaded: LoadedConfig;
  port: number;
  host: string;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}

export interface RunningServer {
  url: string;
  engine: RerankEngine;
  /** Stop accepting, finish in-flight requests, release the models. */
  close(): Promise<void>;
}

/** Load the models, then listen. Resolves once the port is bound; /readyz turns 200 when warm-up is done. */
export async function serve(options: ServeOptions): Promise<RunningServer> {
  const { logger } = options;
  const metrics = new ServerMetrics();
  const engine = await RerankEngine.create({ loaded: options.loaded, metrics, logger });
  const notices = syntheticNotices(engine, logger);
  const env = options.env ?? process.env;
  const app = createApp({
    reranker: engine,
    metrics,
    logger,
    serving: () => engine.config.serving,
    apiKey: () => resolveApiKey(env),
    info: { notices },
  });
  const server = http.createServer(app.callback());
  // Rerank runs can take seconds under load; keep Node's defaults from cutting them short.
  server.requestTimeout = 0;
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, configHash: options.loaded.hash, source: options.loaded.source }, 'listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      logger.info('shutting down: no new connections, finishing in-flight requests');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await closed;
      await engine.close();
      logger.info('shut down');
    })();
    return closing;
  };
  return { url, engine, close };
}

export const SYNTHETIC_NOTICE =
  'serving a generated stand-in model with RANDOM weights: scores are not meaningful. ' +
  'Point the config at a directory holding model.onnx and tokenizer.json of a real ONNX export ' +
  '(e.g. `optimum-cli export onnx --model BAAI/bge-reranker-v2-m3 --task text-classification DIR`).';

/** A generated stand-in model must never pass for a real reranker: say so loudly, in the log and in /info. */
function syntheticNotices(engine: RerankEngine, logger: Logger): string[] {
  return engine
    .info()
    .versions.filter((version) => version.synthetic)
    .map((version) => {
      const notice = `version "${version.name}": ${SYNTHETIC_NOTICE}`;
      logger.warn({ version: version.name, model: version.modelPath }, notice);
      return notice;
    });
}
