import { createHash } from 'node:crypto';
import { Agent, fetch as undiciFetch } from 'undici';
import { readLimited } from '../../server/models/http-client.ts';
import { messageOf } from '../failures.ts';

/**
 * Instant queries against the Prometheus HTTP API, for rollouts that take their figures from a
 * Prometheus (spec.rollout.analysis.prometheus). Every way a query can fail is an Error saying why:
 * the caller leaves the step unjudged rather than reading a failure as "no requests".
 */

/** Where and how to ask: the spec's analysis.prometheus with its Secrets read (operator/rollout/prometheus-target.ts). */
export interface PrometheusTarget {
  url: string;
  timeoutMs: number;
  /** Sent with every query: the spec's headers and the Authorization made from auth's Secret. */
  headers: Record<string, string>;
  /** Where the Authorization header comes from, for the message of a refusal, e.g. `the bearer token of Secret rag/prom key token`. */
  credentials?: string;
  /** A PEM bundle of the CAs to trust instead of the public ones (https). */
  ca?: string;
  /** Trust any server certificate (https). */
  insecureSkipVerify?: boolean;
}

/** One instant query's answer: its single value, or undefined when no series matched. */
export interface PrometheusClient {
  /** Runs `query` at `at`; throws when it cannot answer or answers with more than one series. */
  query(target: PrometheusTarget, query: string, at: Date): Promise<number | undefined>;
}

/** Prometheus answered with a status that says the request, not the query, was refused (401, 403). */
export class PrometheusRefusedError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'PrometheusRefusedError';
    this.status = status;
  }
}

type Sample = [number, string];
interface QueryAnswer {
  status?: string;
  errorType?: string;
  error?: string;
  data?: { resultType?: string; result?: unknown };
}

/** An instant query's answer is one series or a scalar; an answer far larger is not one to read. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
/** Agents kept for distinct TLS settings (one per CA bundle); the oldest closes beyond this. */
const MAX_AGENTS = 16;

/** GET {url}/api/v1/query?query=…&time=… with the target's headers, TLS trust and timeout (connecting and reading included). */
export class HttpPrometheusClient implements PrometheusClient {
  readonly #agents = new Map<string, Agent>();

  async query(target: PrometheusTarget, query: string, at: Date): Promise<number | undefined> {
    const { url, timeoutMs } = target;
    const endpoint = new URL('api/v1/query', url.endsWith('/') ? url : `${url}/`);
    endpoint.searchParams.set('query', query);
    endpoint.searchParams.set('time', (at.getTime() / 1000).toFixed(3));
    let status: number;
    let text: string;
    try {
      const response = await undiciFetch(endpoint, {
        headers: { ...target.headers, accept: 'application/json' },
        signal: AbortSignal.timeout(timeoutMs),
        dispatcher: this.#agent(target),
      });
      status = response.status;
      text = (await readLimited(response as unknown as Response, MAX_ANSWER_BYTES, 'the answer')).toString('utf8');
    } catch (error) {
      const why = error instanceof Error && error.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : messageOf(error);
      throw new Error(`Prometheus ${url}: ${why}`, { cause: error });
    }
    if (status === 401 || status === 403) throw refused(target, status, text);
    let answer: QueryAnswer | null;
    try {
      answer = JSON.parse(text) as QueryAnswer | null;
    } catch {
      throw new Error(`Prometheus ${url}: HTTP ${status}, not a JSON answer: ${text.slice(0, 200)}`);
    }
    // Prometheus answers a refused query with 400 or 422 and a JSON body saying why.
    if (answer?.status !== 'success') {
      throw new Error(`Prometheus ${url}: HTTP ${status}${answer?.errorType ? ` ${answer.errorType}` : ''}: ${answer?.error ?? 'no error given'}`);
    }
    return valueOf(answer.data);
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    const agents = [...this.#agents.values()];
    this.#agents.clear();
    await Promise.all(agents.map((agent) => agent.close()));
  }

  /** One Agent per TLS trust, so connections are reused and a rotated CA gets new ones. */
  #agent(target: PrometheusTarget): Agent {
    const key = `${target.insecureSkipVerify ? 'insecure' : 'verify'}:${target.ca === undefined ? 'public' : createHash('sha256').update(target.ca).digest('hex')}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      agent = new Agent({ connect: { ...(target.ca !== undefined ? { ca: target.ca } : {}), rejectUnauthorized: !target.insecureSkipVerify } });
      this.#agents.set(key, agent);
      if (this.#agents.size > MAX_AGENTS) {
        const [oldest, old] = this.#agents.entries().next().value!;
        this.#agents.delete(oldest);
        void old.close().catch(() => {});
      }
    }
    return agent;
  }
}

/** A 401 or 403, saying which credentials were sent (never the credentials themselves). */
function refused(target: PrometheusTarget, status: number, body: string): PrometheusRefusedError {
  const what = status === 401 ? 'HTTP 401 Unauthorized: the credentials were refused' : 'HTTP 403 Forbidden: these credentials may not query';
  const sent = target.credentials ? `sent ${target.credentials}` : 'no credentials sent: set rollout.analysis.prometheus.auth';
  const said = body.trim().slice(0, 200);
  return new PrometheusRefusedError(status, `Prometheus ${target.url}: ${what} (${sent})${said ? `: ${said}` : ''}`);
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
