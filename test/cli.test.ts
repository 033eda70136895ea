import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { tinyModel } from './support/models.ts';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../server/cli/main.ts');
const run = promisify(execFile);

async function configFile(text: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-cli-'));
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, text);
  return file;
}

describe('rerank-server CLI', () => {
  test('check-config: ok names the hash; a bad file exits 1 naming each bad key', async () => {
    const good = await configFile('defaultVersion: a\nversions:\n  a: {model: ./m}\n');
    const ok = await run(process.execPath, [cli, 'check-config', good]);
    assert.match(ok.stdout, /ok \(hash [0-9a-f]{16}; versions: a\)/);

    const bad = await configFile('defaultVersion: a\nversions:\n  a: {model: ./m, weight: -1}\nserving: {maxBatchSize: "big"}\n');
    await assert.rejects(run(process.execPath, [cli, 'check-config', bad]), (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.match(error.stderr, /versions\.a\.weight/);
      assert.match(error.stderr, /serving\.maxBatchSize/);
      return true;
    });
  });

  test('start serves the config, and SIGTERM finishes in-flight requests before exiting 0', async () => {
    const model = await tinyModel();
    const file = await configFile(`defaultVersion: v1\nversions:\n  v1: {model: ${JSON.stringify(model.dir)}}\nserving: {logLevel: info}\n`);
    const server = spawn(process.execPath, [cli, 'start', '--config', file, '--port', '0', '--host', '127.0.0.1'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(server, 'exit');
    const logs: Array<Record<string, unknown>> = [];
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stdout! }).on('line', (line) => {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'listening') resolve(entry.url as string);
      });
      server.once('exit', (code) => reject(new Error(`server exited early (${code})`)));
    });
    try {
      for (let i = 0; i < 100 && !(await fetch(`${url}/readyz`)).ok; i += 1) await new Promise((r) => setTimeout(r, 50));
      // A request large enough to still be running when the signal arrives.
      const texts = Array.from({ length: 400 }, (_, i) => `document ${i} ${'about rerankers and batching '.repeat(40)}`);
      const inFlight = fetch(`${url}/rerank`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'what is batching?', texts }),
      });
      await new Promise((r) => setTimeout(r, 100));
      server.kill('SIGTERM');
      const response = await inFlight;
      assert.equal(response.status, 200);
      assert.equal(((await response.json()) as unknown[]).length, 400);
      const [code] = await exited;
      assert.equal(code, 0);
      assert.ok(logs.some((entry) => entry.msg === 'shut down'));
      await assert.rejects(fetch(`${url}/healthz`), 'the port is closed after shutdown');
    } finally {
      server.kill('SIGKILL');
    }
  });
});
