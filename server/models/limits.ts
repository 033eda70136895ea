import { statfs } from 'node:fs/promises';
import path from 'node:path';

/**
 * How much one `models pull` may write. The defaults leave room for the largest rerankers people serve
 * (bge-reranker-v2-gemma in fp32 is about 10 GB, most of it in one external-weights file) and stop a
 * source that sends without end, or an archive that expands without end, long before a disk fills.
 */
export interface PullLimits {
  /** One file: a download (an archive counts as one), or one archive entry. */
  maxFileBytes: number;
  /** Every byte one pull downloads, all files together. */
  maxPullBytes: number;
  /** Everything an archive extracts to. */
  maxExtractedBytes: number;
}

const GiB = 1024 ** 3;

export const DEFAULT_LIMITS: PullLimits = { maxFileBytes: 20 * GiB, maxPullBytes: 40 * GiB, maxExtractedBytes: 40 * GiB };

/** The CLI flag that sets each limit: named in the errors, so the fix is in the message. */
export const LIMIT_FLAGS: Record<keyof PullLimits, string> = {
  maxFileBytes: '--max-file-bytes',
  maxPullBytes: '--max-pull-bytes',
  maxExtractedBytes: '--max-extracted-bytes',
};

/** The free space of the file system that holds a directory. */
export interface DiskSpace {
  free(dir: string): Promise<number>;
}

/** statfs of the directory, or of its nearest existing ancestor (a model directory is made later). */
export const localDisk: DiskSpace = {
  async free(dir) {
    for (let at = path.resolve(dir); ; at = path.dirname(at)) {
      try {
        const stats = await statfs(at);
        return stats.bavail * stats.bsize;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || at === path.dirname(at)) throw error;
      }
    }
  },
};

/** A pull refused for its size (a limit, or the free space): not retried, and nothing it wrote is kept. */
export class LimitError extends Error {
  override name = 'LimitError';
}

/** "20 GiB" for a whole number of the largest binary unit that fits (how limits are given), else "1.4 MB". */
export function formatSize(bytes: number): string {
  const binary = ([['TiB', 1024 ** 4], ['GiB', GiB], ['MiB', 1024 ** 2], ['KiB', 1024]] as const).find(([, size]) => bytes >= size);
  if (binary && bytes % binary[1] === 0) return `${bytes / binary[1]} ${binary[0]}`;
  for (const [unit, size] of [['TB', 1e12], ['GB', 1e9], ['MB', 1e6], ['KB', 1e3]] as const) {
    if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`;
  }
  return `${bytes} B`;
}

const UNITS: Record<string, number> = {
  b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  ki: 1024, kib: 1024, mi: 1024 ** 2, mib: 1024 ** 2, gi: GiB, gib: GiB, ti: 1024 ** 4, tib: 1024 ** 4,
};

/** A byte count as a flag takes it: `1048576`, `500MB`, `20GiB`, `1.5 GB` (KB/MB/GB: powers of 1000; KiB/MiB/GiB: of 1024). */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const factor = match ? UNITS[(match[2] || 'b').toLowerCase()] : undefined;
  if (!match || factor === undefined) throw new RangeError(`"${text}" is not a size (a byte count, or a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)`);
  const bytes = Math.floor(Number(match[1]) * factor);
  if (bytes <= 0 || !Number.isSafeInteger(bytes)) throw new RangeError(`"${text}" is not a size above zero`);
  return bytes;
}

/**
 * One pull's account of bytes against its limits: each file is checked when its size is announced
 * (Content-Length, a layer's size, a tar header) and again as its bytes arrive, so a source that
 * announces nothing is still stopped at the limit. Files count against the pull once finished.
 */
export class PullBudget {
  readonly limits: PullLimits;
  readonly disk: DiskSpace;
  #finished = 0;

  constructor(limits: Partial<PullLimits> = {}, disk: DiskSpace = localDisk) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.disk = disk;
    for (const [key, value] of Object.entries(this.limits)) {
      if (!(value > 0)) throw new RangeError(`${LIMIT_FLAGS[key as keyof PullLimits]}: ${value} is not a size above zero`);
    }
  }

  /** Bytes of the files this pull finished so far. */
  get finished(): number {
    return this.#finished;
  }

  /** Refuses a file that is (`announced`), or has grown to, `size` bytes. */
  checkFile(label: string, size: number, announced: boolean): void {
    const { maxFileBytes, maxPullBytes } = this.limits;
    if (size > maxFileBytes) {
      throw this.#over(label, announced ? `is ${formatSize(size)}` : `sent more than ${formatSize(maxFileBytes)}`, 'maxFileBytes', 'per-file', 'the file was not kept');
    }
    if (this.#finished + size > maxPullBytes) {
      const before = this.#finished > 0 ? `, with the ${formatSize(this.#finished)} pulled before it` : '';
      const what = `${announced ? `is ${formatSize(size)}` : `sent ${formatSize(size)} so far`}${before}`;
      throw this.#over(label, what, 'maxPullBytes', 'per-pull', 'the file was not kept');
    }
  }

  /** Refuses a pull whose files are announced together (an OCI manifest's layers) before any is fetched. */
  checkPlanned(label: string, sizes: readonly number[]): void {
    const total = sizes.reduce((sum, size) => sum + size, 0);
    if (this.#finished + total > this.limits.maxPullBytes) {
      throw this.#over(label, `${sizes.length} files of ${formatSize(total)} in all`, 'maxPullBytes', 'per-pull', 'nothing was downloaded');
    }
  }

  /** A finished file's bytes count against the pull. */
  commit(size: number): void {
    this.#finished += size;
  }

  /** Refuses an archive entry of `size` bytes that brings the extracted total to `total`. */
  checkExtracted(label: string, size: number, total: number): void {
    if (size > this.limits.maxFileBytes) throw this.#over(label, `is ${formatSize(size)}`, 'maxFileBytes', 'per-file', 'nothing was extracted');
    if (total > this.limits.maxExtractedBytes) {
      throw this.#over(label, `brings the archive's content to ${formatSize(total)}`, 'maxExtractedBytes', 'extracted', 'nothing was extracted');
    }
  }

  /** Refuses to write `bytes` more into `dir` when its file system has less free. */
  async checkFree(dir: string, bytes: number, label: string): Promise<void> {
    const free = await this.disk.free(dir);
    if (bytes > free) throw new LimitError(`${label}: needs ${formatSize(bytes)} but only ${formatSize(free)} is free on the file system of ${dir}; nothing was written`);
  }

  #over(label: string, what: string, key: keyof PullLimits, kind: string, outcome: string): LimitError {
    return new LimitError(`${label}: ${what}, over the ${kind} limit of ${formatSize(this.limits[key])} (${LIMIT_FLAGS[key]}); ${outcome}`);
  }
}
