/* eslint-disable @typescript-eslint/no-explicit-any -- objects read back from kubectl as JSON */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dump, load } from 'js-yaml';
import type { Cluster } from './harness.ts';
import { ROOT } from './harness.ts';

/** Reading and writing objects through the real kubectl, as a user does. */
export class Resources {
  readonly #cluster: Cluster;
  readonly namespace: string;
  constructor(cluster: Cluster, namespace: string) {
    this.#cluster = cluster;
    this.namespace = namespace;
  }

  async get(kind: string, name: string): Promise<any | undefined> {
    const out = await this.#cluster.kubectl(['get', kind, name, '-n', this.namespace, '-o', 'json', '--ignore-not-found', '--show-managed-fields']);
    return out.trim() ? JSON.parse(out) : undefined;
  }

  async list(kind: string, selector?: string): Promise<any[]> {
    const out = await this.#cluster.kubectl(['get', kind, '-n', this.namespace, '-o', 'json', '--show-managed-fields', ...(selector ? ['-l', selector] : [])]);
    return (JSON.parse(out) as { items: any[] }).items;
  }

  async names(kind: string, selector = 'app.kubernetes.io/managed-by=rerank-operator'): Promise<string[]> {
    return (await this.list(kind, selector)).map((o) => o.metadata.name as string).sort();
  }

  async apply(object: unknown, manager = 'rerank-tests', force = true): Promise<void> {
    await this.#cluster.kubectl(['apply', '--server-side', `--field-manager=${manager}`, ...(force ? ['--force-conflicts'] : []), '-n', this.namespace, '-f', '-'], { input: dump(object) });
  }

  async mergePatch(kind: string, name: string, patch: unknown, subresource?: string): Promise<void> {
    await this.#cluster.kubectl(['patch', kind, name, '-n', this.namespace, '--type', 'merge', '-p', JSON.stringify(patch), ...(subresource ? ['--subresource', subresource] : [])]);
  }

  async jsonPatch(kind: string, name: string, patch: unknown[]): Promise<void> {
    await this.#cluster.kubectl(['patch', kind, name, '-n', this.namespace, '--type', 'json', '-p', JSON.stringify(patch)]);
  }

  async delete(kind: string, name: string): Promise<void> {
    await this.#cluster.kubectl(['delete', kind, name, '-n', this.namespace, '--wait=false']);
  }

  kubectl(args: string[]): Promise<string> {
    return this.#cluster.kubectl([...args, '-n', this.namespace]);
  }

  /** The RerankerConfig's condition of this type. */
  async condition(name: string, type: string): Promise<{ status: string; reason: string; message: string; observedGeneration?: number } | undefined> {
    return (await this.get('rerankerconfig', name))?.status?.conditions?.find((c: { type: string }) => c.type === type);
  }

  /**
   * Pods of a Deployment marked ready through the status subresource, as a kubelet would report them
   * (no kubelet runs here): the ReplicaSet and Deployment controllers then count them as ready.
   * Their IPs are unused loopback addresses, so the operator's GET /config on them is refused at once.
   */
  async markPodsReady(selector: string, ipBase = 200): Promise<number> {
    const pods = await this.list('pods', selector);
    let n = 0;
    for (const pod of pods) {
      const ip = `127.0.1.${ipBase + n++}`;
      const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
      await this.mergePatch('pod', pod.metadata.name, {
        status: {
          phase: 'Running',
          podIP: ip,
          podIPs: [{ ip }],
          conditions: [
            { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
            { type: 'Ready', status: 'True', lastTransitionTime: now },
            { type: 'ContainersReady', status: 'True', lastTransitionTime: now },
          ],
        },
      }, 'status');
    }
    return pods.length;
  }
}

/** Every example under crds/examples, by file name, moved into `namespace`. */
export function examples(namespace: string): Array<{ file: string; object: any }> {
  const dir = join(ROOT, 'crds/examples');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((file) => {
      const object = load(readFileSync(join(dir, file), 'utf8')) as any;
      object.metadata.namespace = namespace;
      return { file, object };
    });
}
