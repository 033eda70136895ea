import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { MirrorSettings } from '../config/router-schema.ts';
import { MIRROR_HEADER, VERSION_HEADER } from '../http/version-request.ts';
import type { Logger } from '../logger.ts';
import type { RouterMetrics } from './metrics.ts';
import { forward, UpstreamFailure, type Agents } from './proxy.ts';
import { compareRankings, type Ranking } from '../ranking/agreement.ts';
import { AgreementRecorder } from '../ranking/agreement-recorder.ts';
import { parseRanking } from './ranking-agreement.ts';
import { isUnpinned, mirrorProblem, upstreamUrl, type Route, type RoutingTable } from './routing-table.ts';

/** Marks a mirrored request, so a pod can tell it from client traffic (its answer goes nowhere). */
export { MIRROR_HEADER };

/** The largest answer (of either version) kept for a comparison; an answer past it is counted too_large. */
export const MIRROR_MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export type MirrorFailureReason =
  | 'saturated'
  | 'unavailable'
  | 'status'
  | 'refused'
  | 'reset'
  | 'timeout'
  | 'unresolved'
  | 'other'
  | 'too_large'
  | 'unparsable'
  | 'from_unparsable';

export interface MirrorerOptions {
  metrics: RouterMetrics;
  logger: Logger;
  agents: Agents;
  /** Whether an upstream takes requests now (the router's upstream health). */
  available: (upstream: string) => boolean;
  /** Until the mirrored request's response headers arrive, and again for its body; read per mirror. */
  timeoutMs: () => number;
}

/** What one request to be mirrored carries from the proxy handler. */
export interface MirrorRequest {
  table: RoutingTable;
  route: Route;
  /** The client's request: path and query as sent to `from`, and the headers sent to it. */
  pathAndQuery: string;
  headers: OutgoingHttpHeaders;
  body: Buffer;
  method: string;
}

/**
 * The router's mirroring (router.yaml `mirror`): a share of `from`'s unpinned 2xx answers are recorded
 * as they stream to the client; once the client has the whole answer, the same request goes to `to`,
 * pinned by the version header and marked with X-Rerank-Mirror, and the two rankings are compared.
 * Nothing here can slow or fail the client's request: the copy starts after its answer, at most
 * `maxInFlight` run at once (past that a mirror is skipped and counted), and every failure is counted
 * (and logged once per kind), never thrown. Mirrored requests do not count toward `to`'s health.
 */
export class Mirrorer {
  readonly #options: MirrorerOptions;
  readonly #stop = new AbortController();
  readonly #record: AgreementRecorder<MirrorFailureReason>;
  #inFlight = 0;

  constructor(options: MirrorerOptions) {
    this.#options = options;
    const { metrics } = options;
    this.#record = new AgreementRecorder(
      {
        comparisons: metrics.agreementComparisons,
        topKOverlap: metrics.agreementTopKOverlap,
        kendallTau: metrics.agreementKendallTau,
        failures: metrics.mirrorFailures,
        failuresMetric: 'reranker_router_mirror_failures_total',
        describe: (labels, reason) => `mirror ${labels.from} → ${labels.to} failed (${reason})`,
      },
      options.logger,
    );
  }

  /** Mirrors under way (reserved slots included). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Called once `from`'s response headers are in: when this request is to be mirrored, the response
   * stream to give the client in place of `upstream` (the same bytes, recorded on the way); otherwise
   * undefined and nothing is done.
   */
  tap(request: MirrorRequest, status: number, upstream: IncomingMessage, random: () => number): Readable | undefined {
    const { mirror } = request.table;
    if (!mirror || this.#stop.signal.aborted) return undefined;
    const { choice } = request.route;
    if (choice.version !== mirror.from || !isUnpinned(choice) || status < 200 || status >= 300) return undefined;
    if (mirror.fraction <= 0 || random() >= mirror.fraction) return undefined;
    const labels = { from: mirror.from, to: mirror.to };
    const problem = mirrorProblem(request.table);
    if (problem !== undefined) {
      this.#fail(labels, 'unavailable', problem);
      return undefined;
    }
    if (this.#inFlight >= mirror.maxInFlight) {
      this.#fail(labels, 'saturated', `${mirror.maxInFlight} mirrored requests already under way`);
      return undefined;
    }
    this.#inFlight += 1;
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    let settled = false;
    const recorder = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        if (!tooLarge) {
          size += chunk.length;
          if (size > MIRROR_MAX_ANSWER_BYTES) {
            tooLarge = true;
            chunks.length = 0;
          } else {
            chunks.push(chunk);
          }
        }
        callback(null, chunk);
      },
    });
    upstream.on('error', (error) => recorder.destroy(error));
    upstream.pipe(recorder);
    const settle = (answered: boolean) => {
      if (settled) return;
      settled = true;
      if (!answered) {
        // The client went away (or the answer broke off): nothing to compare, and the upstream's answer is dropped.
        this.#inFlight -= 1;
        upstream.destroy();
        return;
      }
      if (tooLarge) {
        this.#inFlight -= 1;
        this.#fail(labels, 'too_large', `${mirror.from}'s answer is over ${MIRROR_MAX_ANSWER_BYTES} bytes`);
        return;
      }
      const answer = Buffer.concat(chunks);
      // After the client's answer: the copy runs on its own, its outcome only counted.
      setImmediate(() => {
        this.#send(request, mirror, decode(answer, upstream.headers['content-encoding']))
          .catch((error: unknown) => this.#fail(labels, 'other', `comparing the answers: ${(error as Error).message}`))
          .finally(() => (this.#inFlight -= 1));
      });
    };
    recorder.once('end', () => settle(true));
    recorder.once('close', () => settle(false));
    return recorder;
  }

  /** Drop the mirrors under way (the router is closing); they are not counted. */
  stop(): void {
    this.#stop.abort();
  }

  async #send(request: MirrorRequest, mirror: MirrorSettings, answer: Buffer | Error): Promise<void> {
    const labels = { from: mirror.from, to: mirror.to };
    let fromRanking: Ranking;
    try {
      if (answer instanceof Error) throw answer;
      fromRanking = parseRanking(answer);
    } catch (error) {
      return this.#fail(labels, 'from_unparsable', `${mirror.from}'s answer is no ranking: ${(error as Error).message}`);
    }
    const upstream = request.table.versions.find((v) => v.name === mirror.to)?.upstream;
    if (upstream === undefined || !this.#options.available(upstream)) {
      return this.#fail(labels, 'unavailable', `version ${mirror.to}: ${upstream === undefined ? 'no upstream' : `upstream ${upstream} is out of rotation`}`);
    }
    const timeoutMs = this.#options.timeoutMs();
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([this.#stop.signal, timeout]);
    const headers: OutgoingHttpHeaders = { ...request.headers, [VERSION_HEADER.toLowerCase()]: mirror.to, [MIRROR_HEADER.toLowerCase()]: '1' };
    delete headers['accept-encoding'];
    this.#options.metrics.mirrored.inc(labels);
    let text: Buffer;
    let status: number;
    try {
      const res = await forward({
        url: upstreamUrl(upstream, request.pathAndQuery),
        method: request.method,
        headers,
        body: request.body,
        timeoutMs,
        signal,
        version: mirror.to,
        agents: this.#options.agents,
      });
      status = res.statusCode ?? 0;
      text = await readAnswer(res, signal);
    } catch (error) {
      if (this.#stop.signal.aborted) return;
      if (error instanceof UpstreamFailure) return this.#fail(labels, error.kind, error.message);
      if (error instanceof AnswerTooLarge) return this.#fail(labels, 'too_large', error.message);
      if (timeout.aborted) return this.#fail(labels, 'timeout', `version ${mirror.to}: no whole answer within ${timeoutMs} ms`);
      return this.#fail(labels, 'other', `version ${mirror.to}: ${(error as Error).message}`);
    }
    if (status < 200 || status >= 300) return this.#fail(labels, 'status', `version ${mirror.to} answered the mirrored request ${status}`);
    let toRanking: Ranking;
    try {
      toRanking = parseRanking(text);
    } catch (error) {
      return this.#fail(labels, 'unparsable', `version ${mirror.to}'s answer is no ranking: ${(error as Error).message}`);
    }
    this.#record.compared(labels, compareRankings(fromRanking, toRanking, mirror.topK));
  }

  #fail(labels: { from: string; to: string }, reason: MirrorFailureReason, message: string): void {
    this.#record.failed(labels, reason, message);
  }
}

class AnswerTooLarge extends Error {}

/** The whole body of a mirrored request's answer, decoded; aborted by `signal`. */
function readAnswer(res: IncomingMessage, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = () => res.destroy(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    const done = (outcome: () => void) => {
      signal.removeEventListener('abort', onAbort);
      outcome();
    };
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MIRROR_MAX_ANSWER_BYTES) res.destroy(new AnswerTooLarge(`the answer is over ${MIRROR_MAX_ANSWER_BYTES} bytes`));
      else chunks.push(chunk);
    });
    res.once('end', () =>
      done(() => {
        const body = decode(Buffer.concat(chunks), res.headers['content-encoding']);
        if (body instanceof Error) reject(body);
        else resolve(body);
      }),
    );
    res.once('error', (error) => done(() => reject(error)));
    res.once('close', () => done(() => (res.complete ? undefined : reject(new Error('the answer broke off')))));
  });
}

/** A body as its Content-Encoding says (gzip, deflate, br, identity); an Error when it does not decode. */
function decode(body: Buffer, encoding: string | undefined): Buffer | Error {
  try {
    switch ((encoding ?? 'identity').trim().toLowerCase()) {
      case 'identity':
      case '':
        return body;
      case 'gzip':
      case 'x-gzip':
        return zlib.gunzipSync(body);
      case 'deflate':
        return zlib.inflateSync(body);
      case 'br':
        return zlib.brotliDecompressSync(body);
      default:
        return new Error(`content-encoding ${encoding} is not understood`);
    }
  } catch (error) {
    return new Error(`content-encoding ${encoding}: ${(error as Error).message}`);
  }
}
