import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { configYaml, fakeUpstream, routerYaml } from './router/harness.ts';
import { tinyModel } from './support/models.ts';

/**
 * SIGTERM on a real `rerank-server start` and `rerank-server router` while a keep-alive client keeps
 * sending: the request in flight is answered, every answer after the signal says Connection: close, and
 * the process exits well within its drain time rather than being kept alive by the client.
 */

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../server/cli/main.ts');
// Far above what the in-flight request takes on a loaded machine: exiting before it proves the drain ended on its own.
const DRAIN_MS = 20_000;

interface Running {
  child: ChildProcess;
  url: string;
  logs: Array<Record<string, unknown>>;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

async function spawnCli(args: string[], listeningMessage: string): Promise<Running> {
  const child = spawn(process.execPath, [cli, ...args, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  // Exited, and every log line it wrote read.
  const exited = Promise.all([once(child, 'exit'), once(child.stdout!, 'close')]).then(([exit]) => exit as [number | null, NodeJS.Signals | null]);
  const logs: Array<Record<string, unknown>> = [];
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === listeningMessage) resolve(entry.url as string);
    });
    child.once('exit', (code) => reject(new Error(`exited early (${code})`)));
  });
  for (let i = 0; i < 200 && (await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) !== 200; i += 1) await sleep(50);
  return { child, url, logs, exited };
}

interface Answer {
  status: number;
  connection: string | undefined;
  requestId: string | undefined;
}

/** POSTs back to back over one keep-alive connection (a new one after each close) until `stop()` or the port refuses. */
function keepSending(url: string, body: string): { answers: Answer[]; refused: Promise<void>; stop(): void } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const answers: Answer[] = [];
  let stopped = false;
  const refused = (async () => {
    while (!stopped) {
      const outcome = await new Promise<Answer | Error>((resolve) => {
        const req = http.request(`${url}/rerank`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
          const requestId = res.headers['x-request-id'];
          const answer = { status: res.statusCode ?? 0, connection: res.headers.connection, requestId: typeof requestId === 'string' ? requestId : undefined };
          res.resume().on('end', () => resolve(answer));
        });
        req.on('error', resolve);
        req.end(body);
      });
      if (outcome instanceof Error) break;
      answers.push(outcome);
    }
    agent.destroy();
  })();
  return { answers, refused, stop: () => (stopped = true) };
}

async function signalWhileSending(running: Running, inFlight: () => Promise<Response>): Promise<void> {
  const small = JSON.stringify({ query: 'q', texts: ['a short one', 'another'] });
  const client = keepSending(running.url, small);
  try {
    await sleep(300);
    assert.ok(client.answers.length > 0 && client.answers.every((a) => a.status === 200 && a.connection === 'keep-alive'));
    const pending = inFlight();
    await sleep(100);
    const signalled = performance.now();
    running.child.kill('SIGTERM');
    const response = await pending;
    assert.equal(response.status, 200, 'the request in flight is answered');
    assert.equal(response.headers.get('connection'), 'close');
    await response.text();
    const [code] = await running.exited;
    const exitMs = performance.now() - signalled;
    assert.equal(code, 0);
    assert.ok(exitMs < DRAIN_MS, `exited ${Math.round(exitMs)} ms after SIGTERM, within the drain time of ${DRAIN_MS} ms`);
    await client.refused;
    // Which answers the server made once draining: those whose access-log line follows its shutdown line
    // (the signal reaches the process a little after kill(), so the client's clock cannot tell).
    const drainStart = running.logs.findIndex((entry) => String(entry.msg).startsWith('shutting down'));
    assert.ok(drainStart >= 0);
    const madeWhileDraining = new Set(running.logs.slice(drainStart).filter((entry) => entry.msg === 'request').map((entry) => entry.reqId));
    const after = client.answers.filter((answer) => madeWhileDraining.has(answer.requestId));
    assert.ok(after.every((answer) => answer.connection === 'close'), `answers made while draining: ${JSON.stringify(after)}`);
    const before = client.answers.filter((answer) => !madeWhileDraining.has(answer.requestId));
    assert.ok(before.every((answer) => answer.connection === 'keep-alive'), 'before the drain, the connection was kept');
    assert.ok(running.logs.some((entry) => entry.msg === 'shut down'));
    assert.ok(!running.logs.some((entry) => entry.msg === 'drain time is up: closing the connections left, their requests unanswered'));
  } finally {
    client.stop();
    running.child.kill('SIGKILL');
  }
}

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'rerank-shutdown-'));
}

describe('SIGTERM under a keep-alive client that keeps sending', () => {
  test('rerank-server start: in-flight answered, Connection: close after the signal, exits within the drain time', async () => {
    const model = await tinyModel();
    const dir = await tempDir();
    const file = path.join(dir, 'config.yaml');
    await writeFile(file, `defaultVersion: v1\nversions:\n  v1: {model: ${JSON.stringify(model.dir)}}\nserving: {drainTimeoutMs: ${DRAIN_MS}}\n`);
    const running = await spawnCli(['start', '--config', file], 'listening');
    // Large enough to still be running when the signal arrives.
    const texts = Array.from({ length: 200 }, (_, i) => `document ${i} ${'about rerankers and batching '.repeat(40)}`);
    await signalWhileSending(running, () =>
      fetch(`${running.url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'batching?', texts }) }),
    );
  });

  test('rerank-server router: the same', async () => {
    const upstream = await fakeUpstream('v1');
    const dir = await tempDir();
    const configFile = path.join(dir, 'config.yaml');
    const routerFile = path.join(dir, 'router.yaml');
    await writeFile(configFile, configYaml({ v1: { weight: 100 } }, 'v1', { drainTimeoutMs: DRAIN_MS }));
    await writeFile(routerFile, routerYaml({ v1: upstream.url }));
    try {
      const running = await spawnCli(['router', '--config', configFile, '--router-config', routerFile], 'router listening');
      // The in-flight one: the upstream holds it for a while (set just before sending it, after the small ones flowed).
      await signalWhileSending(running, () => {
        upstream.delayMs = 1500;
        return fetch(`${running.url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'q', texts: ['slow'] }) });
      });
    } finally {
      await upstream.close();
    }
  });
});
