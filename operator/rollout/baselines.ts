import type { RolloutStatus } from '../crd/rollout-spec.ts';
import type { PodScrape } from './figures.ts';

interface Baseline {
  revision: string;
  step: number;
  stepStartedAt: string;
  at: Date;
  scrapes: PodScrape[];
}

/**
 * The scrape each running step's figures are measured from, per resource, in memory. An operator that
 * restarts (or a new leader) has none: the step's window starts again from its first scrape, and the
 * rollout's status says so; the step itself is not repeated.
 */
export class RolloutBaselines {
  readonly #byResource = new Map<string, Baseline>();

  /** The baseline of this step of this rollout, if one was taken. */
  get(resource: string, status: RolloutStatus): Baseline | undefined {
    const baseline = this.#byResource.get(resource);
    return baseline && baseline.revision === status.revision && baseline.step === status.step && baseline.stepStartedAt === status.stepStartedAt
      ? baseline
      : undefined;
  }

  set(resource: string, status: RolloutStatus, scrapes: PodScrape[], at: Date): void {
    this.#byResource.set(resource, { revision: status.revision, step: status.step, stepStartedAt: status.stepStartedAt, at, scrapes });
  }

  forget(resource: string): void {
    this.#byResource.delete(resource);
  }
}
