import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The environment variable naming the state directory (`--state-dir` wins over it). */
export const STATE_DIR_ENV = 'RERANK_STATE_DIR';

/** `$RERANK_STATE_DIR`, else `<tmpdir>/rerank-server`: where a copy goes when the config's own directory is read-only. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env[STATE_DIR_ENV];
  return dir ? path.resolve(dir) : path.join(os.tmpdir(), 'rerank-server');
}

/** Writes `text` to `target` so a reader sees the old content or the new one, never a part. */
export type WriteFile = (target: string, text: string) => void;

let tempCounter = 0;

/** Temp file in the target's directory, flushed, then renamed over the target (atomic on POSIX). */
export function writeFileAtomic(target: string, text: string): void {
  tempCounter += 1;
  const temp = `${target}.${process.pid}.${tempCounter}.tmp`;
  const fd = openSync(temp, 'w', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
  closeSync(fd);
  try {
    renameSync(temp, target);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/** The directory cannot take the copy (a mounted ConfigMap is read-only): use the state directory instead. */
const CANNOT_WRITE_HERE = new Set(['EROFS', 'EACCES', 'EPERM']);

export interface LastGoodCopy {
  /** Where the copy is. */
  file: string;
  text: string;
  /** When it was written. */
  savedAt: Date;
}

export interface LastGoodOptions {
  /** The watched config file. */
  file: string;
  /** Where copies go when the file's directory is read-only; one copy per watched file, named from its absolute path. */
  stateDir: string;
  writeFile?: WriteFile;
}

/**
 * The last config text that was applied, kept on disk so a process that starts on a broken file still
 * serves: `<file>.last-good` beside the file when its directory is writable, else
 * `<stateDir>/<name>-<hash of the file's absolute path>.last-good`, so several watched files do not collide.
 *
 * @example
 * const store = new LastGoodStore({ file: 'config.yaml', stateDir: defaultStateDir() });
 * store.save(text); // after the text was applied
 * store.read()?.text; // at start, when the file is broken
 */
export class LastGoodStore {
  readonly beside: string;
  readonly inStateDir: string;
  readonly #stateDir: string;
  readonly #writeFile: WriteFile;
  /** Once the file's directory refused a write, copies go to the state directory. */
  #besideRefused = false;

  constructor(options: LastGoodOptions) {
    const absolute = path.resolve(options.file);
    this.beside = `${absolute}.last-good`;
    const id = createHash('sha256').update(absolute).digest('hex').slice(0, 12);
    this.#stateDir = path.resolve(options.stateDir);
    this.inStateDir = path.join(this.#stateDir, `${path.basename(absolute)}-${id}.last-good`);
    this.#writeFile = options.writeFile ?? writeFileAtomic;
  }

  /** Keep `text` as the last good config; returns where it went. Throws when neither place takes it. */
  save(text: string): string {
    if (!this.#besideRefused) {
      try {
        this.#writeFile(this.beside, text);
        return this.beside;
      } catch (error) {
        if (!CANNOT_WRITE_HERE.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
        this.#besideRefused = true;
      }
    }
    mkdirSync(this.#stateDir, { recursive: true });
    this.#writeFile(this.inStateDir, text);
    return this.inStateDir;
  }

  /** The newest copy of the two places, or undefined when there is none. An unreadable copy throws. */
  read(): LastGoodCopy | undefined {
    const copies = [this.beside, this.inStateDir].flatMap((file) => {
      try {
        return [{ file, savedAt: statSync(file).mtime }];
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw error;
      }
    });
    const newest = copies.sort((a, b) => b.savedAt.getTime() - a.savedAt.getTime())[0];
    return newest && { ...newest, text: readFileSync(newest.file, 'utf8') };
  }
}
