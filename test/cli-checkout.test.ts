import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../', import.meta.url));

test('in a checkout after npm ci, `npx rerank-server` is the CLI from the sources (the project links its own bin)', async () => {
  const { stdout } = await run('npx', ['--no-install', 'rerank-server', '--help'], { cwd: root, env: { ...process.env, npm_config_loglevel: 'error' } });
  assert.match(stdout, /^Usage: rerank-server \[options\] \[command\]/);
  const check = await run('npx', ['--no-install', 'rerank-server', 'check-config', 'missing.yaml'], { cwd: root }).then(
    () => ({ code: 0, stderr: '' }),
    (error: { code: number; stderr: string }) => error,
  );
  assert.equal(check.code, 1, 'a missing file must not pass');
  assert.match(check.stderr, /missing\.yaml/);
});
