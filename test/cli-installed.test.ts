import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tinyModel } from './support/models.ts';

/**
 * rerank-server as a user gets it: `npm pack` (its prepack builds dist/), the tarball installed into a
 * fresh project, every command run through node_modules/.bin/rerank-server — npm's symlink to the
 * built JavaScript, which is what `npx rerank-server`, `npm link` and a global install run too.
 *
 * The pack runs in a copy of the repository (node_modules linked), so the build never races another
 * run over the checkout's dist/. The install takes the dependencies from npm's cache (--prefer-offline).
 */

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Node 24 first (this test's own Node): the bin's `#!/usr/bin/env node` and npm both take it. */
const PATH = [path.dirname(process.execPath), process.env.PATH ?? ''].join(path.delimiter);
/** No npm_* settings inherited from an `npm test` around this one (npm_config_local_prefix would aim npm at the checkout). */
const baseEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== 'RERANK_API_KEY' && key !== 'PORT'),
);
/** ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's install script would download CUDA files; its CPU binaries ship in the package. */
const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...baseEnv, PATH, ONNXRUNTIME_NODE_INSTALL: 'skip', ...extra });

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: options.cwd, env: options.env ?? env(), maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** npm failures that mean "no registry and not in the cache here", not a broken package. */
const OFFLINE = /ENOTCACHED|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|network/;

/** Copies the checkout minus what is not part of it (dependencies, build output, git). */
async function copyCheckout(to: string): Promise<void> {
  const skip = new Set(['node_modules', 'dist', '.git', '.bench', '.gl', '.whl']);
  for (const entry of await readdir(repo)) {
    if (skip.has(entry)) continue;
    await cp(path.join(repo, entry), path.join(to, entry), {
      recursive: true,
      filter: (source) => !source.startsWith(path.join(repo, 'models', 'local')),
    });
  }
  await symlink(path.join(repo, 'node_modules'), path.join(to, 'node_modules'), 'dir');
}

let workDir: string;
let bin: string;
let installed: string;
let skipReason: string | undefined;
const children = new Set<ChildProcess>();

before(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'rerank-installed-'));
  const npm = await run('npm', ['--version'], { cwd: workDir }).catch((error: Error) => ({ code: -1, stdout: '', stderr: error.message }));
  if (npm.code !== 0) {
    skipReason = `npm is not runnable here (${npm.stderr.trim().split('\n')[0]}): cannot pack and install the package`;
    return;
  }
  const checkout = path.join(workDir, 'checkout');
  const packs = path.join(workDir, 'packs');
  const project = path.join(workDir, 'project');
  await Promise.all([mkdir(checkout), mkdir(packs), mkdir(project)]);
  await copyCheckout(checkout);

  // The package's dependencies go in while `npm pack` builds (the longest steps, side by side); installing
  // the tarball then adds the package itself and its bin link over the same tree a one-step install makes.
  const pkg = JSON.parse(await readFile(path.join(repo, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'rerank-installed-test', private: true }));
  const npmInstall = async (specs: string[]) => {
    const started = Date.now();
    const result = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...specs], { cwd: project });
    if (result.code !== 0 && OFFLINE.test(result.stderr)) {
      skipReason ??= `npm install needs packages neither in npm's cache nor reachable: ${result.stderr.split('\n').find((l) => OFFLINE.test(l))}`;
    } else assert.equal(result.code, 0, `npm install failed:\n${result.stdout}\n${result.stderr}`);
    return (Date.now() - started) / 1000;
  };
  const packing = (async () => {
    const started = Date.now();
    const pack = await run('npm', ['pack', '--pack-destination', packs], { cwd: checkout });
    assert.equal(pack.code, 0, `npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
    const tarballs = (await readdir(packs)).filter((name) => name.endsWith('.tgz'));
    assert.equal(tarballs.length, 1, `one tarball: ${tarballs.join(', ')}`);
    return { tarball: path.join(packs, tarballs[0]!), seconds: (Date.now() - started) / 1000 };
  })();
  const [pack, depsSeconds] = await Promise.all([packing, npmInstall(Object.entries(pkg.dependencies).map(([name, range]) => `${name}@${range}`))]);
  if (skipReason) return;
  const tarballSeconds = await npmInstall([pack.tarball]);
  if (skipReason) return;
  process.stdout.write(`# npm pack ${pack.seconds.toFixed(1)} s (build included) beside npm install of the dependencies ${depsSeconds.toFixed(1)} s; npm install of the tarball ${tarballSeconds.toFixed(1)} s\n`);
  installed = path.join(project, 'node_modules', 'rerank-operator');
  bin = path.join(project, 'node_modules', '.bin', process.platform === 'win32' ? 'rerank-server.cmd' : 'rerank-server');
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Result> {
  return run(bin, args, { cwd: path.dirname(path.dirname(path.dirname(bin))), env: env(extraEnv) });
}

/** `start` through the installed bin, resolved once it listens; its log lines are kept. */
async function startServer(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  const child = spawn(bin, ['start', ...args, '--port', '0', '--host', '127.0.0.1'], { env: env(extraEnv), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === 'listening') resolve(entry.url as string);
    });
    child.once('exit', (code) => reject(new Error(`start exited early (${code}): ${stderr}`)));
  });
  const stop = async () => {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    children.delete(child);
    return code;
  };
  return { url, logs, stop };
}

async function waitReady(url: string): Promise<Response> {
  let response = await fetch(`${url}/readyz`);
  for (let i = 0; i < 200 && response.status !== 200; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    response = await fetch(`${url}/readyz`);
  }
  return response;
}

describe('rerank-server installed from the packed tarball', () => {
  test('the package holds the built CLI and the files it reads, not the sources, tests or charts', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const top = (await readdir(installed)).sort();
    assert.deepEqual(top, ['README.md', 'bin', 'config', 'dist', 'models', 'package.json']);
    assert.deepEqual(await readdir(path.join(installed, 'bin')), ['rerank-server.js'], 'the launcher, which runs dist/ where no sources are shipped');
    assert.deepEqual(await readdir(path.join(installed, 'config')), ['local.yaml']);
    assert.deepEqual(await readdir(path.join(installed, 'models')), ['catalog.yaml']);
    assert.deepEqual(await readdir(path.join(installed, 'dist')), ['server']);
    const files = (await readdir(path.join(installed, 'dist'), { recursive: true })).filter((f) => /\.\w+$/.test(f));
    assert.ok(files.includes(path.join('server', 'cli', 'main.js')) && files.includes(path.join('server', 'engine', 'onnx-worker.js')));
    assert.deepEqual(files.filter((f) => !f.endsWith('.js')), [], 'only JavaScript under dist');
    assert.ok((await stat(path.join(installed, 'bin/rerank-server.js'))).mode & 0o111, 'the bin is executable');
  });

  test('--help prints the usage and exits 0', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const help = await cli(['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: rerank-server \[options\] \[command\]/);
    for (const command of ['start', 'check-config', 'status', 'export', 'compare', 'router', 'models']) assert.match(help.stdout, new RegExp(`^  ${command}\\b`, 'm'));
  });

  test('check-config: a good file exits 0, a bad or missing one exits 1 with the reason on stderr', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const good = path.join(workDir, 'good.yaml');
    const bad = path.join(workDir, 'bad.yaml');
    await writeFile(good, 'defaultVersion: a\nversions:\n  a: {model: ./m}\n');
    await writeFile(bad, 'defaultVersion: a\nversions:\n  a: {model: ./m, weight: -1}\n');
    const [ok, invalid, missing] = await Promise.all([cli(['check-config', good]), cli(['check-config', bad]), cli(['check-config', path.join(workDir, 'missing.yaml')])]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /good\.yaml: ok \(hash [0-9a-f]{16}; versions: a\)/);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /versions\.a\.weight/);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^check-config: cannot read .*missing\.yaml \(ENOENT: no such file\)\n$/);
  });

  test('export and models list read the package\'s own package.json and catalogue', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const pkg = JSON.parse(await readFile(path.join(repo, 'package.json'), 'utf8')) as { version: string };
    const [exported, models] = await Promise.all([cli(['export']), cli(['models', 'list'])]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.equal((JSON.parse(exported.stdout) as { info: { version: string } }).info.version, pkg.version);
    assert.equal(models.code, 0, models.stderr);
    assert.match(models.stdout, /^BAAI\/bge-reranker-base\b/m);
  });

  test('start --config serves a model (/readyz 200, a rerank), and start --local serves its stand-in from the user cache', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const model = await tinyModel();
    const config = path.join(workDir, 'serve.yaml');
    await writeFile(config, `defaultVersion: v1\nversions:\n  v1: {model: ${JSON.stringify(model.dir)}}\nserving: {logLevel: info}\n`);
    const cache = path.join(workDir, 'cache');
    const [served, local] = await Promise.all([startServer(['--config', config]), startServer(['--local'], { XDG_CACHE_HOME: cache })]);
    try {
      for (const { url } of [served, local]) assert.equal((await waitReady(url)).status, 200);
      const ranked = await fetch(`${served.url}/rerank`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'what is batching?', texts: ['batching groups requests', 'a cat'] }),
      });
      assert.equal(ranked.status, 200);
      assert.equal(((await ranked.json()) as unknown[]).length, 2);

      // Local mode from an install: the package's config copied into the cache, the stand-in model beside it.
      const copied = path.join(cache, 'rerank-server', 'config', 'local.yaml');
      const said = local.logs.find((entry) => typeof entry.msg === 'string' && entry.msg.startsWith('local mode:'));
      assert.ok(said, 'the log says where local mode serves from');
      assert.equal(said.file, copied);
      assert.equal(await readFile(copied, 'utf8'), await readFile(path.join(installed, 'config', 'local.yaml'), 'utf8'));
      assert.ok((await stat(path.join(cache, 'rerank-server', 'models', 'local', 'tiny', 'model.onnx'))).isFile());
      assert.deepEqual(await readdir(path.join(installed, 'models')), ['catalog.yaml'], 'nothing written into node_modules');
    } finally {
      assert.deepEqual(await Promise.all([served.stop(), local.stop()]), [0, 0]);
    }
  });
});
