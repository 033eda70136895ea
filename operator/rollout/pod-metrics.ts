import type { KubeObject } from '../kube.ts';
import { SERVER_PORT } from '../names.ts';
import { parseExposition, type Sample } from './exposition.ts';

/** What a server pod's /metrics says now. */
export interface PodMetricsReader {
  read(pod: KubeObject): Promise<Sample[]>;
}

/** GET /metrics on the pod IP (open, like /readyz: the operator needs no API key). */
export class HttpPodMetricsReader implements PodMetricsReader {
  readonly #timeoutMs: number;
  readonly #port: number;
  constructor(options: { timeoutMs?: number; port?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 3000;
    this.#port = options.port ?? SERVER_PORT;
  }

  async read(pod: KubeObject): Promise<Sample[]> {
    const ip = (pod.status as { podIP?: string } | undefined)?.podIP;
    if (!ip) throw new Error(`pod ${pod.metadata.name} has no IP`);
    const host = ip.includes(':') ? `[${ip}]` : ip;
    const response = await fetch(`http://${host}:${this.#port}/metrics`, { signal: AbortSignal.timeout(this.#timeoutMs) });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`GET /metrics on pod ${pod.metadata.name}: HTTP ${response.status}`);
    }
    return parseExposition(await response.text());
  }
}
