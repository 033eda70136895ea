import type { ShadowSettings } from '../config/schema.ts';
import { isRerankError, messageOf } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import { compareRankings, rankingOfScores } from '../ranking/agreement.ts';
import { AgreementRecorder } from '../ranking/agreement-recorder.ts';

export type ShadowFailureReason = 'saturated' | 'unavailable' | 'refused' | 'error';

/** The same query and documents, to be scored again by the shadow version. */
export interface ShadowRequest {
  query: string;
  documents: readonly string[];
  truncate?: boolean | undefined;
}

/**
 * Scores a shadow request with `version`: its scores, one per document in order. Throws
 * ShadowUnavailable when the version cannot serve now; any other error is the version failing it.
 */
export type ShadowScorer = (version: string, request: ShadowRequest, signal: AbortSignal) => Promise<readonly number[]>;

/** The shadow version is not ready (loading, failed, disabled or removed by a reload): the scoring is skipped. */
export class ShadowUnavailable extends Error {}

export interface ShadowScoringOptions {
  metrics: ServerMetrics;
  logger: Logger;
  /** Uniform in [0, 1), for the `fraction` draw. */
  random: () => number;
  score: ShadowScorer;
}

/**
 * Shadow scoring (a version's `shadow` setting): of the requests a version answers, `fraction` are scored
 * again by the shadow version once the caller has its answer, and the two rankings are compared into
 * reranker_shadow_agreement_*. The in-process counterpart of the router's mirroring.
 *
 * Nothing here can slow or fail the caller's request: `offer` only draws, counts and copies the scores;
 * the scoring starts on a later turn of the event loop (after the answer is written), at most
 * `maxInFlight` per answering version run at once (past that one is skipped and counted saturated), and
 * every failure is counted in reranker_shadow_failures_total (logged once per kind), never thrown.
 */
export class ShadowScoring {
  readonly #options: ShadowScoringOptions;
  readonly #stop = new AbortController();
  /** Scorings under way, by answering version. */
  readonly #inFlight = new Map<string, number>();
  readonly #running = new Set<Promise<void>>();
  readonly #record: AgreementRecorder<ShadowFailureReason>;

  constructor(options: ShadowScoringOptions) {
    this.#options = options;
    const { metrics } = options;
    this.#record = new AgreementRecorder(
      {
        comparisons: metrics.shadowComparisons,
        topKOverlap: metrics.shadowTopKOverlap,
        kendallTau: metrics.shadowKendallTau,
        failures: metrics.shadowFailures,
        failuresMetric: 'reranker_shadow_failures_total',
        describe: (labels, reason) => `shadow scoring ${labels.from} → ${labels.to} gave no comparison (${reason})`,
      },
      options.logger,
    );
  }

  /** Shadow scorings under way for the answering version `from`. */
  inFlight(from: string): number {
    return this.#inFlight.get(from) ?? 0;
  }

  /**
   * Called with each request `from` answered, with `from`'s shadow setting under the request's config and
   * the scores it answered with: maybe scores the request again with the shadow version, in the background.
   */
  offer(from: string, settings: ShadowSettings | undefined, request: ShadowRequest, scores: readonly number[]): void {
    if (settings === undefined || this.#stop.signal.aborted) return;
    if (settings.fraction <= 0 || this.#options.random() >= settings.fraction) return;
    const labels = { from, to: settings.version };
    const under = this.inFlight(from);
    if (under >= settings.maxInFlight) {
      this.#fail(labels, 'saturated', `${settings.maxInFlight} shadow scorings already under way`);
      return;
    }
    this.#inFlight.set(from, under + 1);
    // Copies: the caller goes on with its own arrays.
    const copy: ShadowRequest = { query: request.query, documents: [...request.documents], truncate: request.truncate };
    const answered = [...scores];
    const run = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#run(labels, settings.topK, copy, answered))
      .catch((error: unknown) => this.#fail(labels, 'error', `comparing the rankings: ${messageOf(error)}`))
      .finally(() => {
        const left = this.inFlight(from) - 1;
        if (left > 0) this.#inFlight.set(from, left);
        else this.#inFlight.delete(from);
        this.#running.delete(run);
      });
    this.#running.add(run);
  }

  /** Cancels the scorings under way (the engine is closing; they are not counted) and waits for them to end. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled([...this.#running]);
  }

  async #run(labels: { from: string; to: string }, topK: number, request: ShadowRequest, answered: readonly number[]): Promise<void> {
    if (this.#stop.signal.aborted) return;
    let shadowScores: readonly number[];
    try {
      shadowScores = await this.#options.score(labels.to, request, this.#stop.signal);
    } catch (error) {
      if (this.#stop.signal.aborted) return;
      // A runtime of `to` that began to drain meanwhile (a reload replaced its model) refuses as unavailable.
      if (error instanceof ShadowUnavailable || (isRerankError(error) && error.kind === 'unavailable')) return this.#fail(labels, 'unavailable', error.message);
      if (isRerankError(error) && error.kind === 'overloaded') return this.#fail(labels, 'refused', error.message);
      return this.#fail(labels, 'error', `version ${labels.to}: ${messageOf(error)}`);
    }
    this.#record.compared(labels, compareRankings(rankingOfScores(answered), rankingOfScores(shadowScores), topK));
  }

  #fail(labels: { from: string; to: string }, reason: ShadowFailureReason, message: string): void {
    this.#record.failed(labels, reason, message);
  }
}
