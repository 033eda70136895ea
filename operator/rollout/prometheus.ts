import { messageOf } from '../failures.ts';

/**
 * Instant queries against the Prometheus HTTP API, for rollouts that take their figures from a
 * Prometheus (spec.rollout.analysis.prometheus). Every way a query can fail is an Error saying why:
 * the caller leaves the step unjudged rather than reading a failure as "no requests".
 */

/** One instant query's answer: its single value, or undefined when no series matched. */
export interface PrometheusClient {
  /** Runs `query` at `at` on the Prometheus at `url`; throws when it cannot answer or answers with more than one series. */
  query(url: string, query: string, at: Date): Promise<number | undefined>;
}

type Sample = [number, string];
interface QueryAnswer {
  status?: string;
  errorType?: string;
  error?: string;
  data?: { resultType?: string; result?: unknown };
}

/** GET {url}/api/v1/query?query=…&time=… with a timeout. */
export class HttpPrometheusClient implements PrometheusClient {
  readonly #timeoutMs: number;
  constructor(options: { timeoutMs?: number } = {}) {
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  async query(url: string, query: string, at: Date): Promise<number | undefined> {
    const endpoint = new URL('api/v1/query', url.endsWith('/') ? url : `${url}/`);
    endpoint.searchParams.set('query', query);
    endpoint.searchParams.set('time', (at.getTime() / 1000).toFixed(3));
    let response: Response;
    let text: string;
    try {
      response = await fetch(endpoint, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(this.#timeoutMs) });
      text = await response.text();
    } catch (error) {
      const why = error instanceof Error && error.name === 'TimeoutError' ? `no answer within ${this.#timeoutMs} ms` : messageOf(error);
      throw new Error(`Prometheus ${url}: ${why}`, { cause: error });
    }
    let answer: QueryAnswer | null;
    try {
      answer = JSON.parse(text) as QueryAnswer | null;
    } catch {
      throw new Error(`Prometheus ${url}: HTTP ${response.status}, not a JSON answer: ${text.slice(0, 200)}`);
    }
    // Prometheus answers a refused query with 400 or 422 and a JSON body saying why.
    if (answer?.status !== 'success') {
      throw new Error(`Prometheus ${url}: HTTP ${response.status}${answer?.errorType ? ` ${answer.errorType}` : ''}: ${answer?.error ?? 'no error given'}`);
    }
    return valueOf(answer.data);
  }
}

/** The value of an instant query's data: a scalar, or a vector of at most one sample. */
export function valueOf(data: QueryAnswer['data']): number | undefined {
  const type = data?.resultType;
  if (type === 'scalar') return number(Array.isArray(data!.result) ? (data!.result as Sample)[1] : undefined);
  if (type !== 'vector' || !Array.isArray(data!.result)) throw new Error(`the query gives a ${type ?? 'missing'} result; it must give an instant vector or a scalar`);
  const series = data!.result as Array<{ metric?: Record<string, string>; value?: Sample }>;
  if (series.length === 0) return undefined;
  if (series.length > 1) {
    const shown = series.slice(0, 3).map((s) => JSON.stringify(s.metric ?? {}));
    throw new Error(`the query gives ${series.length} series (${shown.join(', ')}${series.length > 3 ? ', …' : ''}); it must give one, e.g. sum(…) them`);
  }
  return number(series[0]!.value?.[1]);
}

/** Prometheus writes sample values as strings: decimal, NaN, +Inf, -Inf. */
function number(text: string | undefined): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  const value = text === undefined || text.trim() === '' ? NaN : Number(text);
  if (Number.isNaN(value)) throw new Error(`the query gives a sample value that is not a number: ${JSON.stringify(text)}`);
  return value;
}
