import type { Counter, Histogram } from 'prom-client';
import type { Logger } from '../logger.ts';
import type { Agreement } from './agreement.ts';

type PairLabels = { from: string; to: string };

/** The series one kind of comparison (the router's mirroring, the engine's shadow scoring) records into. */
export interface AgreementSeries<Reason extends string> {
  comparisons: Counter<'from' | 'to'>;
  topKOverlap: Histogram<'from' | 'to'>;
  kendallTau: Histogram<'from' | 'to'>;
  failures: Counter<'from' | 'to' | 'reason'>;
  /** The failures counter's name, for the log line that points to it. */
  failuresMetric: string;
  /** What a failure is called in the log, e.g. `mirror v1 → v2 failed`. */
  describe(labels: PairLabels, reason: Reason): string;
}

/**
 * Records what comparing two versions' rankings gives: a comparison with what it measured (an overlap
 * that could only be 1 is absent, and so not observed), or a failure, counted always and logged at warn
 * the first time each (pair, reason) happens, at debug after.
 */
export class AgreementRecorder<Reason extends string> {
  readonly #series: AgreementSeries<Reason>;
  readonly #logger: Logger;
  readonly #logged = new Set<string>();

  constructor(series: AgreementSeries<Reason>, logger: Logger) {
    this.#series = series;
    this.#logger = logger;
  }

  compared(labels: PairLabels, agreement: Agreement): void {
    this.#series.comparisons.inc(labels);
    if (agreement.topKOverlap !== undefined) this.#series.topKOverlap.observe(labels, agreement.topKOverlap);
    if (agreement.kendallTau !== undefined) this.#series.kendallTau.observe(labels, agreement.kendallTau);
  }

  failed(labels: PairLabels, reason: Reason, message: string): void {
    this.#series.failures.inc({ ...labels, reason });
    const kind = `${labels.from}\u0000${labels.to}\u0000${reason}`;
    const first = !this.#logged.has(kind);
    this.#logged.add(kind);
    const text = `${this.#series.describe(labels, reason)}: ${message}`;
    if (first) this.#logger.warn({ ...labels, reason }, `${text}; counted in ${this.#series.failuresMetric}, logged once per reason`);
    else this.#logger.debug({ ...labels, reason }, text);
  }
}
