import { percentile } from './stats.ts';

/** Drive a server with `concurrency` clients, each taking the next request until the list is done. */
export interface LoadResult {
  seconds: number;
  pairs: number;
  latenciesMs: number[];
  failures: number;
  statuses: Record<string, number>;
}

export async function driveLoad(options: {
  url: string;
  bodies: readonly unknown[];
  concurrency: number;
  pairsOf: (body: unknown) => number;
  headers?: Record<string, string>;
}): Promise<LoadResult> {
  let next = 0;
  const latenciesMs: number[] = [];
  const statuses: Record<string, number> = {};
  let failures = 0;
  let pairs = 0;
  const started = performance.now();
  const client = async () => {
    while (next < options.bodies.length) {
      const body = options.bodies[next++];
      const t0 = performance.now();
      let status = 'error';
      try {
        const response = await fetch(options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...options.headers },
          body: JSON.stringify(body),
        });
        await response.arrayBuffer();
        status = String(response.status);
        if (response.ok) pairs += options.pairsOf(body);
        else failures += 1;
      } catch {
        failures += 1;
      }
      statuses[status] = (statuses[status] ?? 0) + 1;
      latenciesMs.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, client));
  return { seconds: (performance.now() - started) / 1000, pairs, latenciesMs, failures, statuses };
}

export function latencySummary(result: LoadResult): { p50: number; p99: number } {
  return { p50: percentile(result.latenciesMs, 50), p99: percentile(result.latenciesMs, 99) };
}
