import { pino, type Logger, type DestinationStream } from 'pino';
import type { ServingConfig } from './config/schema.ts';

export type { Logger };

/** Structured logs: one JSON object per line on stdout. */
export function createLogger(level: ServingConfig['logLevel'] = 'info', destination?: DestinationStream): Logger {
  const options = { level, base: { service: 'rerank-server' }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything, for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
