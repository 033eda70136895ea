import { setTimeout as sleep } from 'node:timers/promises';
import { describeFaults, faultsActive, type FaultSettings } from '../config/faults.ts';
import type { RerankConfig } from '../config/schema.ts';
import { cancelled, RerankError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';

/**
 * A version's `faults` (server/config/faults.ts), applied to a request once its version was chosen: the
 * delay first, then the failure, as Istio applies a VirtualService's delay before its abort. A failed
 * request is never scored. What is injected is counted in reranker_injected_faults_total{version,kind};
 * the request itself is counted by the HTTP layer like any other (its status, its duration).
 */

/** An injected failure: a RerankError of the kind whose status the config asked for, told apart so it is not logged as a fault of the server. */
export class InjectedFault extends RerankError {
  constructor(version: string, faults: FaultSettings) {
    super(
      faults.errorStatus === 503 ? 'unavailable' : 'model',
      `fault injected by config: versions.${version}.faults.errorRatio is ${faults.errorRatio} (errorStatus ${faults.errorStatus})`,
    );
    this.name = 'InjectedFault';
  }
}

export function isInjectedFault(error: unknown): error is InjectedFault {
  return error instanceof InjectedFault;
}

export class FaultInjection {
  readonly #metrics: ServerMetrics;
  readonly #logger: Logger;
  readonly #random: () => number;
  /** The settings last announced per version (JSON), so a reload that keeps them says nothing. */
  readonly #announced = new Map<string, string>();

  constructor(options: { metrics: ServerMetrics; logger: Logger; random: () => number }) {
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#random = options.random;
  }

  /**
   * Called with each config put in force (start, reload): a warning for every version whose injection
   * starts or changes, an info line for one whose injection ends. Nothing for a reload that keeps them.
   */
  configure(config: RerankConfig): void {
    const seen = new Set<string>();
    for (const [version, settings] of Object.entries(config.versions)) {
      const faults = settings.enabled && faultsActive(settings.faults) ? settings.faults : undefined;
      if (!faults) continue;
      seen.add(version);
      const key = JSON.stringify(faults);
      if (this.#announced.get(version) === key) continue;
      this.#announced.set(version, key);
      this.#logger.warn(
        { version, faults },
        `fault injection active on version ${version}: ${describeFaults(faults)}; its clients see these failures and delays (reranker_injected_faults_total)`,
      );
    }
    for (const version of [...this.#announced.keys()]) {
      if (seen.has(version)) continue;
      this.#announced.delete(version);
      this.#logger.info({ version }, `fault injection ended on version ${version}`);
    }
  }

  /**
   * Delays and fails this request of `version` as its `faults` say. A ratio of 1 injects without a draw, so
   * a seeded random serves the version choice as before. A client that goes away during the delay ends it.
   */
  async inject(version: string, faults: FaultSettings | undefined, signal: AbortSignal | undefined): Promise<void> {
    if (!faultsActive(faults)) return;
    if (faults.delayMs > 0 && this.#draw(faults.delayRatio)) {
      this.#metrics.injectedFaults.inc({ version, kind: 'delay' });
      try {
        await sleep(faults.delayMs, undefined, signal ? { signal } : {});
      } catch (error) {
        if (signal?.aborted) throw cancelled('the caller went away during an injected delay');
        throw error;
      }
    }
    if (faults.errorRatio > 0 && this.#draw(faults.errorRatio)) {
      this.#metrics.injectedFaults.inc({ version, kind: 'error' });
      throw new InjectedFault(version, faults);
    }
  }

  #draw(ratio: number): boolean {
    if (ratio >= 1) return true;
    if (ratio <= 0) return false;
    return this.#random() < ratio;
  }
}
