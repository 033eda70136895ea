import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Parser, ReadEntry, Unpack } from 'tar';
import { sha256File, type DownloadOutcome } from './download.ts';
import { LimitError, PullBudget } from './limits.ts';
import { fileNameProblem, joinInside } from './names.ts';
import { formatBytes, type Progress } from './progress.ts';

/**
 * An archive of a model directory (an https:// .tar.gz/.tgz/.tar, or a directory `oras push` packed into
 * one layer). It is read twice: once to check every entry before anything is written, then to extract
 * into a working directory beside the model directory, which replaces the model directory only when it
 * holds a complete model. A failed pull leaves the model directory as it was.
 */

export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

const SUFFIXES = ['.tar.gz', '.tgz', '.tar'];

/** Whether a URL path's file name says it is an archive of a model directory. */
export function isArchiveName(name: string): boolean {
  const lower = name.toLowerCase();
  return SUFFIXES.some((suffix) => lower.endsWith(suffix));
}

/** Written into the model directory after an extraction, so that a re-run of the same pull skips. */
export const MARKER = '.archive.json';

interface Marker {
  source: string;
  /** sha256 of the archive the files came from. */
  sha256: string;
  files: Record<string, { size: number; sha256: string }>;
}

interface Entry {
  /** Path inside the archive, without "./" or trailing slashes. */
  path: string;
  type: string;
  linkpath?: string;
}

export interface ArchiveListing {
  entries: Entry[];
  /** Bytes the regular files hold: what extracting writes. */
  size: number;
  /** The one top-level directory everything sits in, when there is one: it becomes the model directory. */
  top?: string;
}

const KINDS = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);
const FILE_KINDS = new Set(['File', 'OldFile', 'ContiguousFile']);

/** An entry path as parts below the archive root, or why it may not be written. */
export function entryParts(raw: string): string[] | { problem: string } {
  if (raw.includes('\0') || raw.includes('\\')) return { problem: 'contains a backslash or NUL' };
  if (raw.startsWith('/') || /^[a-zA-Z]:/.test(raw)) return { problem: 'is an absolute path' };
  const parts = raw.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) return { problem: 'has a ".." component' };
  for (const part of parts) {
    const problem = fileNameProblem(part);
    if (problem) return { problem: `has a part that ${problem}` };
  }
  return parts;
}

/** Where a symlink at `parts` pointing to `target` lands, relative to the root; undefined when outside. */
function linkTarget(parts: readonly string[], target: string): string | undefined {
  if (target.startsWith('/') || target.includes('\0') || target.includes('\\')) return undefined;
  const resolved = path.posix.normalize(path.posix.join(...parts.slice(0, -1), target));
  return resolved === '..' || resolved.startsWith('../') ? undefined : resolved;
}

/**
 * Reads every entry header and refuses, before anything is written: absolute paths, ".." components,
 * device files and FIFOs, symlinks that point outside the model directory (after the top-level directory
 * is stripped), hard links to anything but a regular file named earlier, entries below a symlink, and
 * (by their headers, so a small archive of a huge file stops at once) files over the budget's limits.
 */
export async function inspectArchive(file: string, label: string, budget: PullBudget = new PullBudget()): Promise<ArchiveListing> {
  const entries: Entry[] = [];
  let size = 0;
  const files = new Set<string>();
  const symlinks = new Map<string, { parts: string[]; linkpath: string }>();
  const parser = new Parser({ strict: true });
  const check = (entry: ReadEntry): string | undefined => {
    if (!KINDS.has(entry.type)) return `is a ${entry.type}; an archive of a model directory holds files, directories and links only`;
    const parts = entryParts(entry.path);
    if (!Array.isArray(parts)) return parts.problem;
    const joined = parts.join('/');
    if (parts.length === 0 && entry.type !== 'Directory') return 'names the archive root';
    for (let i = 1; i < parts.length; i++) {
      if (symlinks.has(parts.slice(0, i).join('/'))) return `lies below the symlink ${parts.slice(0, i).join('/')}`;
    }
    if (entry.type === 'SymbolicLink') {
      if (linkTarget(parts, entry.linkpath ?? '') === undefined) {
        return `is a symlink to ${entry.linkpath} outside the archive (pack the file itself: tar --dereference)`;
      }
      symlinks.set(joined, { parts, linkpath: entry.linkpath ?? '' });
    } else if (entry.type === 'Link') {
      const target = entryParts(entry.linkpath ?? '');
      if (!Array.isArray(target) || !files.has(target.join('/'))) return `is a hard link to ${entry.linkpath}, which is no file earlier in the archive`;
    }
    if (FILE_KINDS.has(entry.type)) {
      size += entry.size;
      budget.checkExtracted(`${label}: entry "${entry.path}"`, entry.size, size);
      files.add(joined);
    } else {
      files.delete(joined);
    }
    if (entry.type !== 'SymbolicLink') symlinks.delete(joined);
    entries.push({ path: joined, type: entry.type, ...(entry.linkpath ? { linkpath: entry.linkpath } : {}) });
    return undefined;
  };
  parser.on('entry', (entry: ReadEntry) => {
    try {
      const problem = check(entry);
      if (problem) parser.abort(new ArchiveError(`${label}: entry "${entry.path}" ${problem}; refusing to extract the archive`));
    } catch (error) {
      parser.abort(error as Error);
    }
    entry.resume();
  });
  // The parser sets aside entries of types it does not know (GNU sparse files, ...): refuse those too.
  parser.on('ignoredEntry', (entry: ReadEntry) => {
    if (!entry.meta) parser.abort(new ArchiveError(`${label}: entry "${entry.path}" has a type tar cannot extract (${entry.type}); refusing to extract the archive`));
  });
  await drain(file, parser, 'end', label);

  const tops = new Set(entries.map((e) => e.path.split('/')[0]).filter((part) => part !== undefined && part !== ''));
  const [only] = tops;
  const top = tops.size === 1 && entries.every((e) => e.path !== only || e.type === 'Directory') ? only : undefined;
  if (top !== undefined) {
    // Stripped, the top-level directory becomes the model directory: a link may not climb out of it either.
    for (const [joined, { parts, linkpath }] of symlinks) {
      if (linkTarget(parts.slice(1), linkpath) === undefined) {
        throw new ArchiveError(`${label}: entry "${joined}" is a symlink to ${linkpath} outside ${top}/ (pack the file itself: tar --dereference); refusing to extract the archive`);
      }
    }
  }
  return { entries, size, ...(top !== undefined ? { top } : {}) };
}

/** Feeds `file` to a tar parser (or unpacker) and waits for `done`; a tar error becomes an ArchiveError. */
async function drain(file: string, parser: Parser, done: 'end' | 'close', label: string): Promise<void> {
  const input = createReadStream(file);
  try {
    await new Promise<void>((resolve, reject) => {
      parser.on('error', reject);
      input.on('error', reject);
      parser.on(done, () => resolve());
      input.pipe(parser as unknown as NodeJS.WritableStream);
    });
  } catch (error) {
    input.destroy();
    if (error instanceof ArchiveError || error instanceof LimitError || (error as NodeJS.ErrnoException).syscall !== undefined) throw error;
    throw new ArchiveError(`${label}: not a readable tar archive: ${(error as Error).message}`, { cause: error });
  }
}

async function extract(file: string, into: string, label: string): Promise<void> {
  await mkdir(into, { recursive: true });
  const unpack = new Unpack({
    cwd: into,
    // Any entry tar would skip (an I/O error, a path it refuses) fails the pull instead of leaving a gap.
    strict: true,
    preserveOwner: false,
    // Model files are data: no setuid/setgid/sticky bits, and always readable and writable by their owner.
    filter: (_path, entry) => {
      if (entry instanceof ReadEntry && entry.type !== 'Directory' && typeof entry.mode === 'number') entry.mode = (entry.mode & 0o777) | 0o600;
      return true;
    },
  });
  await drain(file, unpack, 'close', label);
}

const isFile = (file: string) => stat(file).then((s) => s.isFile(), () => false);

function holding(listing: ArchiveListing): string {
  const names = listing.entries.filter((e) => e.type !== 'Directory').map((e) => e.path);
  if (names.length === 0) return 'it holds no files';
  const shown = names.slice(0, 20).join(', ');
  return `it holds ${shown}${names.length > 20 ? `, and ${names.length - 20} more` : ''}`;
}

/** model.onnx (or onnx/model.onnx) and tokenizer.json, where the server reads them; a lone graph becomes model.onnx. */
async function settleLayout(root: string, listing: ArchiveListing, label: string, progress: Progress): Promise<void> {
  if (!(await isFile(path.join(root, 'model.onnx'))) && !(await isFile(path.join(root, 'onnx', 'model.onnx')))) {
    const graphs: string[] = [];
    for (const name of await readdir(root)) if (name.endsWith('.onnx') && (await isFile(path.join(root, name)))) graphs.push(name);
    if (graphs.length !== 1) throw new ArchiveError(`${label}: no model.onnx (or onnx/model.onnx, or a single .onnx file) in the archive; ${holding(listing)}`);
    // External weights (<name>.onnx_data) keep their names: the graph refers to them by name.
    await rename(path.join(root, graphs[0]!), path.join(root, 'model.onnx'));
    progress.note(`${label}: ${graphs[0]} saved as model.onnx`);
  }
  if (!(await isFile(path.join(root, 'tokenizer.json')))) throw new ArchiveError(`${label}: no tokenizer.json in the archive; ${holding(listing)}`);
}

/** The regular files under `root`, relative, sorted. */
async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) out.push(path.relative(root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
  }
  return out.sort();
}

async function readMarker(dir: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, MARKER), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

/** The files of an earlier extraction of the same archive, when they are all still there (and hash as recorded, when pinned). */
async function installed(dir: string, source: string, sha256: string | undefined): Promise<string[] | undefined> {
  const marker = await readMarker(dir);
  if (!marker || marker.source !== source || (sha256 !== undefined && marker.sha256 !== sha256)) return undefined;
  for (const [name, recorded] of Object.entries(marker.files)) {
    const file = path.join(dir, name);
    const size = await stat(file).then((s) => (s.isFile() ? s.size : undefined), () => undefined);
    if (size !== recorded.size) return undefined;
    if (sha256 !== undefined && (await sha256File(file)) !== recorded.sha256) return undefined;
  }
  return Object.keys(marker.files);
}

/** The model directory may be replaced when it is absent, empty, or the work of an earlier archive pull. */
async function checkReplaceable(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (names.length > 0 && !names.includes(MARKER)) {
    throw new ArchiveError(`${dir} already holds files no archive pull put there (${names.slice(0, 5).join(', ')}${names.length > 5 ? ', ...' : ''}); empty it or choose another --dir`);
  }
}

/** Moves the finished model directory into place; an earlier one is moved aside first and deleted with the work directory. */
async function swapInto(root: string, dir: string, work: string): Promise<void> {
  try {
    try {
      await rename(root, dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      await rename(dir, path.join(work, 'previous'));
      await rename(root, dir);
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ArchiveError(`cannot move the extracted model into ${dir} (${code}); --dir must be a directory its parent can replace, not a mount point`, { cause: error });
  }
}

export interface ArchiveInstallOptions {
  /** The model directory: replaced as a whole by the archive's content. */
  dir: string;
  /** What the archive came from; with its sha256, what lets a re-run skip. */
  source: string;
  /** The archive's file name: the download's name and the label in progress and errors. */
  name: string;
  /** The archive's expected sha256 (--sha256, model.sha256, or an OCI layer digest). */
  sha256?: string;
  /** Downloads the archive to `dest` (resuming a `dest.part`, checking `sha256`). */
  download(dest: string): Promise<DownloadOutcome>;
  progress: Progress;
  /** The pull's limits: each entry and the extracted total are checked, and the free space, before extracting. */
  budget?: PullBudget;
}

export interface InstalledFile {
  file: string;
  outcome: 'extracted' | 'skipped';
}

/**
 * Downloads an archive into `.<dir name>.pull/` beside the model directory, checks and extracts it there,
 * and renames the result into place. The archive is deleted afterwards; the model directory keeps a
 * marker naming the source, the archive's sha256 and each file's size and sha256, so a re-run of the same
 * pull skips (hashing every file first when a sha256 is pinned). An interrupted download leaves its .part
 * in the working directory and the next run resumes it; any other failure removes the working directory.
 */
export async function installArchive(options: ArchiveInstallOptions): Promise<InstalledFile[]> {
  const { name, progress } = options;
  const budget = options.budget ?? new PullBudget();
  const dir = path.resolve(options.dir);
  const sha256 = options.sha256?.toLowerCase();
  const present = await installed(dir, options.source, sha256);
  if (present) {
    progress.note(`${name}: already extracted into ${options.dir}${sha256 ? ' and verified' : ''}, skipped`);
    return present.map((file) => ({ file, outcome: 'skipped' }));
  }
  await checkReplaceable(dir);

  const work = path.join(path.dirname(dir), `.${path.basename(dir)}.pull`);
  await mkdir(work, { recursive: true });
  const archive = joinInside(work, name, options.source);
  try {
    const outcome = await options.download(archive);
    if (outcome === 'skipped') progress.note(`${name}: downloaded by an earlier run${sha256 ? ' and verified' : ''}`);
  } catch (error) {
    // Keep a .part to resume from; otherwise leave nothing behind.
    await rmdir(work).catch(() => {});
    throw error;
  }
  try {
    const archiveSha = sha256 ?? (await sha256File(archive));
    const listing = await inspectArchive(archive, name, budget);
    const tree = path.join(work, 'tree');
    await rm(tree, { recursive: true, force: true });
    await budget.checkFree(work, listing.size, `${name}: extracting ${listing.entries.length} entries`);
    progress.note(`${name}: ${listing.entries.length} entries checked; extracting`);
    await extract(archive, tree, name);
    const root = listing.top !== undefined ? path.join(tree, listing.top) : tree;
    await settleLayout(root, listing, name, progress);
    const files = (await filesUnder(root)).filter((f) => f !== MARKER);
    const marker: Marker = { source: options.source, sha256: archiveSha, files: {} };
    let total = 0;
    for (const file of files) {
      const full = path.join(root, file);
      const size = (await stat(full)).size;
      total += size;
      marker.files[file] = { size, sha256: await sha256File(full) };
    }
    await writeFile(path.join(root, MARKER), `${JSON.stringify(marker, null, 2)}\n`);
    await swapInto(root, dir, work);
    const stripped = listing.top !== undefined ? ` (top-level ${listing.top}/ stripped)` : '';
    progress.note(`${name}: sha256 ${archiveSha}; ${files.length} file(s), ${formatBytes(total)} extracted into ${options.dir}${stripped}`);
    return files.map((file) => ({ file, outcome: 'extracted' }));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
