import { setTimeout as sleep } from 'node:timers/promises';
import { RerankError } from '../../server/errors.ts';
import type { EngineInfo, Reranker, RerankOutcome, RerankRequest, VersionInfo } from '../../server/engine/types.ts';

export interface FakeRerankerOptions {
  /** Configured versions; the first is the default. */
  versions?: string[];
  /** Logit per document text; texts not in the map score by length. */
  logits?: Record<string, number>;
  ready?: boolean;
}

/**
 * A Reranker with deterministic scores and no model: the logit of a document is taken from a map, else
 * `length / 10 - 2` (longer scores higher). It records every call, can be told to fail or to wait, and
 * honours the abort signal while waiting, as the real core does.
 */
export class FakeReranker implements Reranker {
  readonly calls: RerankRequest[] = [];
  /** Calls whose signal aborted while they waited. */
  readonly aborted: RerankRequest[] = [];
  readonly versions: string[];
  ready: boolean;
  private readonly logits: Record<string, number>;
  private failure: unknown;
  private delayMs = 0;
  private started: Array<() => void> = [];

  constructor(options: FakeRerankerOptions = {}) {
    this.versions = options.versions ?? ['v1', 'v2'];
    this.logits = options.logits ?? {};
    this.ready = options.ready ?? true;
  }

  /** Every later call throws this (undefined: stop failing). */
  failWith(error: unknown): this {
    this.failure = error;
    return this;
  }

  /** Every later call waits this long before answering. */
  delay(ms: number): this {
    this.delayMs = ms;
    return this;
  }

  /** Resolves when the next call reaches the core. */
  nextCall(): Promise<void> {
    return new Promise((resolve) => this.started.push(resolve));
  }

  logitOf(text: string): number {
    return Object.hasOwn(this.logits, text) ? (this.logits[text] ?? 0) : text.length / 10 - 2;
  }

  async rerank(request: RerankRequest): Promise<RerankOutcome> {
    this.calls.push(request);
    for (const resolve of this.started.splice(0)) resolve();
    if (this.delayMs > 0) {
      try {
        await sleep(this.delayMs, undefined, request.signal ? { signal: request.signal } : {});
      } catch {
        this.aborted.push(request);
        throw new RerankError('cancelled', 'the caller went away');
      }
    }
    if (this.failure !== undefined) throw this.failure;
    const logits = request.documents.map((document) => this.logitOf(document));
    return {
      version: this.chooseVersion(request),
      logits,
      scores: logits.map((logit) => 1 / (1 + Math.exp(-logit))),
      tokens: request.documents.reduce((sum, document) => sum + request.query.length + document.length, 0),
      timings: { tokenizeSeconds: 0.002, queueSeconds: 0.003, inferenceSeconds: 0.0104 },
    };
  }

  info(): EngineInfo {
    const versions: VersionInfo[] = this.versions.map((name) => ({
      name,
      state: 'ready',
      enabled: true,
      description: `fake ${name}`,
      device: 'cpu',
      weight: name === this.versions[0] ? 100 : 0,
      modelPath: `/models/${name}`,
      inputs: ['input_ids', 'attention_mask', 'token_type_ids'],
      synthetic: false,
    }));
    return {
      defaultVersion: this.versions[0] ?? 'v1',
      configHash: '0123456789abcdef',
      versions,
      devices: [{ device: 'cpu', versions: [...this.versions] }],
      limits: {
        maxLength: 512,
        maxBatchTokens: 16384,
        maxBatchSize: 32,
        maxQueuedPairs: 8192,
        maxDocuments: 1000,
        maxBodyBytes: 8 * 1024 * 1024,
      },
    };
  }

  isReady(): boolean {
    return this.ready;
  }

  private chooseVersion(request: RerankRequest): string {
    for (const wanted of [request.pathVersion, request.headerVersion]) {
      if (wanted && this.versions.includes(wanted)) return wanted;
    }
    return this.versions[0] ?? 'v1';
  }
}
