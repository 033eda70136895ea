import { mkdir } from 'node:fs/promises';
import { writeAtomically } from './atomic-writer.ts';
import type { KeyToPath, PodObject } from './pod-object.ts';

/** A pod's volumes on this machine: ConfigMaps and Secrets through the atomic writer, an empty directory for the rest. */

/** What writing a pod's volumes asks of its kubelet. */
export interface VolumeHost {
  readConfigMap(namespace: string, name: string): Promise<Map<string, Buffer> | undefined>;
  readSecret(namespace: string, name: string): Promise<Map<string, Buffer> | undefined>;
  warnOnce(key: string, message: string): void;
}

/** The pod whose volumes are written. */
interface VolumePod {
  readonly key: string;
  readonly pod: PodObject;
  volumeDir(name: string): string;
}

function selectItems(
  what: string,
  entries: Map<string, Buffer>,
  items: KeyToPath[] | undefined,
  optional: boolean | undefined,
): Map<string, Buffer> {
  if (!items) return entries;
  const payload = new Map<string, Buffer>();
  for (const item of items) {
    const value = entries.get(item.key);
    if (value === undefined) {
      if (optional) continue;
      throw new Error(`${what} has no key "${item.key}"`);
    }
    payload.set(item.path, value);
  }
  return payload;
}

/** Writes every volume of the pod (the ConfigMaps and Secrets read now); the names of those whose content changed. */
export async function writeVolumes(target: VolumePod, host: VolumeHost): Promise<string[]> {
  const changed: string[] = [];
  const namespace = target.pod.metadata.namespace;
  for (const volume of target.pod.spec.volumes ?? []) {
    const dir = target.volumeDir(volume.name);
    if (volume.configMap) {
      const source = volume.configMap;
      const entries = await host.readConfigMap(namespace, source.name);
      if (!entries && !source.optional) throw new Error(`configmap "${source.name}" not found`);
      const payload = selectItems(`configmap "${source.name}"`, entries ?? new Map(), source.items, source.optional);
      if (await writeAtomically(dir, payload)) changed.push(volume.name);
    } else if (volume.secret) {
      const source = volume.secret;
      const entries = await host.readSecret(namespace, source.secretName);
      if (!entries && !source.optional) throw new Error(`secret "${source.secretName}" not found`);
      const payload = selectItems(`secret "${source.secretName}"`, entries ?? new Map(), source.items, source.optional);
      if (await writeAtomically(dir, payload)) changed.push(volume.name);
    } else {
      if (!volume.emptyDir) host.warnOnce(`${target.key}/${volume.name}`, `${target.key}: volume "${volume.name}" is neither emptyDir, configMap nor secret: an empty directory stands in`);
      await mkdir(dir, { recursive: true });
    }
  }
  return changed;
}
