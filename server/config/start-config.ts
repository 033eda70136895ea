import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, parseConfig, readConfigFile, type LoadedConfig } from './load.ts';
import type { LastGoodStore } from './last-good.ts';

/** The config file is broken and the process starts on its last good copy. */
export interface StartedOnLastGood {
  /** Where the copy was read. */
  copy: string;
  /** What is wrong with the file, as a rejected reload names it. */
  issues: string[];
  /** The file's broken text, when it could be read (the watcher then waits for a different one). */
  fileText?: string;
}

export interface StartConfig {
  loaded: LoadedConfig;
  /** The text in force: the file's, or the copy's. */
  text: string;
  lastGood?: StartedOnLastGood;
}

/**
 * The config a server starts on: the file's when it is valid; when it is not and a last good copy exists,
 * the copy's, read as if it were the file (relative model paths resolve against the file's directory).
 * Without a copy, or with a copy that is no longer valid either, the file's ConfigError is thrown (naming
 * the copy's issues too).
 */
export async function loadStartConfig(file: string, store: LastGoodStore | undefined): Promise<StartConfig> {
  try {
    const { loaded, text } = await readConfigFile(file);
    return { loaded, text };
  } catch (error) {
    if (!(error instanceof ConfigError) || !store) throw error;
    const copy = store.read();
    if (!copy) throw error;
    const source = path.resolve(file);
    let loaded: LoadedConfig;
    try {
      loaded = parseConfig(copy.text, { source, baseDir: path.dirname(source) });
    } catch (copyError) {
      if (!(copyError instanceof ConfigError)) throw copyError;
      throw new ConfigError(source, [...error.issues, ...copyError.issues.map((issue) => `(last good copy ${copy.file}) ${issue}`)]);
    }
    const lastGood: StartedOnLastGood = { copy: copy.file, issues: error.issues };
    const fileText = readOrUndefined(source);
    if (fileText !== undefined) lastGood.fileText = fileText;
    return { loaded, text: copy.text, lastGood };
  }
}

function readOrUndefined(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    // Unreadable: the watcher reports it when it reads the file.
    return undefined;
  }
}
