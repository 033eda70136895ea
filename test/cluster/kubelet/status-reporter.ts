import { apiCode, log } from './helpers.ts';

/** A pod's status sent through the status subresource: serialized, coalesced, sent only when it changed. */
export class StatusReporter {
  readonly #key: string;
  readonly #pod: { readonly gone: boolean };
  readonly #status: () => Record<string, unknown>;
  readonly #patch: (status: Record<string, unknown>) => Promise<void>;
  #reporting = false;
  #dirty = false;
  #lastReport = '';
  #retryTimer: NodeJS.Timeout | undefined;

  /** `status` is read when a report is sent; none is sent once the pod is `gone`. */
  constructor(key: string, pod: { readonly gone: boolean }, status: () => Record<string, unknown>, patch: (status: Record<string, unknown>) => Promise<void>) {
    this.#key = key;
    this.#pod = pod;
    this.#status = status;
    this.#patch = patch;
  }

  /** Report status soon; reports are serialized and coalesced, and sent only when something changed. */
  schedule(): void {
    this.#dirty = true;
    if (!this.#reporting) void this.#flush();
  }

  /** No retry after this (the pod is gone). */
  cancel(): void {
    clearTimeout(this.#retryTimer);
  }

  async #flush(): Promise<void> {
    this.#reporting = true;
    try {
      while (this.#dirty && !this.#pod.gone) {
        this.#dirty = false;
        const status = this.#status();
        const text = JSON.stringify(status);
        if (text === this.#lastReport) continue;
        try {
          await this.#patch(status);
          this.#lastReport = text;
        } catch (error) {
          if (apiCode(error) === 404) return;
          log(`${this.#key}: reporting status (retrying in 1 s)`, error);
          clearTimeout(this.#retryTimer);
          this.#retryTimer = setTimeout(() => {
            if (!this.#pod.gone) this.schedule();
          }, 1000);
          return;
        }
      }
    } finally {
      this.#reporting = false;
    }
  }
}
