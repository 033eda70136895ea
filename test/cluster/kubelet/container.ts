import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../harness.ts';
import { quote, timeNow } from './helpers.ts';
import { hasSetpriv } from './lifetime.ts';
import type { ContainerSpec } from './pod-object.ts';

/**
 * A pod's container: what the kubelet keeps of it, and its process. `rerank-server` is
 * `node <repo>/server/cli/main.ts` (this Node), run inside a private mount namespace where each of the
 * container's volumeMounts is bind-mounted from the pod's directory over its absolute path.
 */

const SERVER_MAIN = path.join(ROOT, 'server/cli/main.ts');

export interface TerminatedState {
  exitCode: number;
  signal?: number;
  reason: string;
  message?: string;
  startedAt?: string;
  finishedAt: string;
}

export type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | { terminated: TerminatedState };

export interface ContainerRun {
  spec: ContainerSpec;
  state: ContainerState;
  lastState: ContainerState | undefined;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  everStarted: boolean;
  restartCount: number;
  backoffMs: number;
  restartTimer: NodeJS.Timeout | undefined;
  started: boolean;
  ready: boolean;
  failures: number;
  successes: number;
  probing: boolean;
}

/** A container not created yet. */
export function newContainerRun(spec: ContainerSpec, backoffMs: number): ContainerRun {
  return {
    spec,
    state: { waiting: { reason: 'ContainerCreating' } },
    lastState: undefined,
    child: undefined,
    exited: undefined,
    everStarted: false,
    restartCount: 0,
    backoffMs,
    restartTimer: undefined,
    started: false,
    ready: false,
    failures: 0,
    successes: 0,
    probing: false,
  };
}

/** The container's process: rerank-server on this Node, `start` and `router` given `--host <pod IP>`. */
export function containerArgv(spec: ContainerSpec, ip: string | undefined): string[] {
  const command = spec.command ?? ['rerank-server'];
  if (command[0] !== 'rerank-server') throw new Error(`command ${JSON.stringify(command)}: the test kubelet runs only rerank-server`);
  const args = [...command.slice(1), ...(spec.args ?? [])];
  if (ip && (args[0] === 'start' || args[0] === 'router')) args.push('--host', ip);
  return [process.execPath, SERVER_MAIN, ...args];
}

/** How a container's volumes reach it: the sh script that mounts them, and environment it adds. */
export interface ContainerMounts {
  script: string;
  env: Record<string, string>;
}

/**
 * The sh script run in the private mount namespace: the pod's volumes over the container's paths,
 * then exec. One liberty: a volume at /tmp while the project or Node itself lives under /tmp (a
 * clone in /tmp) would hide the server's own code, so that volume is given as TMPDIR instead (what
 * Node's os.tmpdir() and the server use); any other volume over them is an error.
 */
export function mountScript(spec: ContainerSpec, volumeDir: (name: string) => string, kubeletRoot: string): ContainerMounts {
  const under = (p: string, dir: string) => dir === '/' || p === dir || p.startsWith(`${dir}/`);
  const env: Record<string, string> = {};
  const mounts = (spec.volumeMounts ?? [])
    .map((m) => ({
      source: path.join(volumeDir(m.name), m.subPath ?? ''),
      target: path.resolve('/', m.mountPath),
      readOnly: Boolean(m.readOnly),
    }))
    .filter((m) => {
      if (!under(ROOT, m.target) && !under(process.execPath, m.target)) return true;
      if (m.target === '/tmp' && !m.readOnly) {
        env.TMPDIR = m.source;
        return false;
      }
      throw new Error(`the container mounts a volume at ${m.target}, over the project (${ROOT}) or Node (${process.execPath}); clone the project elsewhere`);
    });
  // Mounts over an ancestor of the pods' directories (/tmp) go last: they would hide the other sources.
  mounts.sort((a, b) => Number(under(kubeletRoot, a.target)) - Number(under(kubeletRoot, b.target)) || a.target.length - b.target.length);
  const lines = ['set -e'];
  for (const m of mounts) lines.push(`mkdir -p ${quote(m.source)} ${quote(m.target)}`, `mount --bind ${quote(m.source)} ${quote(m.target)}`);
  for (const m of mounts) if (m.readOnly) lines.push(`mount -o remount,bind,ro ${quote(m.target)}`);
  if (env.TMPDIR) lines.splice(1, 0, `mkdir -p ${quote(env.TMPDIR)}`);
  lines.push('exec "$@"');
  return { script: lines.join('\n'), env };
}

/** Starts `argv` behind `script` in a private mount namespace, with the container's env; its stdout and stderr go to `output`. */
export function spawnContainer(spec: ContainerSpec, argv: string[], mounts: ContainerMounts, output: (chunk: Buffer) => void): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, ...mounts.env };
  const script = mounts.script;
  // The test runner's marker would make the child act as a test file.
  delete env.NODE_TEST_CONTEXT;
  for (const variable of spec.env ?? []) if (variable.value !== undefined) env[variable.name] = variable.value;
  const wrapper = [...(hasSetpriv ? ['setpriv', '--pdeathsig', 'KILL'] : []), 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...argv];
  const [file, ...rest] = wrapper as [string, ...string[]];
  const child = spawn(file, rest, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', output);
  child.stderr?.on('data', output);
  return child;
}

/** The state of a container whose process ended (or never started: `error`). */
export function terminatedState(startedAt: string, code: number | null, signal: NodeJS.Signals | null, error?: Error): { terminated: TerminatedState } {
  const exitCode = code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 128);
  return {
    terminated: {
      exitCode,
      ...(signal ? { signal: os.constants.signals[signal] } : {}),
      reason: exitCode === 0 ? 'Completed' : 'Error',
      ...(error ? { message: error.message } : {}),
      startedAt,
      finishedAt: timeNow(),
    },
  };
}
