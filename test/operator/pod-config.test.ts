import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpPodConfigReader } from '../../operator/pod-config.ts';
import type { KubeObject } from '../../operator/kube.ts';

async function serve(handler: http.RequestListener): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const pod = (ip?: string): KubeObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p-0', namespace: 'n' }, status: ip ? { podIP: ip } : {} });

describe('HttpPodConfigReader: GET /config/hash on the pod IP', () => {
  test('reads {hash, appliedAt} from the pod\'s open /config/hash, with no API key', async () => {
    const server = await serve((req, res) => {
      assert.equal(req.url, '/config/hash');
      assert.equal(req.headers.authorization, undefined);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ hash: 'abc123', appliedAt: '2026-01-01T00:00:00Z' }));
    });
    try {
      assert.deepEqual(await new HttpPodConfigReader({ port: server.port }).read(pod('127.0.0.1')), { hash: 'abc123', appliedAt: '2026-01-01T00:00:00Z' });
    } finally {
      await server.close();
    }
  });

  test('a pod of an older image (no /config/hash: 404) is asked GET /config', async () => {
    const asked: string[] = [];
    const server = await serve((req, res) => {
      asked.push(req.url ?? '');
      if (req.url !== '/config') return void res.writeHead(404).end('{"error":"no route"}');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ hash: 'abc123', appliedAt: '2026-01-01T00:00:00Z', config: { defaultVersion: 'a' } }));
    });
    try {
      assert.deepEqual(await new HttpPodConfigReader({ port: server.port }).read(pod('127.0.0.1')), { hash: 'abc123', appliedAt: '2026-01-01T00:00:00Z' });
      assert.deepEqual(asked, ['/config/hash', '/config']);
    } finally {
      await server.close();
    }
  });

  test('a non-200, a body without a hash, a pod without an IP, or a pod too slow to answer: rejected', async () => {
    let mode = 'status';
    const server = await serve((_req, res) => {
      if (mode === 'status') return void res.writeHead(503).end();
      if (mode === 'body') return void res.end('{"ok":true}');
      setTimeout(() => res.end('{}'), 500).unref();
    });
    const reader = new HttpPodConfigReader({ port: server.port, timeoutMs: 100 });
    try {
      await assert.rejects(reader.read(pod('127.0.0.1')), /HTTP 503/);
      mode = 'body';
      await assert.rejects(reader.read(pod('127.0.0.1')), /no hash/);
      await assert.rejects(reader.read(pod()), /has no IP/);
      mode = 'slow';
      await assert.rejects(reader.read(pod('127.0.0.1')), /timeout|aborted/i);
    } finally {
      await server.close();
    }
  });
});
