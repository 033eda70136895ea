import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The directory holding the project's package.json, found by walking up from a module's URL. The same
 * answer whether the module runs from the sources (server/...) or from the build (dist/server/...), in
 * a checkout, through `npm link`, or installed under node_modules.
 */
export function packageRoot(moduleUrl: string): string {
  const start = path.dirname(fileURLToPath(moduleUrl));
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${start}`);
  }
}

/** The root of this package (rerank-operator). */
export const PACKAGE_ROOT: string = packageRoot(import.meta.url);

/** Whether this package runs from an install (a node_modules directory), not from a checkout or `npm link`. */
export const INSTALLED: boolean = PACKAGE_ROOT.split(path.sep).includes('node_modules');
