import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { load as parseYaml } from 'js-yaml';
import { formatIssues } from '../errors.ts';
import { RerankConfigSchema, type RerankConfig } from './schema.ts';

/** Re-exported: the server's config code and its users name it from here. */
export { formatIssues };

/** A config file that failed to parse or validate; `issues` name the path of each bad key. */
export class ConfigError extends Error {
  readonly issues: string[];
  constructor(source: string, issues: string[]) {
    super(`invalid config ${source}: ${issues.join('; ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export interface LoadedConfig {
  config: RerankConfig;
  /** sha256 of the validated config (defaults filled, model paths resolved), first 16 hex digits. */
  hash: string;
  /** Where it came from. */
  source: string;
}


/**
 * Parse and validate config text. Relative model paths resolve against `baseDir` (the config file's
 * directory), so a config means the same thing wherever the server is started from.
 */
export function parseConfig(text: string, options: { source: string; baseDir: string }): LoadedConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError(options.source, [`(yaml): ${(error as Error).message.split('\n')[0]}`]);
  }
  const parsed = RerankConfigSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(options.source, formatIssues(parsed.error.issues));
  const config = parsed.data;
  for (const version of Object.values(config.versions)) {
    version.model = path.resolve(options.baseDir, version.model);
  }
  return { config, hash: configHash(config), source: options.source };
}

/** How a watched config file is parsed: validated whole, model paths resolved against its directory. */
export function configFileParser(file: string): (text: string) => { value: RerankConfig; hash: string } {
  const source = path.resolve(file);
  return (text) => {
    const { config, hash } = parseConfig(text, { source, baseDir: path.dirname(source) });
    return { value: config, hash };
  };
}

export async function loadConfigFile(file: string): Promise<LoadedConfig> {
  return (await readConfigFile(file)).loaded;
}

/** Load a config file, keeping its text (the watcher compares later contents with it). */
export async function readConfigFile(file: string): Promise<{ loaded: LoadedConfig; text: string }> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (error) {
    throw new ConfigError(absolute, [`(file): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`]);
  }
  return { loaded: parseConfig(text, { source: absolute, baseDir: path.dirname(absolute) }), text };
}

/** Stable hash: keys sorted, so the same config always hashes the same. */
export function configHash(config: RerankConfig): string {
  return createHash('sha256').update(stableStringify(config)).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted and undefined members left out: equal values, equal text. */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
