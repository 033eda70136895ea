import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The CLI's failures: one line on stderr, a non-zero exit, never a stack trace. */

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../server/cli/main.ts');

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stderr's lines, the last newline dropped. */
  lines: string[];
}

async function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; closeStdout?: boolean } = {}): Promise<Outcome> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RERANK_API_KEY: '', RERANK_DEBUG: '', ...options.env } });
  let stdout = '';
  let stderr = '';
  if (options.closeStdout) child.stdout.destroy();
  else child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr, lines: stderr.split('\n').slice(0, -1) };
}

function assertOneLine(outcome: Outcome, pattern: RegExp): void {
  assert.notEqual(outcome.code, 0, 'a non-zero exit');
  assert.equal(outcome.lines.length, 1, `one line on stderr, got:\n${outcome.stderr}`);
  assert.match(outcome.lines[0]!, pattern);
  assert.doesNotMatch(outcome.stderr, /^\s+at /m, 'no stack trace');
}

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function httpServer(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(handler).listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** What reaches the server: GET /info (status; compare too, for the versions it may name) and POST /rerank/<version> (compare). */
const REMOTE_COMMANDS = [['status'], ['compare', '-q', 'q', '-d', 'x', '--versions', 'a']];

const INFO = {
  configHash: '0123456789abcdef',
  defaultVersion: 'a',
  versions: [{ name: 'a', state: 'ready', device: 'cpu', weight: 100, enabled: true, description: 'version a' }],
  devices: [
    { device: 'cpu', versions: ['a'] },
    { device: 'cuda', versions: [], gpus: [{ deviceId: 0, totalMb: 16000, usedMb: 15000, freeMb: 1000 }] },
  ],
};

describe('rerank-server CLI errors', () => {
  test('status and compare against an unreachable server: one line naming the URL', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const outcomes = await Promise.all(REMOTE_COMMANDS.map((args) => runCli([...args, '--url', url])));
    for (const outcome of outcomes) {
      assertOneLine(outcome, new RegExp(`^rerank-server: .*cannot reach ${url.replace(/[.]/g, '\\.')} \\(.*ECONNREFUSED`));
      assert.equal(outcome.code, 1);
    }
  });

  test('status and compare against a server answering 401: one line naming 401 and how to pass the key', async () => {
    const seen: Array<string | undefined> = [];
    const server = await httpServer((request, response) => {
      seen.push(request.headers.authorization);
      response.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'missing or invalid API key' }));
    });
    try {
      const [refused, fromEnv, ...keyless] = await Promise.all([
        runCli(['status', '--url', server.url, '--api-key', 'wrong']),
        runCli(['status', '--url', server.url], { env: { RERANK_API_KEY: 'from-env' } }),
        ...REMOTE_COMMANDS.map((args) => runCli([...args, '--url', server.url])),
      ]);
      for (const outcome of keyless) assertOneLine(outcome, /401 Unauthorized: the server wants an API key: pass --api-key KEY or set RERANK_API_KEY$/);
      assertOneLine(refused!, /401.*refused the API key/);
      assertOneLine(fromEnv!, /401.*refused the API key/);
      assert.deepEqual(seen.filter(Boolean).sort(), ['Bearer from-env', 'Bearer wrong']);
    } finally {
      await server.close();
    }
  });

  test('compare --versions naming versions the server does not have: one line naming them and the configured ones, nothing scored', async () => {
    const asked: string[] = [];
    const server = await httpServer((request, response) => {
      asked.push(`${request.method} ${request.url}`);
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(INFO));
    });
    try {
      const outcome = await runCli(['compare', '-q', 'q', '-d', 'x', '--versions', 'a,typo,nah', '--url', server.url]);
      assertOneLine(outcome, new RegExp(`^rerank-server: compare --versions: no version "typo", "nah": the configured versions are a \\(on ${server.url.replace(/[.]/g, '\\.')}\\)$`));
      assert.equal(outcome.code, 1);
      assert.deepEqual(asked, ['GET /info']);
    } finally {
      await server.close();
    }
  });

  test('start on a port in use: one line naming the port, before any config is written or model loaded', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-cli-port-'));
      // A config whose model directory does not exist: loading it would log (and fail) first.
      const config = path.join(dir, 'config.yaml');
      await writeFile(config, `defaultVersion: v\nversions:\n  v: {model: ${JSON.stringify(path.join(dir, 'no-such-model'))}}\n`);
      // An absent config file would be written (a default one) and its stand-in model generated: neither happens.
      const absent = path.join(dir, 'absent', 'config.yaml');
      const [outcome, local] = await Promise.all([
        runCli(['start', '--config', config, '--port', String(port), '--host', '127.0.0.1']),
        runCli(['start', '--config', absent, '--port', String(port), '--host', '127.0.0.1']),
      ]);
      assertOneLine(outcome!, new RegExp(`^rerank-server: start: port ${port} is already in use on 127\\.0\\.0\\.1 \\(EADDRINUSE\\)`));
      assert.equal(outcome!.stdout, '', 'nothing logged: the config was not even read');
      assertOneLine(local!, new RegExp(`port ${port} is already in use`));
      assert.equal(local!.stdout, '');
      await assert.rejects(access(path.dirname(absent)), 'no default config written');
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  test('status into a closed pipe (`status | head -c 1`): no stack trace, a non-zero exit', async () => {
    // /info answers late, so the reader is gone before the CLI writes a byte.
    const server = await httpServer((_request, response) => {
      setTimeout(() => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(INFO)), 300);
    });
    try {
      const [outcome, whole] = await Promise.all([runCli(['status', '--url', server.url], { closeStdout: true }), runCli(['status', '--url', server.url])]);
      assertOneLine(outcome!, /EPIPE/);
      // The same server, read to the end: the output is whole.
      assert.equal(whole!.code, 0, whole!.stderr);
      assert.match(whole!.stdout, /config 0123456789abcdef/);
      assert.match(whole!.stdout, /^a \(default\)\s+ready\s+cpu\s+100/m);
      assert.match(whole!.stdout, /^devices: cpu \(a\); cuda: GPU 0 1000\/16000 MiB free \(no version\)$/m);
    } finally {
      await server.close();
    }
  });

  test('a server that is not a rerank-server: one line', async () => {
    const server = await httpServer((_request, response) => response.writeHead(404, { 'content-type': 'text/html' }).end('<!DOCTYPE html>\n<p>nope</p>'));
    try {
      assertOneLine(await runCli(['status', '--url', server.url]), /^rerank-server: GET \/info: 404 Not Found$/);
    } finally {
      await server.close();
    }
  });

  test('export --format yaml names the supported formats; check-config of a missing file says why', async () => {
    const [exported, missing] = await Promise.all([
      runCli(['export', '--format', 'yaml']),
      runCli(['check-config', path.join(os.tmpdir(), 'rerank-no-such-config.yaml')]),
    ]);
    assert.equal(exported!.code, 1);
    assert.match(exported!.lines[0]!, /unknown format "yaml"; supported formats: openapi/);
    assert.doesNotMatch(exported!.stderr, /^\s+at /m);
    assertOneLine(missing!, /^check-config: cannot read .*rerank-no-such-config\.yaml \(ENOENT: no such file\)$/);
  });
});
