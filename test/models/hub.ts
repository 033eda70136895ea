import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubRequest {
  server: 'hub' | 'cdn';
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface FakeHub {
  endpoint: string;
  requests: HubRequest[];
  /** repo path `org/name/rev/file` → content. */
  files: Map<string, Buffer>;
  /** Files whose first body is cut half-way (the socket is destroyed). */
  cutOnce: Set<string>;
  /** Serve 200 with the whole body even when a Range is asked for. */
  ignoreRange: boolean;
  /** Forget requests and files, and serve ranges again: a fresh hub for the next test. */
  reset(): void;
  close(): Promise<void>;
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export function bytes(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = x & 0xff;
  }
  return out;
}

const listen = (server: http.Server) =>
  new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

/**
 * The hub's URL layout on 127.0.0.1: `/{org}/{repo}/resolve/{rev}/{path}` answers a 302 to a second
 * server (another origin, as the hub's CDN is), which serves the bytes with Range support.
 */
export async function startFakeHub(): Promise<FakeHub> {
  const requests: HubRequest[] = [];
  const files = new Map<string, Buffer>();
  const cutOnce = new Set<string>();
  const state = { ignoreRange: false };

  const cdn = http.createServer((req, res) => {
    requests.push({ server: 'cdn', url: req.url ?? '', headers: req.headers });
    const key = decodeURIComponent((req.url ?? '').replace(/^\/blobs\//, ''));
    const body = files.get(key);
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && !state.ignoreRange) {
      const start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, { 'content-length': body.length - start, 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'accept-ranges': 'bytes' });
      res.end(body.subarray(start));
      return;
    }
    res.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes' });
    if (cutOnce.delete(key)) {
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    // Several writes, so a reader sees the bytes arrive in steps.
    const step = Math.max(1, Math.ceil(body.length / 16));
    for (let i = 0; i < body.length; i += step) res.write(body.subarray(i, i + step));
    res.end();
  });
  const cdnPort = await listen(cdn);

  const hub = http.createServer((req, res) => {
    requests.push({ server: 'hub', url: req.url ?? '', headers: req.headers });
    const match = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    const key = `${match[1]}/${decodeURIComponent(match[2] ?? '')}/${decodeURIComponent(match[3] ?? '')}`;
    if (!files.has(key)) {
      res.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end('Entry not found');
      return;
    }
    res.writeHead(302, { location: `http://127.0.0.1:${cdnPort}/blobs/${encodeURIComponent(key)}` }).end();
  });
  const hubPort = await listen(hub);

  return {
    endpoint: `http://127.0.0.1:${hubPort}`,
    requests,
    files,
    cutOnce,
    get ignoreRange() {
      return state.ignoreRange;
    },
    set ignoreRange(value: boolean) {
      state.ignoreRange = value;
    },
    reset() {
      requests.length = 0;
      files.clear();
      cutOnce.clear();
      state.ignoreRange = false;
    },
    close: async () => {
      hub.closeAllConnections();
      cdn.closeAllConnections();
      await Promise.all([new Promise((r) => hub.close(r)), new Promise((r) => cdn.close(r))]);
    },
  };
}
