import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { releaseAllIps } from './ips.ts';

/**
 * What the test kubelet needs of this machine (unshare into a private mount namespace: root), and the
 * processes that must not outlive the test process: they run under `setpriv --pdeathsig KILL` where
 * there is one, and a process 'exit' hook SIGKILLs those of every kubelet not stopped.
 */

function probeUnshare(): string | false {
  if (process.platform !== 'linux') return `test kubelet: needs Linux mount namespaces (unshare --mount); this is ${process.platform}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'test-kubelet-probe-'));
  try {
    const result = spawnSync('unshare', ['--mount', '--propagation', 'private', 'mount', '--bind', dir, dir], { encoding: 'utf8', timeout: 10_000 });
    if (result.error) return `test kubelet: cannot run unshare (${result.error.message}); it runs each pod's server in a private mount namespace`;
    if (result.status !== 0) {
      return (
        `test kubelet: \`unshare --mount --propagation private mount --bind\` failed (exit ${result.status}: ${result.stderr.trim()}); ` +
        "it needs root (CAP_SYS_ADMIN) to give each pod's server its own /etc/rerank, /models and /tmp"
      );
    }
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `false` where pods can be run; otherwise why the tests that need it skip. */
export const kubeletSkip: string | false = probeUnshare();
/** Whether `setpriv --pdeathsig` is at hand, so that each pod's processes die with the test process. */
export const hasSetpriv = !kubeletSkip && spawnSync('setpriv', ['--help'], { encoding: 'utf8' }).stdout?.includes('--pdeathsig') === true;

/** The kubelets started and not yet stopped. */
export const liveKubelets = new Set<{ killNow(): void }>();
process.once('exit', () => {
  for (const kubelet of liveKubelets) kubelet.killNow();
  releaseAllIps();
});
