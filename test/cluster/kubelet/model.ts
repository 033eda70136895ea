import { cp, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { LABEL } from '../../../operator/names.ts';
import { tinyModel } from '../../support/models.ts';
import type { ResolvedOptions } from './options.ts';
import type { ContainerSpec, PodObject } from './pod-object.ts';

/**
 * Init containers are not run: for an init container `rerank-server models pull <source> --dir <dir>`
 * the generated tiny model (or the `model` option) is copied to `<dir>` in its volume; a pod without
 * one that mounts /models and carries the `rerank.dev/version` label gets it at `/models/<version>`.
 */

/** What placing the model asks of the kubelet. */
export interface ModelHost {
  readonly options: Pick<ResolvedOptions, 'model'>;
  warnOnce(key: string, message: string): void;
}

/** The pod the model is placed for. */
interface ModelPod {
  readonly key: string;
  readonly pod: PodObject;
  readonly runs: ReadonlyArray<{ readonly spec: ContainerSpec }>;
  volumeDir(name: string): string;
}

function isModelsPull(container: ContainerSpec): string | undefined {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  if (argv[0] !== 'rerank-server' || argv[1] !== 'models' || argv[2] !== 'pull') return undefined;
  const at = argv.indexOf('--dir');
  return at > 0 ? argv[at + 1] : undefined;
}

/** Host path of `containerPath` through a container's volume mounts (longest mount path wins). */
function hostPathOf(containerPath: string, container: ContainerSpec, volumeDir: (name: string) => string): string | undefined {
  let best: { mountPath: string; source: string } | undefined;
  for (const mount of container.volumeMounts ?? []) {
    const mountPath = mount.mountPath.replace(/\/+$/, '') || '/';
    if (containerPath !== mountPath && !containerPath.startsWith(`${mountPath}/`)) continue;
    if (best && best.mountPath.length >= mountPath.length) continue;
    best = { mountPath, source: path.join(volumeDir(mount.name), mount.subPath ?? '') };
  }
  return best && path.join(best.source, path.relative(best.mountPath, containerPath));
}

/** The (simulated) init containers of the pod: the model copied where they would have pulled it. */
export async function placeModel(target: ModelPod, host: ModelHost): Promise<void> {
  const version = target.pod.metadata.labels?.[LABEL.version];
  const targets: string[] = [];
  for (const init of target.pod.spec.initContainers ?? []) {
    const dir = isModelsPull(init);
    const hostPath = dir ? hostPathOf(dir, init, (name) => target.volumeDir(name)) : undefined;
    if (hostPath) targets.push(hostPath);
    else host.warnOnce(`init:${init.name}`, `${target.key}: init container "${init.name}" (${[...(init.command ?? []), ...(init.args ?? [])].join(' ')}) is not run by the test kubelet`);
  }
  if (!targets.length && version) {
    for (const run of target.runs) {
      const hostPath = hostPathOf(`/models/${version}`, run.spec, (name) => target.volumeDir(name));
      if (hostPath) targets.push(hostPath);
    }
  }
  if (!targets.length) return;
  const source = await (host.options.model ? host.options.model(target.pod) : tinyModel().then((m) => m.dir));
  for (const dir of new Set(targets)) {
    await mkdir(dir, { recursive: true });
    await cp(source, dir, { recursive: true });
  }
}
