import { z } from 'zod';
import type { KubeObject } from './kube.ts';
import { SERVER_PORT } from './names.ts';

/**
 * What a server pod says about the config it runs: `GET /config/hash` → `{hash, appliedAt}`. That view is
 * open, so the operator needs no API key; the full `GET /config` (model paths) is guarded by it.
 */
export interface AppliedConfig {
  hash: string;
  appliedAt: string;
}

export interface PodConfigReader {
  read(pod: KubeObject): Promise<AppliedConfig>;
}

const AppliedConfigSchema = z.object({ hash: z.string().min(1), appliedAt: z.string() });

/**
 * Asks the pod itself, on its pod IP; a pod that does not answer in time counts as not applied. A pod
 * of an older image, without `/config/hash` (404), is asked its open `GET /config` instead.
 */
export class HttpPodConfigReader implements PodConfigReader {
  readonly #timeoutMs: number;
  readonly #port: number;
  constructor(options: { timeoutMs?: number; port?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#port = options.port ?? SERVER_PORT;
  }

  async read(pod: KubeObject): Promise<AppliedConfig> {
    const ip = (pod.status as { podIP?: string } | undefined)?.podIP;
    if (!ip) throw new Error(`pod ${pod.metadata.name} has no IP`);
    const host = ip.includes(':') ? `[${ip}]` : ip;
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let path = '/config/hash';
    let response = await fetch(`http://${host}:${this.#port}${path}`, { signal });
    if (response.status === 404) {
      await response.body?.cancel();
      path = '/config';
      response = await fetch(`http://${host}:${this.#port}${path}`, { signal });
    }
    if (!response.ok) throw new Error(`GET ${path} on pod ${pod.metadata.name}: HTTP ${response.status}`);
    const parsed = AppliedConfigSchema.safeParse(await response.json());
    if (!parsed.success) throw new Error(`GET ${path} on pod ${pod.metadata.name}: no hash in the answer`);
    return { hash: parsed.data.hash, appliedAt: parsed.data.appliedAt };
  }
}
