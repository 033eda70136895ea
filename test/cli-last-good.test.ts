import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, readFile, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { metricSum } from '../bench/stats.ts';
import { tinyModel } from './support/models.ts';

/**
 * A real `rerank-server start` keeps the last good config beside the file it serves, and a process that
 * restarts on a broken file serves that copy, says so in /info, /config and the metrics, and applies the
 * file once it is fixed.
 */

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../server/cli/main.ts');
const run = promisify(execFile);

interface Running {
  child: ChildProcess;
  url: string;
  logs: Array<Record<string, unknown>>;
}

async function startServer(file: string, stateDir: string): Promise<Running> {
  const args = [cli, 'start', '--config', file, '--state-dir', stateDir, '--poll-interval', '100', '--port', '0', '--host', '127.0.0.1'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const logs: Array<Record<string, unknown>> = [];
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === 'listening') resolve(entry.url as string);
    });
    child.once('exit', (code) => reject(new Error(`exited early (${code})`)));
  });
  for (let i = 0; i < 200 && (await fetch(`${url}/readyz`).then((r) => r.status, () => 0)) !== 200; i += 1) await sleep(50);
  return { child, url, logs };
}

async function stop(server: Running): Promise<void> {
  const exited = once(server.child, 'exit');
  server.child.kill('SIGTERM');
  await exited;
}

async function until<T>(read: () => Promise<T>, check: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) assert.fail(`${what}: not in time (last: ${JSON.stringify(value)})`);
    await sleep(50);
  }
}

interface ConfigStatus {
  hash: string;
  config: { serving: { topK?: number } };
  lastError?: { issues: string[] };
  lastGood?: { file?: string };
  startedOnLastGood?: { copy: string; issues: string[] };
}

describe('rerank-server start with a last good config', () => {
  test('a restart on a broken file serves the last good config, says so, and applies the file once it is fixed', async () => {
    const model = await tinyModel();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-last-good-cli-'));
    const stateDir = path.join(dir, 'state');
    const file = path.join(dir, 'config.yaml');
    const config = (topK: number) => `defaultVersion: v1\nversions:\n  v1: {model: ${JSON.stringify(model.dir)}}\nserving: {topK: ${topK}, logLevel: info}\n`;
    const replace = async (text: string) => {
      await writeFile(`${file}.tmp`, text);
      await rename(`${file}.tmp`, file);
    };
    await writeFile(file, config(5));

    const first = await startServer(file, stateDir);
    try {
      assert.equal(await readFile(`${file}.last-good`, 'utf8'), config(5));
    } finally {
      await stop(first);
    }

    await replace(config(5).replace('logLevel: info', 'maxBatchSize: big'));
    const second = await startServer(file, stateDir);
    try {
      const warning = second.logs.find((entry) => /starting on the last good config/.test(String(entry.msg)));
      assert.ok(warning, 'the start says it serves the last good copy');
      assert.match(String(warning.msg), /serving\.maxBatchSize/);

      const rerank = await fetch(`${second.url}/rerank`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'what is a reranker?', texts: ['a reranker orders documents', 'bananas'] }),
      });
      assert.equal(rerank.status, 200);

      const info = (await (await fetch(`${second.url}/info`)).json()) as { notices: string[] };
      assert.ok(
        info.notices.some((notice) => notice.includes(`config file ${file} is invalid`) && notice.includes('serving.maxBatchSize') && notice.includes(`${file}.last-good`)),
        JSON.stringify(info.notices),
      );
      const status = (await (await fetch(`${second.url}/config`)).json()) as ConfigStatus;
      assert.equal(status.config.serving.topK, 5);
      assert.match(status.lastError?.issues.join() ?? '', /serving\.maxBatchSize/);
      assert.equal(status.startedOnLastGood?.copy, `${file}.last-good`);
      const metrics = await (await fetch(`${second.url}/metrics`)).text();
      assert.equal(metricSum(metrics, 'reranker_config_last_reload_successful'), 0);
      assert.equal(metricSum(metrics, 'reranker_config_reloads_total', 'result="error"'), 1);
      // The copy is still the good config, not the broken file.
      assert.equal(await readFile(`${file}.last-good`, 'utf8'), config(5));

      await replace(config(3));
      const fixed = await until(
        async () => (await (await fetch(`${second.url}/config`)).json()) as ConfigStatus,
        (s) => s.config.serving.topK === 3,
        'the fixed file applied',
      );
      assert.equal(fixed.startedOnLastGood, undefined);
      assert.equal(fixed.lastError, undefined);
      const after = await (await fetch(`${second.url}/metrics`)).text();
      assert.equal(metricSum(after, 'reranker_config_last_reload_successful'), 1);
      const notices = ((await (await fetch(`${second.url}/info`)).json()) as { notices: string[] }).notices;
      assert.ok(!notices.some((notice) => notice.includes('is invalid')), JSON.stringify(notices));
      assert.equal(await readFile(`${file}.last-good`, 'utf8'), config(3));
    } finally {
      await stop(second);
    }
  });

  test('without a last good copy a broken file still fails the start, naming the bad key', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rerank-last-good-cli-'));
    const file = path.join(dir, 'config.yaml');
    await writeFile(file, 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: -1}\n');
    await assert.rejects(run(process.execPath, [cli, 'start', '--config', file, '--state-dir', path.join(dir, 'state'), '--port', '0']), (error: { code: number; stdout: string }) => {
      assert.equal(error.code, 1);
      assert.match(error.stdout, /versions\.a\.weight/);
      return true;
    });
    await assert.rejects(access(`${file}.last-good`), 'a broken file is never kept as good');
  });
});
