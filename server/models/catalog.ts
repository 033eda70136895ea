import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { load } from 'js-yaml';
import { z } from 'zod';
import { HeadSchema } from '../config/head.ts';
import { formatIssues } from '../errors.ts';
import { PACKAGE_ROOT } from '../package-root.ts';

/** The catalogue shipped with the project; `RERANK_MODEL_CATALOG` points elsewhere. */
export const DEFAULT_CATALOG = path.join(PACKAGE_ROOT, 'models/catalog.yaml');

const Sha256 = z.string().regex(/^[a-f0-9]{64}$/, 'a sha256 is 64 lower-case hex digits');

export const CatalogFileSchema = z.strictObject({
  /** Path inside the repo; the file lands in the model directory under its basename. */
  path: z.string().min(1).refine((p) => !p.startsWith('/') && !p.split('/').includes('..'), 'a relative repo path'),
  /** The ONNX graph: what `--sha256` and a RerankerConfig's `model.sha256` check. */
  model: z.boolean().optional(),
  optional: z.boolean().optional(),
  sha256: Sha256.optional(),
  /** This file is the model's int8 or fp16 export (fetched by `models pull --variant`); absent: fp32, or not a graph. */
  variant: z.enum(['int8', 'fp16']).optional(),
});

export const CatalogEntrySchema = z
  .strictObject({
    id: z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'org/name'),
    source: z.string().regex(/^hf:\/\/[\w.-]+\/[\w.-]+(@[\w./-]+)?$/, 'hf://org/name[@revision]'),
    license: z.string().min(1),
    architecture: z.string().min(1),
    maxLength: z.number().int().positive(),
    tokenTypeIds: z.boolean(),
    files: z.array(CatalogFileSchema).min(1),
    export: z
      .strictObject({
        command: z.string().startsWith('optimum-cli export onnx '),
        produces: z.array(z.string().min(1)).min(1),
        /** LLM rerankers: the cut of the exported graph to [batch, 2] yes/no logits. */
        prepare: z.string().startsWith('rerank-server models prepare ').optional(),
      })
      .optional(),
    /** How the server scores with it; absent: a cross-encoder. A version's own `head` overrides it. */
    head: HeadSchema.optional(),
    /** What serving it takes, in words (weights in memory per precision). */
    memory: z.string().min(1).optional(),
  })
  .superRefine((entry, ctx) => {
    const models = entry.files.filter((f) => f.model);
    if (models.length > 1) ctx.addIssue({ code: 'custom', message: 'at most one file is the model', path: ['files'] });
    if (models.length === 0 && !entry.export) {
      ctx.addIssue({ code: 'custom', message: 'an entry needs a model file in its repo, or an export recipe', path: ['files'] });
    }
    if (!entry.files.some((f) => f.path.endsWith('tokenizer.json'))) {
      ctx.addIssue({ code: 'custom', message: 'tokenizer.json is required', path: ['files'] });
    }
  });

export const CatalogSchema = z
  .strictObject({ models: z.array(CatalogEntrySchema).min(1) })
  .superRefine((catalog, ctx) => {
    const seen = new Set<string>();
    catalog.models.forEach((m, i) => {
      if (seen.has(m.id)) ctx.addIssue({ code: 'custom', message: `duplicate id ${m.id}`, path: ['models', i, 'id'] });
      seen.add(m.id);
    });
  });

export type CatalogFile = z.infer<typeof CatalogFileSchema>;
export type CatalogEntry = z.infer<typeof CatalogEntrySchema>;
export type Catalog = z.infer<typeof CatalogSchema>;

export class CatalogError extends Error {
  override name = 'CatalogError';
}

export type PullVariant = 'fp32' | 'int8' | 'fp16';

/** Where an int8 or fp16 export lands, whatever the repo calls it: the first name the server looks for. */
export const VARIANT_DEST: Readonly<Record<'int8' | 'fp16', string>> = { int8: 'model_int8.onnx', fp16: 'model_fp16.onnx' };

/** One file of a pull: the first of `paths` the repo has wins, saved as `dest`. */
export interface EntryFile {
  paths: string[];
  dest: string;
  sha256?: string;
  optional?: boolean;
  model?: boolean;
}

/** The exports an entry lists: fp32 when it has a model file or an export recipe, and each variant it has files for. */
export function entryVariants(entry: CatalogEntry): PullVariant[] {
  const out: PullVariant[] = entry.files.some((f) => f.model) || entry.export ? ['fp32'] : [];
  for (const variant of ['int8', 'fp16'] as const) if (entry.files.some((f) => f.variant === variant)) out.push(variant);
  return out;
}

/**
 * What a pull of one export fetches: the files that are not graphs, and that export's graph. An int8 or
 * fp16 export may be listed under several names (model_qint8_avx512_vnni.onnx, model_quantized.onnx):
 * the first the repo has is saved under VARIANT_DEST; the graph is required even where the catalogue marks
 * its names optional (unsure which the repo has).
 */
export function entryFiles(entry: CatalogEntry, variant: PullVariant = 'fp32'): EntryFile[] {
  const plain = (f: CatalogFile): EntryFile => ({
    paths: [f.path],
    dest: path.posix.basename(f.path),
    ...(f.sha256 ? { sha256: f.sha256 } : {}),
    ...(f.optional ? { optional: true } : {}),
    ...(f.model ? { model: true } : {}),
  });
  const common = entry.files.filter((f) => !f.model && f.variant === undefined).map(plain);
  if (variant === 'fp32') return entry.files.filter((f) => f.variant === undefined).map(plain);
  const names = entry.files.filter((f) => f.variant === variant);
  if (names.length === 0) {
    const advice = variant === 'int8' ? ': pull the fp32 model and run `rerank-server models quantize DIR`' : '';
    throw new CatalogError(`${entry.id}: the catalogue lists no ${variant} export${advice}`);
  }
  const only = names.length === 1 ? names[0] : undefined;
  return [{ paths: names.map((f) => f.path), dest: VARIANT_DEST[variant], model: true, ...(only?.sha256 ? { sha256: only.sha256 } : {}) }, ...common];
}

export function parseCatalog(text: string, source = 'catalog'): Catalog {
  const parsed = CatalogSchema.safeParse(load(text));
  if (!parsed.success) {
    const issues = formatIssues(parsed.error.issues);
    throw new CatalogError(`${source}: invalid model catalogue:\n  - ${issues.join('\n  - ')}`);
  }
  return parsed.data;
}

export async function loadCatalog(file = process.env.RERANK_MODEL_CATALOG ?? DEFAULT_CATALOG): Promise<Catalog> {
  return parseCatalog(await readFile(file, 'utf8'), file);
}

/**
 * The entry an id names: its full id (`BAAI/bge-reranker-v2-m3`) or hf:// source, or its short name
 * (`bge-reranker-v2-m3`) when exactly one entry has it. A short name that several entries share is an
 * error naming them.
 */
export function findEntry(catalog: Catalog, idOrSource: string): CatalogEntry | undefined {
  const bare = idOrSource.replace(/^hf:\/\//, '').replace(/@.*$/, '');
  const exact = catalog.models.find((m) => m.id === bare || m.source.replace(/^hf:\/\//, '').replace(/@.*$/, '') === bare);
  if (exact || bare.includes('/')) return exact;
  const byShortName = catalog.models.filter((m) => m.id.split('/').pop() === bare);
  if (byShortName.length > 1) {
    throw new CatalogError(`"${bare}" names ${byShortName.length} catalogue entries (${byShortName.map((m) => m.id).join(', ')}): give the full id`);
  }
  return byShortName[0];
}
