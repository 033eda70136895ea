import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sha256 } from './hub.ts';

export interface RegistryRequest {
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface Stored {
  mediaType: string;
  body: Buffer;
}

export interface PushedFile {
  title?: string;
  body: Buffer;
  annotations?: Record<string, string>;
  /** Serve these bytes instead of `body` (the manifest still names body's digest). */
  served?: Buffer;
}

export interface FakeRegistry {
  /** `127.0.0.1:<port>`: what an oci:// source names. */
  host: string;
  requests: RegistryRequest[];
  tokenRequests: RegistryRequest[];
  /** When set, the token endpoint wants these as Basic credentials. */
  credentials: { username: string; password: string } | undefined;
  /** Blob downloads whose first body is cut half-way. */
  cutOnce: Set<string>;
  /** Blob GETs answer a 307 to another origin (as object storage behind a registry does). */
  redirectBlobs: boolean;
  /** Forget every token issued: the next request with an old one gets a 401. */
  revokeTokens(): void;
  /** Between tests: no tokens, no recorded requests, default behaviour; the next token is token-1. */
  reset(): void;
  pushArtifact(repository: string, tag: string | undefined, files: PushedFile[]): string;
  pushIndex(repository: string, tag: string, entries: Array<{ digest: string; platform?: { os: string; architecture: string } }>): string;
  /** Store raw manifest bytes under a tag or digest (to serve something that does not hash to its name). */
  putManifest(repository: string, reference: string, mediaType: string, body: Buffer): void;
  close(): Promise<void>;
}

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const EMPTY = Buffer.from('{}');

const listen = (server: http.Server) =>
  new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

function serveBytes(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, cut: boolean): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (range) {
    const start = Number(range[1]);
    if (start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
    res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
    res.end(body.subarray(start));
    return;
  }
  res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
  if (cut) {
    res.write(body.subarray(0, Math.floor(body.length / 2)), () => setTimeout(() => res.destroy(), 20));
    return;
  }
  const step = Math.max(1, Math.ceil(body.length / 8));
  for (let i = 0; i < body.length; i += step) res.write(body.subarray(i, i + step));
  res.end();
}

/**
 * An OCI Distribution registry on 127.0.0.1 with the token flow real ones use: `/v2/...` answers 401
 * with a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge until a token from
 * `/token` comes along. Manifests by tag or digest, blobs by digest with Range support.
 */
export async function startFakeRegistry(): Promise<FakeRegistry> {
  const requests: RegistryRequest[] = [];
  const tokenRequests: RegistryRequest[] = [];
  const manifests = new Map<string, Stored>();
  const blobs = new Map<string, Buffer>();
  const tokens = new Set<string>();
  const cutOnce = new Set<string>();
  const state = { credentials: undefined as FakeRegistry['credentials'], redirectBlobs: false, issued: 0 };

  const storage = http.createServer((req, res) => {
    requests.push({ url: `storage:${req.url ?? ''}`, headers: req.headers });
    const digest = decodeURIComponent((req.url ?? '').replace(/^\/objects\//, ''));
    const body = blobs.get(digest);
    if (!body) res.writeHead(404).end();
    else serveBytes(req, res, body, cutOnce.delete(digest));
  });
  const storagePort = await listen(storage);

  let port = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    if (url.pathname === '/token') {
      tokenRequests.push({ url: req.url ?? '', headers: req.headers });
      const want = state.credentials;
      if (want && req.headers.authorization !== `Basic ${Buffer.from(`${want.username}:${want.password}`).toString('base64')}`) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"incorrect username or password"}');
        return;
      }
      const token = `token-${++state.issued}`;
      tokens.add(token);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    requests.push({ url: req.url ?? '', headers: req.headers });
    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    const [, repository, kind, reference] = match as unknown as [string, string, string, string];
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer || !tokens.has(bearer)) {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="fake-registry",scope="repository:${repository}:pull"`,
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      return;
    }
    if (kind === 'manifests') {
      const stored = manifests.get(`${repository}@${reference}`);
      if (!stored) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
        return;
      }
      res.writeHead(200, { 'content-type': stored.mediaType, 'content-length': stored.body.length }).end(stored.body);
      return;
    }
    const body = blobs.get(reference);
    if (!body) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown' }] }));
      return;
    }
    if (state.redirectBlobs) {
      res.writeHead(307, { location: `http://127.0.0.1:${storagePort}/objects/${encodeURIComponent(reference)}` }).end();
      return;
    }
    serveBytes(req, res, body, cutOnce.delete(reference));
  });
  port = await listen(server);

  const putManifest = (repository: string, reference: string, mediaType: string, body: Buffer) => {
    manifests.set(`${repository}@${reference}`, { mediaType, body });
  };
  const store = (repository: string, tag: string | undefined, mediaType: string, document: unknown) => {
    const body = Buffer.from(JSON.stringify(document));
    const digest = `sha256:${sha256(body)}`;
    putManifest(repository, digest, mediaType, body);
    if (tag) putManifest(repository, tag, mediaType, body);
    return digest;
  };

  return {
    host: `127.0.0.1:${port}`,
    requests,
    tokenRequests,
    cutOnce,
    get credentials() {
      return state.credentials;
    },
    set credentials(value) {
      state.credentials = value;
    },
    get redirectBlobs() {
      return state.redirectBlobs;
    },
    set redirectBlobs(value: boolean) {
      state.redirectBlobs = value;
    },
    revokeTokens: () => tokens.clear(),
    reset() {
      tokens.clear();
      state.issued = 0;
      state.credentials = undefined;
      state.redirectBlobs = false;
      cutOnce.clear();
      requests.length = 0;
      tokenRequests.length = 0;
    },
    pushArtifact(repository, tag, files) {
      blobs.set(`sha256:${sha256(EMPTY)}`, EMPTY);
      const layers = files.map((f) => {
        const digest = `sha256:${sha256(f.body)}`;
        blobs.set(digest, f.served ?? f.body);
        const annotations = { ...(f.title !== undefined ? { 'org.opencontainers.image.title': f.title } : {}), ...f.annotations };
        return { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: f.body.length, ...(Object.keys(annotations).length ? { annotations } : {}) };
      });
      return store(repository, tag, MANIFEST, {
        schemaVersion: 2,
        mediaType: MANIFEST,
        artifactType: 'application/vnd.rerank.model.v1',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: `sha256:${sha256(EMPTY)}`, size: 2 },
        layers,
      });
    },
    pushIndex(repository, tag, entries) {
      return store(repository, tag, INDEX, {
        schemaVersion: 2,
        mediaType: INDEX,
        manifests: entries.map((e) => ({ mediaType: MANIFEST, digest: e.digest, size: 0, ...(e.platform ? { platform: e.platform } : {}) })),
      });
    },
    putManifest,
    close: async () => {
      server.closeAllConnections();
      storage.closeAllConnections();
      await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => storage.close(r))]);
    },
  };
}
