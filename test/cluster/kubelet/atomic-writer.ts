import { mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * ConfigMap/Secret volumes: kubelet's atomic writer. The data goes to `<volume>/..<timestamp>/`, a
 * `..data_tmp` symlink to it is renamed over `..data`, each key is a top-level symlink
 * `<key> -> ..data/<key>`, and the previous timestamped directory is removed.
 */

/** `..2006_01_02_15_04_05.<random>` like kubelet's timestamped payload directories. */
function payloadDirPrefix(): string {
  const d = new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  return `..${d.getUTCFullYear()}_${pad(d.getUTCMonth() + 1)}_${pad(d.getUTCDate())}_${pad(d.getUTCHours())}_${pad(d.getUTCMinutes())}_${pad(d.getUTCSeconds())}.`;
}

async function readTree(dir: string, prefix = ''): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) for (const [k, v] of await readTree(path.join(dir, entry.name), rel)) files.set(k, v);
    else files.set(rel, await readFile(path.join(dir, entry.name)));
  }
  return files;
}

function samePayload(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, value] of a) if (!b.get(key)?.equals(value)) return false;
  return true;
}

/** Writes `payload` into `dir` as kubelet does; false when the content was already there. */
export async function writeAtomically(dir: string, payload: Map<string, Buffer>): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  const dataLink = path.join(dir, '..data');
  const oldTarget = await readlink(dataLink).catch(() => undefined);
  const oldPayload = oldTarget ? await readTree(path.join(dir, oldTarget)).catch(() => undefined) : undefined;
  if (oldPayload && samePayload(oldPayload, payload)) return false;
  const newDir = await mkdtemp(path.join(dir, payloadDirPrefix()));
  for (const [rel, content] of payload) {
    const file = path.join(newDir, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content, { mode: 0o644 });
  }
  const tmpLink = path.join(dir, '..data_tmp');
  await rm(tmpLink, { force: true });
  await symlink(path.basename(newDir), tmpLink);
  await rename(tmpLink, dataLink);
  const top = (keys: Iterable<string>) => new Set([...keys].map((rel) => rel.split('/')[0] ?? rel));
  const newTop = top(payload.keys());
  for (const name of newTop) {
    const link = path.join(dir, name);
    if ((await readlink(link).catch(() => undefined)) === undefined) await symlink(path.join('..data', name), link);
  }
  for (const name of top(oldPayload?.keys() ?? [])) if (!newTop.has(name)) await unlink(path.join(dir, name)).catch(() => {});
  if (oldTarget) await rm(path.join(dir, oldTarget), { recursive: true, force: true });
  return true;
}
