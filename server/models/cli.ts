import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { CatalogError, DEFAULT_CATALOG, entryVariants, findEntry, loadCatalog, type Catalog, type CatalogEntry, type PullVariant } from './catalog.ts';
import { probeCpuFeatures, type CpuFeatures } from '../engine/cpu-features.ts';
import { chooseVariant, VARIANT_SETTINGS, type VariantSetting } from '../engine/variant-choice.ts';
import { createProgress } from './progress.ts';
import { pullModel } from './pull.ts';
import { addPullBoundOptions, pullBounds, type PullBoundFlags } from './pull-flags.ts';
import { addQuantizeCommand } from '../quantize/cli.ts';
import { ResolveError } from './resolve.ts';

/** Where a pull lands without --dir: models/local/<name>, the directory the local config serves from. */
export function defaultDir(source: string): string {
  const name = source.replace(/^[a-z]+:\/\//i, '').replace(/@.*$/, '').replace(/[?#].*$/, '').split('/').filter(Boolean).pop() ?? 'model';
  // An oci:// reference's last part carries its tag (repo:tag).
  return path.join('models', 'local', name.replace(/:[^:]*$/, '').replace(/\.(onnx|json|tar\.gz|tgz|tar)$/i, ''));
}

/**
 * The export `--variant` names; `auto` picks what a CPU server here would run (int8 with VNNI/AMX when the
 * catalogue lists an int8 export, else fp32). Sources outside the catalogue: fp32 for auto.
 */
export function pullVariant(setting: string, entry: CatalogEntry | undefined, cpu: CpuFeatures = probeCpuFeatures()): PullVariant {
  if (!(VARIANT_SETTINGS as readonly string[]).includes(setting)) throw new CatalogError(`--variant must be one of ${VARIANT_SETTINGS.join(', ')}, got "${setting}"`);
  if (setting !== 'auto') return setting as PullVariant;
  if (!entry) return 'fp32';
  return chooseVariant({ setting: setting as VariantSetting, device: 'cpu', available: entryVariants(entry), cpu }).variant;
}

async function catalogIfPresent(): Promise<Catalog | undefined> {
  const file = process.env.RERANK_MODEL_CATALOG ?? DEFAULT_CATALOG;
  try {
    await access(file);
  } catch {
    // An explicitly named catalogue must exist; the bundled one may be absent from a pruned image.
    if (process.env.RERANK_MODEL_CATALOG) throw new CatalogError(`${file}: model catalogue not found`);
    return undefined;
  }
  return loadCatalog(file);
}

interface PullCommandOptions extends PullBoundFlags {
  dir?: string;
  variant: string;
  sha256?: string;
  file?: string[];
  retries: string;
}

/** `rerank-server models pull|list`: what the operator's init container runs (operator/plan/workloads.ts). */
export function addModelsCommand(program: Command): Command {
  const models = program.command('models').description('fetch models into a directory the server reads; list the catalogue');

  const pull = models
    .command('pull')
    .description('download a model (catalogue id, hf://org/name[@rev], https://…/file or …/dir.tar.gz, pvc://claim/path, oci://host/repo[:tag|@sha256:…]) into --dir')
    .argument('<source>', 'catalogue id or source')
    .option('--dir <dir>', 'model directory to fill (default: models/local/<name>)')
    .option('--sha256 <hex>', 'expected sha256 of the model file (of the archive, for a .tar.gz/.tgz/.tar URL); a mismatch deletes it and fails')
    .option('--file <path...>', 'hf:// only: repo paths to fetch instead of the catalogue\'s or the default list')
    .option('--variant <variant>', 'hf:// only: the export to fetch, fp32, int8, fp16, or auto (int8 when this CPU has VNNI/AMX and the catalogue lists one, else fp32)', 'fp32')
    .option('--retries <n>', 'further attempts per file after a dropped or stalled connection or a 5xx', '5');
  addPullBoundOptions(pull)
    .addHelpText(
      'after',
      [
        '',
        'https:// fetches one file (an .onnx lands as model.onnx), or, when the path ends in .tar.gz, .tgz or .tar, an archive',
        'of a model directory: --sha256 then pins the archive. Its entries are checked before anything is written (no',
        'absolute paths, "..", devices, or links leading out), a single top-level directory is stripped, and the result',
        'must hold model.onnx (or onnx/model.onnx, or one .onnx file, saved as model.onnx) and tokenizer.json. It replaces',
        '--dir only when complete; the archive is deleted, and a re-run of the same source skips (after checking the',
        'files\' hashes when --sha256 is given).',
        '',
        'oci:// pulls an artifact whose layers are files named by their org.opencontainers.image.title annotation',
        '(what `oras push <ref> model.onnx tokenizer.json` makes). Each layer is checked against its digest; --sha256',
        'pins the model.onnx layer. A directory pushed as one packed layer (`oras push <ref> model-dir/`) is extracted',
        'like an https:// archive, and --sha256 pins that layer. A tag that names an index pulls its linux/amd64 (else',
        'its first) manifest.',
        '',
        'Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (sent as a Bearer token to the hub),',
        'OCI_USERNAME and OCI_PASSWORD (registry credentials; anonymous when unset), OCI_INSECURE=1 (plain http; always for localhost),',
        'RERANK_PVC_ROOT (default /mnt/pvc), RERANK_MODEL_CATALOG.',
        '',
        'Bounds: a file whose announced size (Content-Length, a layer\'s size, a tar header) passes a limit, or',
        'the free space, is refused before its bytes are read; one that announces nothing is cut off at the limit.',
        'A refused or failed file leaves nothing behind, except the .part of a transfer a re-run can resume.',
        'A stalled attempt (no connection, no byte within --idle-timeout) is retried, resuming where it stopped.',
      ].join('\n'),
    )
    .action(async (source: string, opts: PullCommandOptions) => {
      const dir = opts.dir ?? defaultDir(source);
      const retries = Number(opts.retries);
      const progress = createProgress(process.stderr);
      try {
        const catalog = await catalogIfPresent();
        const variant = pullVariant(opts.variant, catalog ? findEntry(catalog, source) : undefined);
        const result = await pullModel({
          source,
          dir,
          progress,
          ...(catalog ? { catalog } : {}),
          ...(opts.sha256 ? { sha256: opts.sha256 } : {}),
          ...(opts.file?.length ? { files: opts.file } : {}),
          ...(variant !== 'fp32' ? { variant } : {}),
          ...(Number.isInteger(retries) && retries >= 0 ? { retries } : {}),
          ...pullBounds(opts),
        });
        const summary = result.files.filter((f) => f.outcome !== 'absent').map((f) => `${f.file} (${f.outcome})`).join(', ');
        process.stdout.write(`${result.plan.source} -> ${dir}: ${summary}\n`);
        const entry = result.plan.kind === 'http' ? result.plan.entry : undefined;
        if (entry) {
          process.stdout.write(`${entry.id}: license ${entry.license}, max length ${entry.maxLength}, token_type_ids ${entry.tokenTypeIds ? 'yes' : 'no'}\n`);
        }
      } catch (error) {
        if (!(error instanceof Error)) throw error;
        const known = ['DownloadError', 'ChecksumError', 'ResolveError', 'CatalogError', 'ArchiveError', 'LimitError', 'UnsafeNameError'].includes(error.name) || error instanceof ResolveError;
        process.stderr.write(`models pull: ${known ? error.message : (error.stack ?? error.message)}\n`);
        process.exitCode = 1;
      }
    });

  models
    .command('list')
    .description('print the model catalogue')
    .action(async () => {
      const catalog = await loadCatalog();
      for (const m of catalog.models) {
        const onnx = m.files.some((f) => f.model) ? 'onnx in repo' : m.export?.prepare ? 'needs export + prepare' : 'needs export';
        const head = m.head?.type === 'causal-lm-yes-no' ? `head causal-lm-yes-no (${m.head.template ?? 'no template'})` : 'head cross-encoder';
        process.stdout.write(`${m.id}\t${m.license}\tmax ${m.maxLength}\t${m.tokenTypeIds ? 'token_type_ids' : 'no token_type_ids'}\t${onnx}\tvariants ${entryVariants(m).join(',')}\t${head}\n`);
      }
    });

  addQuantizeCommand(models);
  return models;
}
