import path from 'node:path';
import { isArchiveName } from './archive.ts';
import { entryFiles, findEntry, VARIANT_DEST, type Catalog, type CatalogEntry, type PullVariant } from './catalog.ts';
import { fileNameProblem, relativePathProblem } from './names.ts';

/** One file to fetch: the first candidate URL that exists wins (a repo keeps its graph in onnx/ or at the top). */
export interface FileSpec {
  /** Repo paths (or the URL) tried in order; shown in progress and errors. */
  candidates: Array<{ label: string; url: string }>;
  /** Name inside the model directory. */
  dest: string;
  sha256?: string;
  optional?: boolean;
  model?: boolean;
  /** Added to the error when no candidate exists (how to export an ONNX graph). */
  hint?: string;
}

/** oci://host[:port]/repository[:tag][@sha256:digest], as the Distribution API addresses it. */
export interface OciReference {
  /** `https://host[:port]`, or `http://` for a registry on loopback or with OCI_INSECURE=1. */
  baseUrl: string;
  repository: string;
  /** A tag, or `sha256:<hex>` (a digest wins over a tag when both are given). */
  reference: string;
}

export type PullPlan =
  | { kind: 'http'; source: string; files: FileSpec[]; headers: Record<string, string>; entry?: CatalogEntry }
  /** An https:// .tar.gz/.tgz/.tar of a model directory: downloaded, checked, extracted; `sha256` pins the archive. */
  | { kind: 'archive'; source: string; url: string; name: string; sha256?: string }
  /** pvc://claim/path, read from the claim the operator mounts read-only at `<root>/<claim>`. */
  | { kind: 'pvc'; source: string; path: string; sha256?: string }
  /** An OCI artifact whose layers are files named by their `org.opencontainers.image.title` (what `oras push` makes). */
  | { kind: 'oci'; source: string; ref: OciReference; sha256?: string };

export class ResolveError extends Error {
  override name = 'ResolveError';
}

export interface ResolveOptions {
  catalog?: Catalog;
  /** Repo paths to fetch instead of the catalogue's (or the default) list. */
  files?: string[];
  /** Expected sha256 of the model file (of the archive, for an archive source). */
  sha256?: string;
  /** Which export of an hf:// model to fetch (default fp32): the catalogue's files of it, or the usual names. */
  variant?: PullVariant;
  env?: Record<string, string | undefined>;
}

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
/** Where the operator mounts a `pvc://` source's claim (operator/plan/workloads.ts). */
export const DEFAULT_PVC_ROOT = '/mnt/pvc';

/** hf://org/name[@revision] → repo and revision (default `main`). */
export function parseHfSource(source: string): { repo: string; revision: string } {
  const match = /^(?:hf:\/\/)?([\w.-]+(?:\/[\w.-]+)?)(?:@(.+))?$/.exec(source);
  if (!match?.[1]) throw new ResolveError(`"${source}" is not an hf://org/name[@revision] source`);
  return { repo: match[1], revision: match[2] ?? 'main' };
}

export function hubFileUrl(endpoint: string, repo: string, revision: string, file: string): string {
  const encodedPath = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${repo}/resolve/${encodeURIComponent(revision)}/${encodedPath}`;
}

function destOf(file: string): string {
  return path.posix.basename(file);
}

export function resolveSource(input: string, options: ResolveOptions = {}): PullPlan {
  const env = options.env ?? process.env;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(input)?.[1]?.toLowerCase();
  if (scheme === 'oci') return resolveOci(input, options, env);
  if (scheme === 'pvc') return resolvePvc(input, options, env);
  if (scheme === 'https' || scheme === 'http') return resolveUrl(input, options);
  if (scheme !== undefined && scheme !== 'hf') {
    throw new ResolveError(`${input}: unknown source scheme "${scheme}://" (hf://, https://, pvc://, oci://, or a catalogue id)`);
  }
  return resolveHf(input, options, env);
}

function resolveHf(input: string, options: ResolveOptions, env: Record<string, string | undefined>): PullPlan {
  const entry = options.catalog ? findEntry(options.catalog, input) : undefined;
  if (scheme(input) === undefined && !entry) {
    if (!/^[\w.-]+\/[\w.-]+(@.+)?$/.test(input)) {
      throw new ResolveError(`${input}: not a catalogue id and not a source (hf://org/name[@revision], https://, pvc://, oci://)`);
    }
  }
  // A catalogue id pulls the catalogue's source (and revision) unless the input names its own revision.
  const fromInput = parseHfSource(input);
  const { repo, revision } = entry && !input.includes('@') ? parseHfSource(entry.source) : fromInput;
  const endpoint = env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT;
  const url = (file: string) => ({ label: file, url: hubFileUrl(endpoint, repo, revision, file) });

  let files: FileSpec[];
  if (options.files?.length) {
    const firstOnnx = options.files.find((f) => f.endsWith('.onnx'));
    files = options.files.map((f) => ({ candidates: [url(f)], dest: destOf(f), ...(f === firstOnnx ? { model: true } : {}) }));
  } else if (entry) {
    files = [];
    if (!entry.files.some((f) => f.model) && (options.variant ?? 'fp32') === 'fp32') {
      // The repo is not known to ship a graph: look where exports usually land, and say how to make one.
      files.push({
        candidates: [url('onnx/model.onnx'), url('model.onnx')],
        dest: 'model.onnx',
        model: true,
        hint:
          `${entry.id} ships no ONNX graph; export one:\n  ${entry.export?.command ?? `optimum-cli export onnx --model ${entry.id} --task text-classification out/`}\n` +
          `then serve the export (${(entry.export?.produces ?? ['model.onnx', 'tokenizer.json']).join(', ')}) from pvc://, oci:// (oras push), https:// (a .tar.gz of it), ` +
          'or an hf:// repo of your own (models pull hf://you/repo --file model.onnx --file tokenizer.json ...)',
      });
    }
    let listed;
    try {
      listed = entryFiles(entry, options.variant);
    } catch (error) {
      throw new ResolveError((error as Error).message);
    }
    files.push(...listed.map((f) => ({
      candidates: f.paths.map(url),
      dest: f.dest,
      ...(f.sha256 ? { sha256: f.sha256 } : {}),
      ...(f.optional ? { optional: true } : {}),
      ...(f.model ? { model: true } : {}),
    })));
  } else {
    const variant = options.variant ?? 'fp32';
    files = [
      variant === 'fp32'
        ? { candidates: [url('onnx/model.onnx'), url('model.onnx')], dest: 'model.onnx', model: true }
        : { candidates: variantNames(variant).flatMap((n) => [url(`onnx/${n}`), url(n)]), dest: VARIANT_DEST[variant], model: true },
      { candidates: [url('tokenizer.json')], dest: 'tokenizer.json' },
      { candidates: [url('config.json')], dest: 'config.json', optional: true },
    ];
  }
  applySha(files, options.sha256, input);
  checkDestinations(files, input);
  const headers: Record<string, string> = env.HF_TOKEN ? { Authorization: `Bearer ${env.HF_TOKEN}` } : {};
  return { kind: 'http', source: `hf://${repo}@${revision}`, files, headers, ...(entry ? { entry } : {}) };
}

/** Where repos keep an int8 or fp16 export, in the order a pull tries them. */
function variantNames(variant: 'int8' | 'fp16'): string[] {
  return variant === 'int8' ? ['model_int8.onnx', 'model_qint8_avx512_vnni.onnx', 'model_quantized.onnx'] : ['model_fp16.onnx'];
}

function scheme(input: string): string | undefined {
  return /^([a-z][a-z0-9+.-]*):\/\//i.exec(input)?.[1];
}

function resolveUrl(input: string, options: ResolveOptions): PullPlan {
  if (options.files?.length) throw new ResolveError(`${input}: --file applies to hf:// sources; an https:// source is one file or one archive`);
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new ResolveError(`${input}: not a valid URL`);
  }
  const segment = path.posix.basename(url.pathname);
  if (!segment) throw new ResolveError(`${input}: the URL names no file`);
  let base: string;
  try {
    base = decodeURIComponent(segment);
  } catch {
    throw new ResolveError(`${input}: the file name "${segment}" is not valid percent-encoding`);
  }
  // The name becomes a path in --dir (and the archive's name beside it): "..%2F..%2Fx" may not climb out.
  const problem = fileNameProblem(base);
  if (problem) throw new ResolveError(`${input}: the file name "${base}" ${problem}; refusing to write it`);
  if (isArchiveName(base)) {
    if (options.sha256 && !/^[a-fA-F0-9]{64}$/.test(options.sha256)) throw new ResolveError(`--sha256 ${options.sha256}: not 64 hex digits`);
    return { kind: 'archive', source: url.href, url: url.href, name: base, ...(options.sha256 ? { sha256: options.sha256.toLowerCase() } : {}) };
  }
  // The server reads <dir>/model.onnx: a lone graph lands there whatever the URL calls it.
  const dest = base.endsWith('.onnx') ? 'model.onnx' : base;
  const files: FileSpec[] = [{ candidates: [{ label: base, url: url.href }], dest, model: true }];
  applySha(files, options.sha256, input);
  return { kind: 'http', source: url.href, files, headers: {} };
}

function resolvePvc(input: string, options: ResolveOptions, env: Record<string, string | undefined>): PullPlan {
  const match = /^pvc:\/\/([^/]+)(\/.*)?$/.exec(input);
  if (!match?.[1]) throw new ResolveError(`${input}: not a pvc://<claim>/<path> source`);
  const rest = (match[2] ?? '/').replace(/^\/+/, '');
  if (rest.split('/').includes('..')) throw new ResolveError(`${input}: the path may not leave the claim`);
  if (options.files?.length) throw new ResolveError(`${input}: --file applies to hf:// sources`);
  const root = env.RERANK_PVC_ROOT || DEFAULT_PVC_ROOT;
  return { kind: 'pvc', source: input, path: path.join(root, match[1], rest), ...(options.sha256 ? { sha256: options.sha256.toLowerCase() } : {}) };
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Docker Hub's registry answers at another host than its name. */
const REGISTRY_ALIASES: Record<string, string> = { 'docker.io': 'registry-1.docker.io', 'index.docker.io': 'registry-1.docker.io' };

export function parseOciSource(input: string, env: Record<string, string | undefined> = {}): OciReference {
  const match = /^oci:\/\/([^/]+)\/(.+)$/i.exec(input);
  if (!match?.[1] || !match[2]) throw new ResolveError(`${input}: not an oci://host[:port]/repository[:tag|@sha256:digest] source`);
  let host = match[1].toLowerCase();
  let rest = match[2];
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new ResolveError(`${input}: the digest must be sha256:<64 lower-case hex digits>`);
  }
  // A tag follows the last ":" after the last "/"; earlier colons cannot occur (the port is in the host).
  const colon = rest.lastIndexOf(':');
  const tag = colon > rest.lastIndexOf('/') ? rest.slice(colon + 1) : undefined;
  const repository = tag === undefined ? rest : rest.slice(0, colon);
  if (!/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(repository)) {
    throw new ResolveError(`${input}: "${repository}" is not a repository name (lower-case path components)`);
  }
  if (tag !== undefined && !/^[\w][\w.-]{0,127}$/.test(tag)) throw new ResolveError(`${input}: "${tag}" is not a tag`);
  host = REGISTRY_ALIASES[host] ?? host;
  const hostname = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  const insecure = LOOPBACK.has(hostname) || env.OCI_INSECURE === '1' || env.OCI_INSECURE === 'true';
  return { baseUrl: `${insecure ? 'http' : 'https'}://${host}`, repository, reference: digest ?? tag ?? 'latest' };
}

function resolveOci(input: string, options: ResolveOptions, env: Record<string, string | undefined>): PullPlan {
  if (options.files?.length) throw new ResolveError(`${input}: --file applies to hf:// sources; an oci:// artifact names its own files`);
  if (options.sha256 && !/^[a-fA-F0-9]{64}$/.test(options.sha256)) throw new ResolveError(`--sha256 ${options.sha256}: not 64 hex digits`);
  const ref = parseOciSource(input, env);
  const host = ref.baseUrl.replace(/^https?:\/\//, '');
  const source = `oci://${host}/${ref.repository}${ref.reference.startsWith('sha256:') ? '@' : ':'}${ref.reference}`;
  return { kind: 'oci', source, ref, ...(options.sha256 ? { sha256: options.sha256.toLowerCase() } : {}) };
}

function applySha(files: FileSpec[], sha256: string | undefined, input: string): void {
  if (!sha256) return;
  if (!/^[a-fA-F0-9]{64}$/.test(sha256)) throw new ResolveError(`--sha256 ${sha256}: not 64 hex digits`);
  const target = files.find((f) => f.model) ?? (files.length === 1 ? files[0] : undefined);
  if (!target) throw new ResolveError(`${input}: --sha256 checks the model file, and none of the files is an .onnx graph`);
  target.sha256 = sha256.toLowerCase();
}

function checkDestinations(files: FileSpec[], input: string): void {
  const seen = new Set<string>();
  for (const f of files) {
    for (const { label } of f.candidates) {
      const problem = relativePathProblem(label);
      if (problem) throw new ResolveError(`${input}: the repo path "${label}" ${problem}`);
    }
    const problem = fileNameProblem(f.dest);
    if (problem) throw new ResolveError(`${input}: the file name "${f.dest}" ${problem}; refusing to write it`);
    if (seen.has(f.dest)) throw new ResolveError(`${input}: two files would both be written as ${f.dest}`);
    seen.add(f.dest);
  }
}
