import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A directory laid out the way kubelet mounts a ConfigMap: `config.yaml → ..data/config.yaml`, with
 * `..data` a symlink to a timestamped directory that each update replaces by an atomic rename.
 */
export class KubeletVolume {
  readonly dir: string;
  readonly file: string;
  #generation = 0;

  constructor(dir: string, fileName = 'config.yaml') {
    this.dir = dir;
    this.file = path.join(dir, fileName);
  }

  async publish(text: string): Promise<void> {
    const previous = this.#stamp();
    this.#generation += 1;
    const stamp = this.#stamp();
    await mkdir(path.join(this.dir, stamp), { recursive: true });
    await writeFile(path.join(this.dir, stamp, path.basename(this.file)), text);
    await symlink(stamp, path.join(this.dir, '..data_tmp'));
    await rename(path.join(this.dir, '..data_tmp'), path.join(this.dir, '..data'));
    if (this.#generation === 1) await symlink(path.join('..data', path.basename(this.file)), this.file);
    else await rm(path.join(this.dir, previous), { recursive: true, force: true });
  }

  #stamp(): string {
    return `..2026_01_01_00_00_00.${String(this.#generation).padStart(9, '0')}`;
  }
}
