import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { describeRequestError, type Timeouts } from './http-client.ts';
import { LimitError, PullBudget } from './limits.ts';
import type { Progress } from './progress.ts';

/** What the downloader calls to make a request: `createHttpClient().fetcher`, or a test's. */
export type Fetcher = (url: string, init: { headers: Record<string, string>; redirect: 'follow'; signal?: AbortSignal }) => Promise<Response>;

export class DownloadError extends Error {
  override name = 'DownloadError';
  readonly status: number | undefined;
  readonly retryable: boolean;
  constructor(message: string, options: { status?: number; retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status;
    this.retryable = options.retryable ?? false;
  }
}

export class ChecksumError extends Error {
  override name = 'ChecksumError';
}

export interface DownloadOptions {
  /** Shown in progress and errors: the repo path or URL of the file. */
  label: string;
  sha256?: string;
  headers?: Record<string, string>;
  /** Not Node's global fetch: see http-client.ts. */
  fetcher: Fetcher;
  progress?: Progress;
  /** Further attempts after a dropped connection, a 5xx or a 429; each resumes where the last stopped. */
  retries?: number;
  retryDelayMs?: number;
  signal?: AbortSignal;
  /** Added to a 401/403 error: how to give credentials for this source. */
  authHint?: string;
  /** The pull's limits and its account of bytes; a budget of the default limits when absent. */
  budget?: PullBudget;
  /** The fetcher's timeouts, named in the error when a source stalls. */
  timeouts?: Partial<Timeouts>;
}

export type DownloadOutcome = 'downloaded' | 'resumed' | 'skipped';

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Downloads `url` to `dest`: the bytes go to `dest.part`, an interrupted transfer resumes with a Range
 * request, the sha256 (when given) is checked over the whole file, and only a complete, verified file is
 * renamed into place. A `dest` already present (and matching the sha256, when given) is left alone.
 * A file over the budget's limits, or bigger than the free space, is refused before its body is read
 * when its size is announced, and as soon as it passes a limit when not; a refusal or a local error (a
 * full disk) deletes the `.part`, a dropped or stalled connection keeps it for the next run to resume.
 */
export async function downloadFile(url: string, dest: string, options: DownloadOptions): Promise<DownloadOutcome> {
  const expected = options.sha256?.toLowerCase();
  if ((await sizeOf(dest)) !== undefined) {
    if (!expected || (await sha256File(dest)) === expected) return 'skipped';
    options.progress?.note(`${options.label}: ${path.basename(dest)} present but its sha256 differs; downloading it again`);
    await rm(dest);
  }
  const part = `${dest}.part`;
  const budget = options.budget ?? new PullBudget();
  const resumedFrom = (await sizeOf(part)) ?? 0;
  const retries = options.retries ?? 5;
  for (let attempt = 0; ; attempt++) {
    try {
      await transfer(url, part, options, budget);
      break;
    } catch (error) {
      // Network failures retry; refusals and local ones (a full disk, a read-only directory) do not.
      const local = (error as NodeJS.ErrnoException).syscall !== undefined;
      const retryable = error instanceof LimitError ? false : error instanceof DownloadError ? error.retryable : !local && !options.signal?.aborted;
      // A refused file, or one the disk could not take, leaves nothing; an HTTP error says nothing about
      // the bytes (another candidate URL may have written them), and a network failure is resumed later.
      if (error instanceof LimitError || local) await rm(part, { force: true }).catch(() => {});
      if (!retryable || attempt >= retries) {
        if (error instanceof DownloadError || error instanceof LimitError) throw error;
        const tries = attempt > 0 ? ` after ${attempt + 1} attempts` : '';
        throw new DownloadError(`${options.label}: download failed${tries}: ${describeRequestError(error, options.timeouts)} (${url})`, { cause: error, retryable });
      }
      const have = (await sizeOf(part)) ?? 0;
      options.progress?.note(`${options.label}: ${describeRequestError(error, options.timeouts)}; retrying from byte ${have} (attempt ${attempt + 2} of ${retries + 1})`);
      await sleep((options.retryDelayMs ?? 1000) * 2 ** attempt);
    }
  }
  const size = (await sizeOf(part)) ?? 0;
  if (expected) {
    const actual = await sha256File(part);
    if (actual !== expected) {
      await rm(part, { force: true });
      throw new ChecksumError(`${options.label}: sha256 mismatch: expected ${expected}, got ${actual}; the corrupt download was deleted`);
    }
  }
  await rename(part, dest);
  budget.commit(size);
  return resumedFrom > 0 ? 'resumed' : 'downloaded';
}

// Content-Range: "bytes START-END/TOTAL", or "bytes */TOTAL" on a 416.
function parseContentRange(value: string | null): { start?: number; total?: number } {
  const match = /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!match) return {};
  return {
    ...(match[1] !== undefined ? { start: Number(match[1]) } : {}),
    ...(match[2] !== undefined && match[2] !== '*' ? { total: Number(match[2]) } : {}),
  };
}

/** One request: appends to `part` from its current size (206) or rewrites it from zero (200). */
async function transfer(url: string, part: string, options: DownloadOptions, budget: PullBudget): Promise<void> {
  const { fetcher } = options;
  const have = (await sizeOf(part)) ?? 0;
  const headers: Record<string, string> = { ...options.headers };
  if (have > 0) headers.Range = `bytes=${have}-`;
  const response = await fetcher(url, { headers, redirect: 'follow', ...(options.signal ? { signal: options.signal } : {}) });

  let offset: number;
  let total: number | undefined;
  if (response.status === 416 && have > 0) {
    // The part file already holds every byte (or more than the file has): finished, or start over.
    await response.body?.cancel();
    const { total: size } = parseContentRange(response.headers.get('content-range'));
    if (size === have) return;
    await rm(part, { force: true });
    throw new DownloadError(`${options.label}: partial download does not match the remote file`, { retryable: true });
  }
  if (response.status === 206) {
    const range = parseContentRange(response.headers.get('content-range'));
    if (range.start !== have) {
      await response.body?.cancel();
      await rm(part, { force: true });
      throw new DownloadError(`${options.label}: server answered a different range (${response.headers.get('content-range')})`, { retryable: true });
    }
    offset = have;
    total = range.total;
  } else if (response.status === 200) {
    // No range support (or the file changed): the body is the whole file.
    offset = 0;
    const length = response.headers.get('content-length');
    total = length === null ? undefined : Number(length);
  } else {
    await response.body?.cancel();
    throw httpError(response.status, url, options.label, options.authHint);
  }
  if (!response.body) throw new DownloadError(`${options.label}: empty response body (${url})`, { retryable: true });
  if (total !== undefined) {
    try {
      budget.checkFile(options.label, total, true);
      // The part file already holds `have` bytes: a restart rewrites them, a resume appends the rest.
      await budget.checkFree(path.dirname(part), total - have, options.label);
    } catch (error) {
      await response.body.cancel();
      throw error;
    }
  }

  options.progress?.start(options.label, total, offset);
  const file = await open(part, offset === 0 ? 'w' : 'a');
  let written = offset;
  try {
    // Leaving the loop (a write error, a limit) cancels the body.
    for await (const chunk of response.body) {
      written += chunk.byteLength;
      if (total === undefined || written > total) budget.checkFile(options.label, written, false);
      await file.write(chunk);
      options.progress?.update(written);
    }
  } finally {
    await file.close();
  }
  if (total !== undefined && written !== total) {
    throw new DownloadError(`${options.label}: connection closed after ${written} of ${total} bytes`, { retryable: true });
  }
  options.progress?.finish(written);
}

function httpError(status: number, url: string, label: string, authHint?: string): DownloadError {
  const retryable = status >= 500 || status === 429 || status === 408;
  let hint = '';
  if (status === 404) hint = ': no such file in the repo at that revision';
  else if (status === 401 || status === 403) hint = `: ${authHint ?? 'the repo may be private or gated; set HF_TOKEN to a token that can read it'}`;
  return new DownloadError(`${label}: HTTP ${status}${hint} (${url})`, { status, retryable });
}
