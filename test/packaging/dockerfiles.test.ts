import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { load } from 'js-yaml';
import { routerDeployment, versionDeployment } from '../../operator/plan/workloads.ts';
import { example, IMAGES } from '../operator/support/examples.ts';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** Instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Array<[string, string]> {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return [op!.toUpperCase(), rest.join(' ')];
    });
}

const lastStage = (ins: Array<[string, string]>) => ins.slice(ins.map(([op]) => op).lastIndexOf('FROM'));

/** Every module of this repository `entry` loads, transitively: any quoted relative `.ts` path (imports, workers). */
function reachableModules(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const [, specifier] of read(file).matchAll(/['"](\.{1,2}\/[^'"\s]+\.ts)['"]/g)) {
      visit(path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier!)));
    }
  };
  visit(entry);
  return seen;
}

describe('Dockerfiles', () => {
  for (const file of ['Dockerfile', 'Dockerfile.cuda', 'Dockerfile.operator']) {
    test(`${file}: multi-stage, npm ci --omit=dev without onnxruntime's download, pruned binaries, non-root`, () => {
      const ins = instructions(read(file));
      assert.ok(ins.filter(([op]) => op === 'FROM').length >= 2, 'multi-stage');
      const runs = ins.filter(([op]) => op === 'RUN').map(([, a]) => a).join('\n');
      assert.match(runs, /npm ci --omit=dev/);
      assert.doesNotMatch(runs, /npm (install|i) /);
      assert.ok(ins.some(([op, a]) => op === 'ENV' && /ONNXRUNTIME_NODE_INSTALL=skip/.test(a)), 'ONNXRUNTIME_NODE_INSTALL=skip');
      assert.match(runs, /onnxruntime-node\/bin .*! -name linux/);
      assert.match(runs, /! -name x64/);
      assert.match(runs, /tokenizers\.linux-x64-gnu\.node/);
      const final = lastStage(ins);
      const user = final.filter(([op]) => op === 'USER').at(-1)?.[1];
      assert.ok(user && !/^(root|0)(:|$)/.test(user), `USER ${user}`);
      assert.equal(user, '65532:65532', 'the uid operator/plan/workloads.ts runs pods as');
      assert.ok(!final.some(([op, a]) => op === 'COPY' && /\b(test|bench)\b/.test(a)), 'no tests or benchmarks in the image');
      assert.ok(final.some(([op, a]) => op === 'COPY' && /--from=deps .*node_modules/.test(a)), 'node_modules from the deps stage');
    });
  }

  test('the server images answer the command the operator renders: rerank-server', () => {
    const rrc = example('seed');
    const version = rrc.spec.versions[0]!;
    const rendered = [versionDeployment(rrc, version, 'gpu', IMAGES), routerDeployment(example('router'), IMAGES)];
    const commands = rendered.flatMap((d) => {
      const pod = (d.spec as { template: { spec: { containers: Array<{ command?: string[] }>; initContainers?: Array<{ command?: string[] }> } } }).template.spec;
      return [...pod.containers, ...(pod.initContainers ?? [])].map((c) => c.command);
    });
    assert.ok(commands.length >= 2);
    for (const command of commands) assert.deepEqual(command, ['rerank-server']);
    for (const file of ['Dockerfile', 'Dockerfile.cuda']) {
      const text = read(file);
      const final = lastStage(instructions(text));
      assert.ok(final.some(([op, a]) => op === 'ENTRYPOINT' && a === '["rerank-server"]'), `${file}: ENTRYPOINT`);
      assert.match(text, /> \/usr\/local\/bin\/rerank-server/, `${file}: rerank-server on the PATH`);
      assert.match(text, /exec node \/app\/server\/cli\/main\.ts "\$@"/);
      assert.ok(final.some(([op, a]) => op === 'COPY' && a === 'server ./server'));
    }
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    // The images run the sources; the npm package's bin is a launcher that runs the sources in a checkout
    // and their build in an installed package (test/cli-installed.test.ts).
    assert.equal(pkg.bin['rerank-server'], 'bin/rerank-server.js');
  });

  test('the server images carry no operator/: all that rerank-server loads is under server/', () => {
    for (const file of ['Dockerfile', 'Dockerfile.cuda']) {
      const copied = lastStage(instructions(read(file))).filter(([op, a]) => op === 'COPY' && !a.startsWith('--from'));
      assert.ok(!copied.some(([, a]) => a.split(' ')[0] === 'operator'), `${file} copies operator/`);
    }
    const modules = [...reachableModules('server/cli/main.ts')];
    assert.ok(modules.includes('server/router/routing-files.ts') && modules.includes('server/engine/onnx-worker.ts'), 'the walk follows imports and workers');
    assert.deepEqual(modules.filter((m) => !m.startsWith('server/')), []);
  });

  test('Dockerfile.cuda installs the CUDA execution provider on an nvidia/cuda runtime base, with Node 24', () => {
    const text = read('Dockerfile.cuda');
    assert.match(text, /ARG CUDA_IMAGE=nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/);
    assert.match(text, /ONNXRUNTIME_NODE_INSTALL_CUDA=cuda12 node script\/install\.js/);
    assert.match(text, /COPY --from=node \/usr\/local\/bin\/node \/usr\/local\/bin\/node/);
    assert.match(text, /ARG NODE_IMAGE=node:24-/);
  });

  test('Dockerfile.operator runs operator/main.ts on the port the chart probes', () => {
    const final = lastStage(instructions(read('Dockerfile.operator')));
    assert.ok(final.some(([op, a]) => op === 'ENTRYPOINT' && a === '["node", "/app/operator/main.ts"]'));
    assert.ok(final.some(([op, a]) => op === 'EXPOSE' && a === '8081'));
  });

  test('.dockerignore keeps node_modules, .git, tests and every model directory (only the catalogue) out of the build context', () => {
    const lines = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['node_modules', '.git', 'test', 'models/*', '!models/catalog.yaml', 'charts']) assert.ok(lines.includes(entry), entry);
    for (const needed of ['server', 'operator', 'config', 'package.json', 'package-lock.json']) assert.ok(!lines.includes(needed), needed);
  });
});

describe('workflows', () => {
  test('e2e.yml runs the k3s suite with RERANK_E2E=1 after npm ci', () => {
    const workflow = load(read('.github/workflows/e2e.yml')) as { jobs: Record<string, { steps: Array<{ run?: string; env?: Record<string, string> }> }> };
    const steps = Object.values(workflow.jobs).flatMap((j) => j.steps);
    const e2e = steps.find((s) => s.run?.includes('test/e2e/k3s.test.ts'));
    assert.equal(e2e?.env?.RERANK_E2E, '1');
    assert.ok(steps.some((s) => s.run === 'npm ci' && s.env?.ONNXRUNTIME_NODE_INSTALL === 'skip'));
    assert.match(read('test/e2e/k3s.test.ts'), /RERANK_E2E !== '1'/);
  });

  test('ci.yml lints the chart', () => {
    const workflow = load(read('.github/workflows/ci.yml')) as { jobs: Record<string, { steps: Array<{ run?: string }> }> };
    const runs = Object.values(workflow.jobs).flatMap((j) => j.steps.map((s) => s.run ?? ''));
    assert.ok(runs.includes('helm lint charts/rerank-operator'));
  });
});
