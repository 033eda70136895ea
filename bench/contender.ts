import { percentile } from './stats.ts';
import type { RerankWorkloadRequest } from './workload.ts';

/**
 * One way of reranking that the serving benchmark puts side by side with the others: the server over
 * HTTP, a hand-written onnxruntime loop, transformers.js. Each scores a request (1 query × documents)
 * and returns one raw logit per document, in the documents' order, so the scores of all of them can be
 * compared on the same pairs.
 */
export interface Contender {
  /** e.g. `server int8`. */
  readonly name: string;
  score(request: RerankWorkloadRequest): Promise<Float32Array>;
  /** Padded slots and real tokens it has run so far (cumulative): the padding it pays. */
  padding(): Promise<{ slots: number; tokens: number }>;
  /** The process to sample RSS from, when it runs in one of its own. */
  readonly pid?: number;
  close(): Promise<void>;
}

export interface DriveResult {
  seconds: number;
  pairs: number;
  latenciesMs: number[];
  /** Each request's logits, by its index in the list driven. */
  logits: Float32Array[];
}

/** `clients` concurrent clients, each taking the next request until the list is done. A failed request fails the block. */
export async function drive(contender: Contender, requests: readonly RerankWorkloadRequest[], clients: number): Promise<DriveResult> {
  let next = 0;
  let pairs = 0;
  const latenciesMs: number[] = [];
  const logits: Float32Array[] = [];
  const started = performance.now();
  const client = async () => {
    while (next < requests.length) {
      const index = next++;
      const request = requests[index] as RerankWorkloadRequest;
      const t0 = performance.now();
      const scores = await contender.score(request);
      latenciesMs.push(performance.now() - t0);
      if (scores.length !== request.documents.length) throw new Error(`${contender.name}: ${scores.length} scores for ${request.documents.length} documents`);
      logits[index] = scores;
      pairs += request.documents.length;
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return { seconds: (performance.now() - started) / 1000, pairs, latenciesMs, logits };
}

export function latencyPercentiles(latenciesMs: readonly number[]): { p50Ms: number; p99Ms: number } {
  return { p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99) };
}

/** Runs one call at a time, in the order asked: an in-process model used like the server uses its own. */
export class OneAtATime {
  #last: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#last.then(task);
    this.#last = result.catch(() => undefined);
    return result;
  }
}
