import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { installArchive } from './archive.ts';
import { ChecksumError, DownloadError, downloadFile, type DownloadOutcome, type Fetcher } from './download.ts';
import { describeRequestError, readLimited, type Timeouts } from './http-client.ts';
import type { PullBudget } from './limits.ts';
import { joinInside, relativePathProblem } from './names.ts';
import type { Progress } from './progress.ts';
import type { OciReference } from './resolve.ts';

/**
 * oci:// pulls over the OCI Distribution API: the manifest (through an index, if the tag names one), then
 * every layer that carries an `org.opencontainers.image.title` annotation, written under that title —
 * the layout `oras push <ref> model.onnx tokenizer.json` produces. A directory `oras push` packed into
 * one tar+gzip layer (`oras push <ref> model-dir/`) is extracted as the model directory instead, with the
 * checks an https:// archive gets. Each layer is checked against its digest; transfers resume and report
 * progress through the same downloader as hf:// and https://.
 */

export const MEDIA_TYPE = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

const TITLE = 'org.opencontainers.image.title';
/** What `oras push` sets on a directory it packed as one tar.gz layer. */
const UNPACK = 'io.deis.oras.content.unpack';
const ACCEPT = [MEDIA_TYPE.ociManifest, MEDIA_TYPE.ociIndex, MEDIA_TYPE.dockerManifest, MEDIA_TYPE.dockerList].join(', ');
const DIGEST = /^sha256:[a-f0-9]{64}$/;
/** The Distribution spec has registries accept manifests up to 4 MiB; a bigger answer is no manifest. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** A token response, an error body: small JSON documents. */
const MAX_JSON_BYTES = 1024 * 1024;

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string };
}

interface Manifest {
  mediaType?: string;
  manifests?: Descriptor[];
  layers?: Descriptor[];
}

export interface OciPullOptions {
  dir: string;
  sha256?: string;
  fetcher: Fetcher;
  progress: Progress;
  env: Record<string, string | undefined>;
  retries?: number;
  retryDelayMs?: number;
  budget: PullBudget;
  timeouts?: Partial<Timeouts>;
}

export interface OciPulledFile {
  file: string;
  outcome: DownloadOutcome | 'extracted';
  from: string;
}

/** One file of the artifact: the layer and where it lands inside the model directory. */
interface ArtifactFile {
  layer: Descriptor;
  title: string;
  dest: string;
}

/**
 * Requests to one registry with its auth: on a 401 it follows the challenge — a Bearer token from the
 * realm (anonymous, or with OCI_USERNAME/OCI_PASSWORD as Basic credentials), or Basic directly — and
 * retries once. An expired token mid-pull is renewed the same way. The Authorization header goes only to
 * the registry: fetch drops it when a blob redirects to another origin (object storage).
 */
export class RegistryClient {
  readonly #ref: OciReference;
  readonly #fetch: Fetcher;
  readonly #basic: string | undefined;
  #authorization: string | undefined;

  constructor(ref: OciReference, options: { fetcher: Fetcher; env: Record<string, string | undefined> }) {
    this.#ref = ref;
    this.#fetch = options.fetcher;
    const { OCI_USERNAME: user, OCI_PASSWORD: password } = options.env;
    this.#basic = user || password ? `Basic ${Buffer.from(`${user ?? ''}:${password ?? ''}`).toString('base64')}` : undefined;
  }

  /** A Fetcher for downloadFile: the same auth, renewed on a 401. */
  readonly fetcher: Fetcher = async (url, init) => {
    const send = () => this.#fetch(url, { ...init, headers: { ...init.headers, ...(this.#authorization ? { Authorization: this.#authorization } : {}) } });
    const response = await send();
    if (response.status !== 401 || !url.startsWith(`${this.#ref.baseUrl}/`)) return response;
    const challenge = response.headers.get('www-authenticate');
    await response.body?.cancel();
    if (!challenge) return new Response(null, { status: 401, statusText: 'no WWW-Authenticate challenge' });
    await this.#authenticate(challenge);
    return send();
  };

  async #authenticate(challenge: string): Promise<void> {
    const { scheme, params } = parseChallenge(challenge);
    if (scheme === 'basic') {
      if (!this.#basic) throw new DownloadError(`${this.#ref.baseUrl}: the registry asks for credentials; set OCI_USERNAME and OCI_PASSWORD`, { status: 401 });
      this.#authorization = this.#basic;
      return;
    }
    if (scheme !== 'bearer' || !params.realm) throw new DownloadError(`${this.#ref.baseUrl}: unsupported auth challenge "${challenge}"`, { status: 401 });
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    url.searchParams.set('scope', params.scope ?? `repository:${this.#ref.repository}:pull`);
    let response: Response;
    try {
      response = await this.#fetch(url.href, { headers: this.#basic ? { Authorization: this.#basic } : {}, redirect: 'follow' });
    } catch (error) {
      throw new DownloadError(`${url.origin}: token request failed: ${describeRequestError(error)}`, { retryable: true, cause: error });
    }
    if (!response.ok) {
      await response.body?.cancel();
      const hint = this.#basic ? ': check OCI_USERNAME and OCI_PASSWORD' : ': the repository may be private; set OCI_USERNAME and OCI_PASSWORD';
      throw new DownloadError(`${url.origin}: token request answered HTTP ${response.status}${hint}`, {
        status: response.status === 403 ? 403 : 401,
        retryable: response.status >= 500 || response.status === 429,
      });
    }
    let body: { token?: string; access_token?: string };
    try {
      body = JSON.parse((await readLimited(response, MAX_JSON_BYTES, 'the token response')).toString('utf8')) as typeof body;
    } catch (error) {
      throw new DownloadError(`${url.origin}: unreadable token response: ${(error as Error).message}`, { cause: error });
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new DownloadError(`${url.origin}: the token response carries no token`);
    this.#authorization = `Bearer ${token}`;
  }

  /** GET a manifest (or index) by tag or digest; a digest is checked against the bytes received. */
  async manifest(reference: string): Promise<{ digest: string; manifest: Manifest; mediaType: string }> {
    const url = `${this.#ref.baseUrl}/v2/${this.#ref.repository}/manifests/${reference}`;
    const where = `${this.#ref.repository}:${reference}`;
    let response: Response;
    try {
      response = await this.fetcher(url, { headers: { Accept: ACCEPT }, redirect: 'follow' });
    } catch (error) {
      if (error instanceof DownloadError) throw error;
      throw new DownloadError(`${this.#ref.baseUrl}: ${describeRequestError(error)} (GET ${url})`, { retryable: true, cause: error });
    }
    if (!response.ok) {
      const detail = await registryError(response);
      const hint =
        response.status === 404
          ? `: ${reference.startsWith('sha256:') ? 'no manifest with that digest' : `no tag "${reference}"`} in ${this.#ref.repository}`
          : response.status === 401 || response.status === 403
            ? ': not allowed to pull; set OCI_USERNAME and OCI_PASSWORD to credentials that can'
            : '';
      throw new DownloadError(`${where}: HTTP ${response.status}${hint}${detail} (${url})`, {
        status: response.status,
        retryable: response.status >= 500 || response.status === 429,
      });
    }
    let bytes: Buffer;
    try {
      bytes = await readLimited(response, MAX_MANIFEST_BYTES, 'the manifest');
    } catch (error) {
      if (error instanceof RangeError) throw new DownloadError(`${where}: ${error.message} (${url})`, { cause: error });
      throw new DownloadError(`${where}: ${describeRequestError(error)} (GET ${url})`, { retryable: true, cause: error });
    }
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new ChecksumError(`${where}: the registry sent a manifest whose digest is ${digest}`);
    }
    const claimed = response.headers.get('docker-content-digest');
    if (claimed?.startsWith('sha256:') && claimed !== digest) {
      throw new ChecksumError(`${where}: the manifest's digest is ${digest}, the registry says ${claimed}`);
    }
    let manifest: Manifest;
    try {
      manifest = JSON.parse(bytes.toString('utf8')) as Manifest;
    } catch {
      throw new DownloadError(`${where}: the manifest is not JSON`);
    }
    const mediaType = manifest.mediaType ?? response.headers.get('content-type')?.split(';')[0]?.trim() ?? '';
    return { digest, manifest, mediaType };
  }

  blobUrl(digest: string): string {
    return `${this.#ref.baseUrl}/v2/${this.#ref.repository}/blobs/${digest}`;
  }
}

function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const space = header.indexOf(' ');
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  for (const m of header.slice(space + 1).matchAll(/([\w-]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[m[1]!.toLowerCase()] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}

async function registryError(response: Response): Promise<string> {
  try {
    const body = JSON.parse((await readLimited(response, MAX_JSON_BYTES, 'the error')).toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    const first = body.errors?.[0];
    return first ? ` [${[first.code, first.message].filter(Boolean).join(': ')}]` : '';
  } catch {
    return '';
  }
}

const isIndex = (m: Manifest, mediaType: string) => mediaType === MEDIA_TYPE.ociIndex || mediaType === MEDIA_TYPE.dockerList || (!m.layers && Array.isArray(m.manifests));

/** From an index: the linux/amd64 entry, else the first. */
export function chooseManifest(manifests: readonly Descriptor[]): Descriptor | undefined {
  return manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === 'amd64') ?? manifests[0];
}

/** A title is a relative path inside the model directory, each part a plain file name (the check every pulled name gets). */
export function checkTitle(title: string): string | undefined {
  return relativePathProblem(title);
}

/**
 * The artifact's files, checked before anything is fetched; the graph is the file `--sha256` pins. An
 * artifact that is one packed directory is returned as such (its layer is what `--sha256` pins).
 */
function artifactFiles(layers: readonly Descriptor[], source: string, progress: Progress): { files: ArtifactFile[]; model: ArtifactFile } | { packed: ArtifactFile } {
  const files: ArtifactFile[] = [];
  for (const layer of layers) {
    const title = layer.annotations?.[TITLE];
    if (title === undefined) {
      progress.note(`${source}: layer ${layer.digest} has no ${TITLE} annotation, skipped`);
      continue;
    }
    const bad = checkTitle(title);
    if (bad) throw new DownloadError(`${source}: layer title "${title}" ${bad}; refusing to write it`);
    if (!DIGEST.test(layer.digest)) throw new DownloadError(`${source}: layer "${title}" has digest ${layer.digest}; only sha256 is supported`);
    files.push({ layer, title, dest: title });
  }
  if (files.length === 0) throw new DownloadError(`${source}: no layer names a file (${TITLE}); is this an artifact pushed with oras?`);
  const packed = files.filter((f) => f.layer.annotations?.[UNPACK] === 'true');
  if (packed.length === 1 && files.length === 1) return { packed: packed[0]! };
  if (packed.length > 0) {
    throw new DownloadError(`${source}: ${packed.map((f) => `"${f.title}"`).join(', ')} ${packed.length > 1 ? 'are packed directories' : 'is a packed directory'} among other layers; push one directory alone (oras push <ref> model-dir/) or the files one by one`);
  }
  const seen = new Set<string>();
  for (const f of files) {
    if (seen.has(f.dest)) throw new DownloadError(`${source}: two layers are both titled ${f.dest}`);
    seen.add(f.dest);
  }
  // The server reads model.onnx or onnx/model.onnx; a lone graph of another name lands as model.onnx.
  let model = files.find((f) => f.dest === 'model.onnx' || f.dest === 'onnx/model.onnx');
  if (!model) {
    const graphs = files.filter((f) => f.dest.endsWith('.onnx'));
    if (graphs.length === 1 && !seen.has('model.onnx')) {
      model = graphs[0]!;
      model.dest = 'model.onnx';
    }
  }
  const titles = files.map((f) => f.title).join(', ');
  if (!model) throw new DownloadError(`${source}: no model.onnx (or onnx/model.onnx, or a single .onnx file) among ${titles}`);
  if (!seen.has('tokenizer.json')) throw new DownloadError(`${source}: no tokenizer.json among ${titles}`);
  return { files, model };
}

export async function pullOci(source: string, ref: OciReference, options: OciPullOptions): Promise<OciPulledFile[]> {
  const client = new RegistryClient(ref, { env: options.env, fetcher: options.fetcher });
  let { digest, manifest, mediaType } = await client.manifest(ref.reference);
  for (let depth = 0; isIndex(manifest, mediaType); depth++) {
    const chosen = depth < 2 ? chooseManifest(manifest.manifests ?? []) : undefined;
    if (!chosen) throw new DownloadError(`${source}: the index ${digest} lists no manifest to pull`);
    if (!DIGEST.test(chosen.digest)) throw new DownloadError(`${source}: index entry ${chosen.digest}: only sha256 digests are supported`);
    ({ digest, manifest, mediaType } = await client.manifest(chosen.digest));
  }
  if (!Array.isArray(manifest.layers)) throw new DownloadError(`${source}: ${digest} is not an image manifest (${mediaType || 'no media type'})`);
  const artifact = artifactFiles(manifest.layers, source, options.progress);
  if ('packed' in artifact) return pullPacked(client, source, digest, artifact.packed, options);
  const { files, model } = artifact;
  if (options.sha256 && model.layer.digest !== `sha256:${options.sha256}`) {
    throw new ChecksumError(`${source}: ${model.title} is ${model.layer.digest} in manifest ${digest}, expected sha256:${options.sha256}; nothing was downloaded`);
  }
  await checkLayerSizes(source, files, options);
  options.progress.note(`${source}: manifest ${digest}, ${files.length} file(s)`);

  const out: OciPulledFile[] = [];
  for (const f of files) {
    const dest = joinInside(options.dir, f.dest, source);
    await mkdir(path.dirname(dest), { recursive: true });
    const outcome = await downloadBlob(client, f, dest, options);
    if (outcome === 'skipped') options.progress.note(`${f.dest}: already present and verified, skipped`);
    out.push({ file: f.dest, outcome, from: `${f.title}@${f.layer.digest}` });
  }
  return out;
}

/** The manifest announces each layer's size: a pull over the limits, or bigger than the free space, stops before any download. */
async function checkLayerSizes(source: string, files: readonly ArtifactFile[], options: OciPullOptions): Promise<void> {
  const sizes: number[] = [];
  for (const f of files) {
    const size = f.layer.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) continue;
    options.budget.checkFile(`${source}: ${f.title}`, size, true);
    sizes.push(size);
  }
  options.budget.checkPlanned(source, sizes);
  await options.budget.checkFree(options.dir, sizes.reduce((sum, size) => sum + size, 0), source);
}

function downloadBlob(client: RegistryClient, f: ArtifactFile, dest: string, options: OciPullOptions): Promise<DownloadOutcome> {
  return downloadFile(client.blobUrl(f.layer.digest), dest, {
    label: f.title,
    sha256: f.layer.digest.slice('sha256:'.length),
    fetcher: client.fetcher,
    progress: options.progress,
    authHint: 'not allowed to pull; set OCI_USERNAME and OCI_PASSWORD to credentials that can',
    budget: options.budget,
    ...(options.timeouts ? { timeouts: options.timeouts } : {}),
    ...(options.retries !== undefined ? { retries: options.retries } : {}),
    ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
  });
}

/** A directory packed into one layer: the layer is an archive of the model directory; `--sha256` pins the layer. */
async function pullPacked(client: RegistryClient, source: string, manifest: string, f: ArtifactFile, options: OciPullOptions): Promise<OciPulledFile[]> {
  if (options.sha256 && f.layer.digest !== `sha256:${options.sha256}`) {
    throw new ChecksumError(`${source}: the packed directory ${f.title} is ${f.layer.digest} in manifest ${manifest}, expected sha256:${options.sha256}; nothing was downloaded`);
  }
  if (typeof f.layer.size === 'number') options.budget.checkFile(`${source}: ${f.title}`, f.layer.size, true);
  options.progress.note(`${source}: manifest ${manifest}, packed directory ${f.title}`);
  const files = await installArchive({
    dir: options.dir,
    budget: options.budget,
    source,
    name: `${path.posix.basename(f.title)}.tar.gz`,
    sha256: f.layer.digest.slice('sha256:'.length),
    progress: options.progress,
    download: (dest) => downloadBlob(client, f, dest, options),
  });
  return files.map((file) => ({ ...file, from: `${f.title}@${f.layer.digest}` }));
}
