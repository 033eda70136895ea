import path from 'node:path';

/**
 * The one check every name a source chooses goes through before it becomes a path in the model
 * directory: an https:// URL's last segment (after percent-decoding), a hub file, an OCI layer title,
 * an archive entry. A name is refused rather than cleaned up: a source that sends `../x` is hostile or
 * broken, and writing it somewhere else would hide that.
 */

/** Why `name` is not a plain file name (one path component that stays where it is put), or undefined. */
export function fileNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name === '.' || name === '..') return `is "${name}"`;
  if (name.includes('/')) return 'contains a "/"';
  if (name.includes('\\')) return 'contains a backslash';
  // NUL ends a path in the kernel; other control characters make names that logs and shells mangle.
  if ([...name].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return 'contains a control character';
  if (/^[a-zA-Z]:/.test(name)) return 'starts with a drive letter';
  if (Buffer.byteLength(name) > 255) return 'is longer than 255 bytes';
  return undefined;
}

/** Why `relative` (parts joined by "/") is not a path below the model directory, or undefined. */
export function relativePathProblem(relative: string): string | undefined {
  if (relative.length === 0) return 'is empty';
  if (relative.startsWith('/')) return 'is an absolute path';
  for (const part of relative.split('/')) {
    const problem = fileNameProblem(part);
    if (problem) return part === '' ? 'has an empty part' : `has a part that ${problem}`;
  }
  return undefined;
}

/**
 * `dir`/`relative`, after checking `relative` and that the result stays inside `dir` (the check above
 * already ensures it; this keeps the promise should a rule ever loosen).
 */
export function joinInside(dir: string, relative: string, what: string): string {
  const problem = relativePathProblem(relative);
  if (problem) throw new UnsafeNameError(`${what}: "${relative}" ${problem}; refusing to write it`);
  const full = path.join(dir, relative);
  const rel = path.relative(dir, full);
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
    throw new UnsafeNameError(`${what}: "${relative}" would land outside ${dir}; refusing to write it`);
  }
  return full;
}

export class UnsafeNameError extends Error {
  override name = 'UnsafeNameError';
}
