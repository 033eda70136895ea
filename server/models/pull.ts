import { copyFile, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { installArchive } from './archive.ts';
import type { Catalog, PullVariant } from './catalog.ts';
import { ChecksumError, DownloadError, downloadFile, sha256File, type DownloadOutcome, type Fetcher } from './download.ts';
import { createHttpClient, type Timeouts } from './http-client.ts';
import { PullBudget, type DiskSpace, type PullLimits } from './limits.ts';
import { joinInside } from './names.ts';
import { pullOci } from './oci.ts';
import { silentProgress, type Progress } from './progress.ts';
import { resolveSource, type PullPlan } from './resolve.ts';

export interface PullOptions {
  /** A catalogue id, hf://org/name[@revision], https://… (a file, or a .tar.gz/.tgz/.tar of a model directory), pvc://claim/path, or oci://host/repo[:tag|@digest]. */
  source: string;
  dir: string;
  sha256?: string;
  files?: string[];
  /** Which export of an hf:// model (default fp32); see ResolveOptions. */
  variant?: PullVariant;
  catalog?: Catalog;
  fetcher?: Fetcher;
  progress?: Progress;
  env?: Record<string, string | undefined>;
  retries?: number;
  retryDelayMs?: number;
  /** Bytes per file, per pull and extracted (defaults: DEFAULT_LIMITS). */
  limits?: Partial<PullLimits>;
  /** Connect and idle timeouts of the HTTP client (defaults: DEFAULT_TIMEOUTS); unused with `fetcher`. */
  timeouts?: Partial<Timeouts>;
  /** Where free space is looked up; the local file system unless a test injects another. */
  disk?: DiskSpace;
}

export interface PulledFile {
  file: string;
  outcome: DownloadOutcome | 'copied' | 'absent' | 'extracted';
  from?: string;
}

export interface PullResult {
  plan: PullPlan;
  files: PulledFile[];
}

const exists = async (file: string) => stat(file).then(() => true, () => false);

/** Fetches a model's files into `dir`, laid out as the server reads them (model.onnx, tokenizer.json, config.json). */
export async function pullModel(options: PullOptions): Promise<PullResult> {
  const plan = resolveSource(options.source, {
    ...(options.catalog ? { catalog: options.catalog } : {}),
    ...(options.files ? { files: options.files } : {}),
    ...(options.variant ? { variant: options.variant } : {}),
    ...(options.sha256 ? { sha256: options.sha256 } : {}),
    ...(options.env ? { env: options.env } : {}),
  });
  const progress = options.progress ?? silentProgress;
  const budget = new PullBudget(options.limits, options.disk);
  const client = createHttpClient(options.timeouts);
  const transfer = {
    progress,
    budget,
    fetcher: options.fetcher ?? client.fetcher,
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...(options.retries !== undefined ? { retries: options.retries } : {}),
    ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
  };
  try {
    return await pullPlan(plan, options.dir, options.env ?? process.env, transfer);
  } finally {
    await client.close();
  }
}

/** What every download of one pull shares. */
interface Transfer {
  progress: Progress;
  budget: PullBudget;
  fetcher: Fetcher;
  timeouts?: Partial<Timeouts>;
  retries?: number;
  retryDelayMs?: number;
}

async function pullPlan(plan: PullPlan, dir: string, env: Record<string, string | undefined>, transfer: Transfer): Promise<PullResult> {
  const { progress, budget } = transfer;
  // An archive replaces the whole directory once it is complete: the directory is not made beforehand.
  if (plan.kind === 'archive') {
    const files = await installArchive({
      dir,
      source: plan.source,
      name: plan.name,
      progress,
      budget,
      ...(plan.sha256 ? { sha256: plan.sha256 } : {}),
      download: (dest) => downloadFile(plan.url, dest, { label: plan.name, ...transfer, ...(plan.sha256 ? { sha256: plan.sha256 } : {}) }),
    });
    return { plan, files: files.map((f) => ({ ...f, from: plan.name })) };
  }
  if (plan.kind === 'oci') {
    // Each file makes its own directories; a packed directory is installed like an archive.
    const files = await pullOci(plan.source, plan.ref, { dir, env, ...transfer, ...(plan.sha256 ? { sha256: plan.sha256 } : {}) });
    return { plan, files };
  }
  await mkdir(dir, { recursive: true });
  if (plan.kind === 'pvc') return { plan, files: await copyFromPvc(plan, dir, progress, budget) };

  const files: PulledFile[] = [];
  for (const spec of plan.files) {
    const dest = joinInside(dir, spec.dest, plan.source);
    let done: PulledFile | undefined;
    for (const [i, candidate] of spec.candidates.entries()) {
      try {
        const outcome = await downloadFile(candidate.url, dest, {
          label: candidate.label,
          headers: plan.headers,
          ...transfer,
          ...(spec.sha256 ? { sha256: spec.sha256 } : {}),
        });
        if (outcome === 'skipped') progress.note(`${spec.dest}: already present${spec.sha256 ? ' and verified' : ''}, skipped`);
        done = { file: spec.dest, outcome, from: candidate.label };
        break;
      } catch (error) {
        const missing = error instanceof DownloadError && error.status === 404;
        if (missing && i < spec.candidates.length - 1) continue;
        if (missing && spec.optional) {
          progress.note(`${candidate.label}: not in the repo (optional), skipped`);
          done = { file: spec.dest, outcome: 'absent' };
          break;
        }
        if (missing && spec.candidates.length > 1) {
          throw new DownloadError(
            `${spec.dest}: none of ${spec.candidates.map((c) => c.label).join(', ')} exists in ${plan.source} (HTTP 404)` +
              (spec.hint ? `\n${spec.hint}` : ''),
            { status: 404, cause: error },
          );
        }
        throw error;
      }
    }
    if (done) files.push(done);
  }
  return { plan, files };
}

/** Copies one file via `<dest>.part` and a rename; skips a present file that matches `sha256`. */
async function copyVerified(src: string, dest: string, sha256: string | undefined, progress: Progress, budget: PullBudget): Promise<PulledFile> {
  const name = path.basename(dest);
  if (await exists(dest)) {
    if (!sha256 || (await sha256File(dest)) === sha256) {
      progress.note(`${name}: already present${sha256 ? ' and verified' : ''}, skipped`);
      return { file: name, outcome: 'skipped', from: src };
    }
    await rm(dest);
  }
  const part = `${dest}.part`;
  const size = (await stat(src)).size;
  budget.checkFile(src, size, true);
  await budget.checkFree(path.dirname(dest), size, src);
  progress.start(src, size, 0);
  try {
    await copyFile(src, part);
  } catch (error) {
    await rm(part, { force: true });
    throw error;
  }
  if (sha256) {
    const actual = await sha256File(part);
    if (actual !== sha256) {
      await rm(part, { force: true });
      throw new ChecksumError(`${src}: sha256 mismatch: expected ${sha256}, got ${actual}; the corrupt copy was deleted`);
    }
  }
  await rename(part, dest);
  budget.commit(size);
  progress.finish(size);
  return { file: name, outcome: 'copied', from: src };
}

/** pvc:// — a model directory (model.onnx or onnx/model.onnx, tokenizer.json, config.json) or one .onnx file beside them. */
async function copyFromPvc(plan: Extract<PullPlan, { kind: 'pvc' }>, dir: string, progress: Progress, budget: PullBudget): Promise<PulledFile[]> {
  let info;
  try {
    info = await stat(plan.path);
  } catch {
    throw new DownloadError(`${plan.source}: ${plan.path} does not exist (is the claim mounted at ${path.dirname(plan.path)}?)`);
  }
  let modelFile: string | undefined;
  let baseDir: string;
  if (info.isDirectory()) {
    baseDir = plan.path;
    for (const candidate of ['model.onnx', 'onnx/model.onnx']) {
      if (await exists(path.join(plan.path, candidate))) {
        modelFile = path.join(plan.path, candidate);
        break;
      }
    }
    if (!modelFile) throw new DownloadError(`${plan.source}: no model.onnx or onnx/model.onnx in ${plan.path}`);
  } else {
    modelFile = plan.path;
    baseDir = path.dirname(plan.path);
  }
  const out: PulledFile[] = [];
  const modelDest = modelFile.endsWith('.onnx') ? 'model.onnx' : path.basename(modelFile);
  out.push(await copyVerified(modelFile, path.join(dir, modelDest), plan.sha256, progress, budget));
  // Weights stored outside the graph (model.onnx_data, model.onnx.data) sit beside it and keep their names.
  const modelDir = path.dirname(modelFile);
  for (const entry of await readdir(modelDir)) {
    if (/\.onnx[._]data$/.test(entry)) out.push(await copyVerified(path.join(modelDir, entry), path.join(dir, entry), undefined, progress, budget));
  }
  for (const [name, required] of [['tokenizer.json', info.isDirectory()], ['config.json', false]] as const) {
    const src = path.join(baseDir, name);
    if (await exists(src)) out.push(await copyVerified(src, path.join(dir, name), undefined, progress, budget));
    else if (required) throw new DownloadError(`${plan.source}: no ${name} in ${baseDir}`);
  }
  return out;
}
