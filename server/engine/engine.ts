import type { LoadedConfig } from '../config/load.ts';
import type { RerankConfig } from '../config/schema.ts';
import { cancelled, failedVersion, RerankError } from '../errors.ts';
import { DEFAULT_FALLBACK_INTERVAL_MS, FallbackMonitor, type GpuVersion } from '../gpu/fallback-monitor.ts';
import type { GpuProbe, PlacementDevice } from '../gpu/probe.ts';
import type { Logger } from '../logger.ts';
import type { ServerMetrics } from '../metrics.ts';
import type { QueueLimits } from './batch-queue.ts';
import { engineInfo } from './engine-info.ts';
import { FaultInjection } from './fault-injection.ts';
import { loadOnnxModel, type LoadOnnxModelOptions, type PairScorer } from './onnx-model.ts';
import type { EncodedPair } from './pair-tokenizer.ts';
import { PromptTokenizer } from './prompt-encoder.ts';
import { ShadowScoring, ShadowUnavailable, type ShadowRequest } from './shadow.ts';
import type { CpuFeatures } from './cpu-features.ts';
import { Runtime, sameSpec, type RuntimeContext, type RuntimeSpec } from './runtime.ts';
import { TokenizerCache } from './tokenizer-cache.ts';
import type { EngineInfo, RerankOutcome, RerankRequest, Reranker } from './types.ts';
import { chooseVersion, type VersionCandidate } from './version-choice.ts';
import { isGone, newSlot, publishVersionInfo, versionState, wantedDevice, type VersionSlot } from './version-slot.ts';

/**
 * The serving core: every enabled version's tokenizer, ONNX session and batch queue, and the choice of
 * version per request. Knows nothing of HTTP.
 *
 * Live reconfiguration. `apply()` swaps the config in one assignment: a request reads it once when it
 * starts (limits, weights, default) and queues read it before every batch, so knobs take effect on the
 * next request and the next batch, and no request sees half of two configs. Version work — loading,
 * replacing, draining — is then driven by a level-based reconcile that compares the config in force
 * with the sessions that exist; reconciles run one at a time, and applies that arrive while one runs
 * share the next one (it reads the newest config, so the last apply wins).
 *
 * A version serves through one runtime (tokenizer + session + queue). A model or device change loads a
 * second runtime beside the first, switches traffic to it once warm, then drains and frees the first:
 * every request runs start to end on the runtime it picked, which counts it in flight, and a runtime is
 * closed only once nothing is in flight on it. The GPU fallback monitor moves versions between execution
 * providers with the same mechanism.
 *
 * Default version during a reload: when a new config names a default that cannot serve yet (just added
 * or enabled, so still loading), the version that answered default traffic before keeps answering it —
 * even if the new config disables or removes it — until the new default is ready; then it is drained as
 * the config says. If the new default fails to load, the previous one keeps standing in (logged, and
 * shown as `servingDefault` in info) until a later config settles it.
 *
 * Shadow scoring: a version with `shadow` offers each request it answered to ShadowScoring (shadow.ts),
 * which may score it again with the shadow version once the answer is out, through `#shadowScore`: the
 * same runtime, queue and inference metrics as a request, but none of a request's own metrics.
 */

export interface RerankEngineOptions {
  loaded: LoadedConfig;
  metrics: ServerMetrics;
  logger: Logger;
  /** Uniform in [0, 1), for the weighted version draw; `Math.random` unless a test seeds it. */
  random?: () => number;
  /** Where ONNX sessions run: a worker thread each (default), or the main thread. */
  modelThread?: 'worker' | 'main';
  /** Threads of each ORT session; ORT's default (one per core) when absent. */
  intraOpNumThreads?: number;
  /** Loads one model: `loadOnnxModel` unless a test stands in for it. */
  loadModel?: (options: LoadOnnxModelOptions) => Promise<PairScorer>;
  /** The CPU's int8 instructions for `variant: auto`; /proc/cpuinfo's unless a test stands in for it. */
  cpuFeatures?: () => CpuFeatures;
  /** Reads free GPU memory for the GPU → CPU fallback monitor; no monitor without one. */
  gpuProbe?: GpuProbe;
  /** Milliseconds between GPU memory probes (default 5000). */
  fallbackIntervalMs?: number;
}

export type VersionAction = 'loaded' | 'unloaded' | 'replaced' | 'updated' | 'failed' | 'unchanged';

export interface VersionApplyResult {
  name: string;
  /**
   * `loaded`: a session was loaded and takes traffic. `replaced`: a new session (model or device change)
   * took over and the old one was drained and freed. `unloaded`: disabled or removed, drained and freed.
   * `updated`: only its knobs changed (weight, description, ...). `failed`: a load failed (`error` says
   * why); when the version was serving, its old session keeps serving.
   */
  action: VersionAction;
  error?: string;
}

/** What an apply did, once its version work converged. */
export interface ApplyReport {
  /** The config the version work converged to: this apply's, or a newer one applied meanwhile. */
  configHash: string;
  appliedAt: string;
  defaultVersion: string;
  /** The version answering default traffic when it is not `defaultVersion` (see the class comment). */
  servingDefault?: string;
  versions: VersionApplyResult[];
}

export class RerankEngine implements Reranker {
  /** Resolves when every enabled version is ready or failed. */
  readonly loaded: Promise<void>;
  #loaded: LoadedConfig;
  #appliedAt = new Date();
  readonly #metrics: ServerMetrics;
  readonly #logger: Logger;
  readonly #random: () => number;
  readonly #versions = new Map<string, VersionSlot>();
  /** What every runtime loads with; its tokenizer cache keeps tokenizers for versions that come back. */
  readonly #runtimes: RuntimeContext;
  /** Requests accepted and not yet answered: shutdown waits for them. */
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Reconciles run one after another on this chain. */
  #work: Promise<unknown> = Promise.resolve();
  /** A reconcile queued and not started: later applies share it. */
  #queued: { retryFailed: boolean; report: Promise<ApplyReport> } | undefined;
  /** Answers default traffic while the configured default cannot serve yet (see the class comment). */
  #standIn: string | undefined;
  #started = false;
  readonly #monitor: FallbackMonitor | undefined;
  /** Versions' `shadow` settings: answered requests scored again by another version and compared. */
  readonly #shadows: ShadowScoring;
  /** Versions' `faults` settings: delays and failures injected into their requests. */
  readonly #faults: FaultInjection;
  #closing: Promise<void> | undefined;

  private constructor(options: RerankEngineOptions) {
    this.#loaded = options.loaded;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#random = options.random ?? Math.random;
    this.#runtimes = {
      loadModel: options.loadModel ?? loadOnnxModel,
      modelThread: options.modelThread ?? 'worker',
      intraOpNumThreads: options.intraOpNumThreads,
      ...(options.cpuFeatures ? { cpuFeatures: options.cpuFeatures } : {}),
      tokenizers: new TokenizerCache(),
      promptTokenizers: new TokenizerCache({ load: (o) => PromptTokenizer.load(o) }),
      sessions: new Set(),
      config: () => this.#loaded.config,
      limits: () => this.#limits(),
      metrics: this.#metrics,
      logger: this.#logger,
      onCrash: (runtime) => {
        const slot = this.#versions.get(runtime.version);
        if (slot) this.#publish(slot);
      },
    };
    this.#shadows = new ShadowScoring({
      metrics: this.#metrics,
      logger: this.#logger,
      random: this.#random,
      score: (version, request, signal) => this.#shadowScore(version, request, signal),
    });
    this.#faults = new FaultInjection({ metrics: this.#metrics, logger: this.#logger, random: this.#random });
    this.#faults.configure(options.loaded.config);
    this.#ensureSlots(options.loaded.config);
    this.loaded = this.#schedule(true).then((report) => {
      this.#started = true;
      this.#logReport('versions loaded', report);
    });
    if (options.gpuProbe) {
      this.#monitor = new FallbackMonitor({
        probe: options.gpuProbe,
        host: { gpuVersions: () => this.#gpuVersions(), place: (name, device, reason) => this.#place(name, device, reason) },
        metrics: this.#metrics,
        logger: this.#logger,
        intervalMs: options.fallbackIntervalMs ?? DEFAULT_FALLBACK_INTERVAL_MS,
      });
      this.#monitor.start();
    }
  }

  /** Loads and warms up every enabled version; resolves when each is ready or failed. */
  static async create(options: RerankEngineOptions): Promise<RerankEngine> {
    const engine = RerankEngine.start(options);
    await engine.loaded;
    return engine;
  }

  /** Starts loading and returns at once: `isReady()` turns true when loading is done (see `loaded`). */
  static start(options: RerankEngineOptions): RerankEngine {
    return new RerankEngine(options);
  }

  /** The config in force. */
  get config(): RerankConfig {
    return this.#loaded.config;
  }

  get configHash(): string {
    return this.#loaded.hash;
  }

  /** The GPU → CPU fallback monitor, when a probe was given. */
  get fallbackMonitor(): FallbackMonitor | undefined {
    return this.#monitor;
  }

  /**
   * Puts a new config in force at once (knobs, weights, default: the next request sees them), then loads,
   * replaces and drains versions to match it. Resolves when that version work has converged, with what
   * happened to each version. Applies are serialized: one arriving while another's version work runs
   * swaps its knobs at once and has its version work done next.
   */
  apply(loaded: LoadedConfig): Promise<ApplyReport> {
    if (this.#closing) return Promise.reject(new RerankError('unavailable', 'the server is shutting down'));
    const servingBefore = this.#effectiveDefault(this.#loaded.config);
    const couldServe = this.#servable(servingBefore);
    this.#loaded = loaded;
    this.#appliedAt = new Date();
    const { config } = loaded;
    this.#faults.configure(config);
    this.#ensureSlots(config);
    if (this.#servable(config.defaultVersion)) this.#standIn = undefined;
    else if (couldServe && servingBefore !== config.defaultVersion) {
      this.#standIn = servingBefore;
      this.#logger.info(
        { defaultVersion: config.defaultVersion, servingDefault: servingBefore },
        `default version ${config.defaultVersion} is not ready yet: ${servingBefore} answers default traffic until it is`,
      );
    }
    for (const slot of this.#versions.values()) this.#publish(slot);
    return this.#schedule(true);
  }

  /** Loads again the versions whose load failed under the config in force (SIGHUP); the others are untouched. */
  retryFailed(): Promise<ApplyReport> {
    return this.#schedule(true);
  }

  /** Sessions loaded and not yet freed (each a worker thread, unless sessions run on the main thread). */
  liveSessions(): number {
    return this.#runtimes.sessions.size;
  }

  /** Parsed tokenizers held (pair and prompt tokenizers), and how many of them no version uses (kept for reuse, bounded). */
  tokenizers(): { held: number; idle: number } {
    const { tokenizers, promptTokenizers } = this.#runtimes;
    return { held: tokenizers.size + promptTokenizers.size, idle: tokenizers.idle + promptTokenizers.idle };
  }

  rerank(request: RerankRequest): Promise<RerankOutcome> {
    if (this.#closing) return Promise.reject(new RerankError('unavailable', 'the server is shutting down'));
    const answer = this.#rerank(request);
    this.#inFlight.add(answer);
    const forget = () => this.#inFlight.delete(answer);
    answer.then(forget, forget);
    return answer;
  }

  async #rerank(request: RerankRequest): Promise<RerankOutcome> {
    // One read of the config: the whole request runs under it, whatever apply() does meanwhile.
    const config = this.#loaded.config;
    const { maxDocuments } = config.serving;
    if (typeof request.query !== 'string') throw new RerankError('validation', 'query: must be a string', { field: 'query' });
    if (!Array.isArray(request.documents) || request.documents.length === 0) {
      throw new RerankError('validation', 'documents: must hold at least one document', { field: 'documents' });
    }
    if (request.documents.length > maxDocuments) {
      throw new RerankError('payload_too_large', `documents: ${request.documents.length} documents, more than the limit of ${maxDocuments}`, {
        field: 'documents',
      });
    }
    if (request.signal?.aborted) throw cancelled();

    const choice = chooseVersion({
      versions: this.#candidates(config),
      defaultVersion: this.#effectiveDefault(config),
      pathVersion: request.pathVersion,
      headerVersion: request.headerVersion,
      stickyKey: request.stickyKey,
      random: this.#random,
    });
    const slot = this.#versions.get(choice.version);
    const runtime = slot?.active;
    if (!runtime || runtime.state !== 'ready') {
      const why = slot ? (slot.error ?? runtime?.error ?? versionState(slot, config)) : 'not configured';
      throw new RerankError('unavailable', `version ${choice.version} cannot serve (${why})`);
    }
    // Counted from the pick on, in the same turn: a retiring runtime closes only once this is back to 0.
    runtime.enter();
    const inflight = this.#metrics.inflight.labels({ version: runtime.version });
    inflight.inc();
    try {
      // After the pick, as a mesh injects them after routing: the version's own failures and delays, counted as its requests.
      await this.#faults.inject(runtime.version, config.versions[runtime.version]?.faults, request.signal);
      const outcome = await this.#score(runtime, config, request, choice.fallbackFrom);
      this.#shadows.offer(runtime.version, config.versions[runtime.version]?.shadow, request, outcome.scores);
      return outcome;
    } catch (error) {
      // Counted as this version's failure (reranker_requests_total{version}), not as one before any version.
      throw failedVersion(error, runtime.version);
    } finally {
      inflight.dec();
      runtime.leave();
    }
  }

  /**
   * A shadow scoring: the same query and documents scored by `version`'s runtime under the config in
   * force now. Not a request: not in reranker_inflight_requests (the HTTP layer's request metrics never
   * see it), but held in flight on the runtime, so a runtime being replaced drains it like a request.
   */
  async #shadowScore(version: string, request: ShadowRequest, signal: AbortSignal): Promise<readonly number[]> {
    const config = this.#loaded.config;
    const slot = this.#versions.get(version);
    const runtime = slot?.active;
    if (!runtime || runtime.state !== 'ready') {
      const why = slot ? (slot.error ?? runtime?.error ?? versionState(slot, config)) : 'not configured';
      throw new ShadowUnavailable(`version ${version} cannot serve (${why})`);
    }
    runtime.enter();
    try {
      const shadowRequest: RerankRequest = { query: request.query, documents: [...request.documents], signal };
      if (request.truncate !== undefined) shadowRequest.truncate = request.truncate;
      const outcome = await this.#score(runtime, config, shadowRequest);
      return outcome.scores;
    } finally {
      runtime.leave();
    }
  }

  /** `fallbackFrom`: the version the request named, when it could not serve and this one answers instead. */
  async #score(runtime: Runtime, config: RerankConfig, request: RerankRequest, fallbackFrom?: string): Promise<RerankOutcome> {
    const { encoder, queue } = runtime.parts();
    // Refuse before tokenizing when the queue is already too full: the work would be thrown away. Admitted,
    // the request holds its place in the queue's estimate while it is tokenized.
    const reservation = queue.reserve(request.documents.length, request.deadline);
    let pairs;
    let tokenizeSeconds;
    try {
      const tokenizeStarted = performance.now();
      pairs = await encoder.encodePairs(request.query, request.documents, {
        maxLength: runtime.maxLength(config),
        truncate: request.truncate ?? true,
        withTypeIds: runtime.takesTypeIds,
      });
      tokenizeSeconds = (performance.now() - tokenizeStarted) / 1000;
    } finally {
      if (pairs === undefined) reservation.release();
    }
    this.#metrics.tokenizationDuration.observe({ version: runtime.version }, tokenizeSeconds);
    if (request.signal?.aborted) {
      reservation.release();
      throw cancelled();
    }

    const scored = await queue.score(pairs, { signal: request.signal, deadline: request.deadline, reservation });
    const logits = Array.from(scored.logits);
    const outcome: RerankOutcome = {
      version: runtime.version,
      logits,
      scores: logits.map(sigmoid),
      tokens: countTokens(pairs),
      timings: { tokenizeSeconds, queueSeconds: scored.queueSeconds, inferenceSeconds: scored.inferenceSeconds },
    };
    if (fallbackFrom !== undefined) outcome.fallbackFrom = fallbackFrom;
    return outcome;
  }

  info(): EngineInfo {
    return engineInfo({
      loaded: this.#loaded,
      appliedAt: this.#appliedAt,
      slots: this.#versions.values(),
      shadowInFlight: (name) => this.#shadows.inFlight(name),
      servingDefault: this.#effectiveDefault(this.#loaded.config),
      gpu: this.#monitor?.lastReading,
    });
  }

  /** Startup loading is done and the version answering default traffic serves. */
  isReady(): boolean {
    if (this.#closing || !this.#started) return false;
    return this.#servable(this.#effectiveDefault(this.#loaded.config));
  }

  /** Refuses new requests, finishes the accepted ones and any version work, then releases every session. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#monitor?.stop();
      await this.#work;
      await Promise.allSettled([...this.#inFlight]);
      // After the requests: the last of them may still offer a scoring, which stop() then drops.
      await this.#shadows.stop();
      const retiring: Promise<void>[] = [];
      for (const slot of this.#versions.values()) {
        for (const runtime of [slot.active, slot.next, ...slot.draining]) if (runtime) retiring.push(this.#retire(slot, runtime));
      }
      await Promise.all(retiring);
      this.#runtimes.tokenizers.clear();
      this.#runtimes.promptTokenizers.clear();
    })();
    return this.#closing;
  }

  #servable(name: string): boolean {
    return this.#versions.get(name)?.active?.state === 'ready';
  }

  /** The configured default when it can serve, else the stand-in while it can. */
  #effectiveDefault(config: RerankConfig): string {
    const configured = config.defaultVersion;
    if (this.#standIn === undefined || this.#servable(configured) || !this.#servable(this.#standIn)) return configured;
    return this.#standIn;
  }

  /** Sorted by name, so a sticky key's version does not depend on the order of the config file. */
  #candidates(config: RerankConfig): VersionCandidate[] {
    const candidates: VersionCandidate[] = [];
    for (const [name, version] of Object.entries(config.versions)) {
      candidates.push({ name, enabled: version.enabled, ready: this.#servable(name), weight: version.weight });
    }
    // chooseVersion puts them in name order itself: it owns the order the weighted draw walks.
    return candidates;
  }

  #ensureSlots(config: RerankConfig): void {
    for (const [name, version] of Object.entries(config.versions)) {
      if (this.#versions.has(name)) continue;
      const slot = newSlot(name, version);
      this.#versions.set(name, slot);
      this.#publish(slot);
    }
  }

  /**
   * Queues a reconcile behind the running one; a reconcile already queued and not started is shared,
   * since it will read the newest config. `retryFailed`: loads that failed before are tried again
   * (applies do; the fallback monitor's moves do not).
   */
  #schedule(retryFailed: boolean): Promise<ApplyReport> {
    if (this.#queued) {
      this.#queued.retryFailed ||= retryFailed;
      return this.#queued.report;
    }
    const queued = { retryFailed } as { retryFailed: boolean; report: Promise<ApplyReport> };
    queued.report = this.#work.then(() => {
      if (this.#queued === queued) this.#queued = undefined;
      return this.#reconcile(queued.retryFailed);
    });
    this.#queued = queued;
    this.#work = queued.report.catch((error: unknown) => this.#logger.error({ err: error }, 'version reconcile failed'));
    return queued.report;
  }

  async #reconcile(retryFailed: boolean): Promise<ApplyReport> {
    const { config, hash } = this.#loaded;
    const report: ApplyReport = { configHash: hash, appliedAt: this.#appliedAt.toISOString(), defaultVersion: config.defaultVersion, versions: [] };
    if (this.#closing) return report;
    this.#ensureSlots(config);
    if (this.#servable(config.defaultVersion) || this.#standIn === config.defaultVersion) this.#standIn = undefined;

    let defaultSettled!: () => void;
    const defaultDone = new Promise<void>((resolve) => (defaultSettled = resolve));
    const tasks = new Map<string, Promise<VersionApplyResult>>();
    for (const slot of [...this.#versions.values()]) tasks.set(slot.name, this.#reconcileVersion(slot, config, retryFailed, defaultDone));
    void (tasks.get(config.defaultVersion) ?? Promise.resolve()).finally(() => {
      if (this.#servable(config.defaultVersion)) this.#standIn = undefined;
      else if (this.#standIn !== undefined) {
        this.#logger.warn(
          { defaultVersion: config.defaultVersion, servingDefault: this.#standIn },
          `default version ${config.defaultVersion} cannot serve: ${this.#standIn} keeps answering default traffic`,
        );
      }
      defaultSettled();
    });
    report.versions = await Promise.all(tasks.values());
    const servingDefault = this.#effectiveDefault(this.#loaded.config);
    if (servingDefault !== report.defaultVersion) report.servingDefault = servingDefault;
    return report;
  }

  async #reconcileVersion(slot: VersionSlot, config: RerankConfig, retryFailed: boolean, defaultDone: Promise<void>): Promise<VersionApplyResult> {
    const { name } = slot;
    const version = config.versions[name];
    const previous = slot.reconciled;
    slot.reconciled = version;
    if (version) slot.config = version;
    const knobs: VersionAction = previous !== undefined && version !== undefined && JSON.stringify(previous) !== JSON.stringify(version) ? 'updated' : 'unchanged';

    if (!version?.enabled) {
      const active = slot.active;
      if (!active) {
        await this.#forgetIfGone(slot);
        return { name, action: version === undefined && previous !== undefined ? 'unloaded' : knobs };
      }
      if (this.#standIn === name) {
        await defaultDone;
        if (this.#standIn === name) return { name, action: 'unchanged' };
      }
      slot.active = undefined;
      slot.error = undefined;
      slot.failedSpec = undefined;
      this.#publish(slot);
      await this.#retire(slot, active);
      await this.#forgetIfGone(slot);
      this.#logger.info({ version: name }, version ? 'version disabled: drained and unloaded' : 'version removed: drained and unloaded');
      return { name, action: 'unloaded' };
    }

    const device = wantedDevice(slot, version);
    const wanted: RuntimeSpec = { model: version.model, device, fp16: device === 'cuda' && config.serving.useFp16, variant: version.variant };
    if (version.head !== undefined) wanted.head = version.head;
    const active = slot.active;
    const serving = active?.state === 'ready';
    if (serving && sameSpec(active.spec, wanted)) {
      // Back to what serves (e.g. a failed model change reverted): the failure is history.
      slot.error = undefined;
      slot.failedSpec = undefined;
      return { name, action: knobs };
    }
    if (!retryFailed && slot.failedSpec && sameSpec(slot.failedSpec, wanted)) return { name, action: 'unchanged' };

    const next = new Runtime(name, wanted, this.#runtimes);
    slot.next = next;
    this.#publish(slot);
    await next.load();
    slot.next = undefined;

    if (next.state !== 'ready') {
      this.#metrics.versionLoadFailures.inc({ version: name });
      slot.failedSpec = wanted;
      slot.error = next.error;
      if (serving) {
        this.#logger.error({ version: name, model: wanted.model, device: wanted.device, serving: active.spec.model, error: next.error }, 'new session failed to load: the old one keeps serving');
        this.#publish(slot);
        return { name, action: 'failed', error: next.error ?? 'load failed' };
      }
      slot.active = next;
      this.#publish(slot);
      if (active) await this.#retire(slot, active);
      return { name, action: 'failed', error: next.error ?? 'load failed' };
    }

    slot.active = next;
    slot.error = undefined;
    slot.failedSpec = undefined;
    // A move onto the CPU of a version that wants the GPU: from a GPU session, or a first session that found no CUDA.
    if (version.device === 'cuda' && next.device === 'cpu' && !(serving && active.device === 'cpu')) this.#metrics.fallbacks.inc({ version: name });
    this.#publish(slot);
    if (!active) return { name, action: 'loaded' };
    await this.#retire(slot, active);
    if (serving) this.#logger.info({ version: name, from: active.spec, to: wanted, device: next.device }, 'version switched to its new session; the old one is drained and freed');
    return { name, action: serving ? 'replaced' : 'loaded' };
  }

  /** Drops a version that nothing configures or holds any more, with its metric series: none are left stale. */
  async #forgetIfGone(slot: VersionSlot): Promise<void> {
    if (!isGone(slot, this.#loaded.config)) return;
    this.#versions.delete(slot.name);
    await this.#metrics.forgetVersion(slot.name);
    // Configured again while its series went: its version_info series goes back up.
    const back = this.#versions.get(slot.name);
    if (back) {
      back.published = undefined;
      this.#publish(back);
    }
  }

  /** Takes a runtime out of traffic, waits for its in-flight requests, then frees it. */
  async #retire(slot: VersionSlot, runtime: Runtime): Promise<void> {
    const closed = runtime.close();
    slot.draining.add(runtime);
    this.#publish(slot);
    await closed;
    slot.draining.delete(runtime);
    this.#publish(slot);
  }

  #limits(): QueueLimits {
    const serving = this.#loaded.config.serving;
    return {
      maxBatchTokens: serving.maxBatchTokens,
      maxBatchSize: serving.maxBatchSize,
      maxQueuedPairs: serving.maxQueuedPairs,
      maxQueueWaitMs: serving.maxQueueWaitMs,
      maxPaddingRatio: serving.maxPaddingRatio,
    };
  }

  #gpuVersions(): GpuVersion[] {
    const versions: GpuVersion[] = [];
    for (const [name, version] of Object.entries(this.#loaded.config.versions)) {
      const slot = this.#versions.get(name);
      if (!slot || !version.enabled || version.device !== 'cuda') continue;
      versions.push({ name, thresholdMb: version.gpuMemoryThresholdMb, fallbackToCpu: version.fallbackToCpu, placement: slot.placement });
    }
    return versions;
  }

  async #place(name: string, device: PlacementDevice, reason: string): Promise<void> {
    const slot = this.#versions.get(name);
    if (!slot || this.#closing) return;
    slot.placement = device;
    slot.placementReason = device === 'cpu' ? reason : undefined;
    const report = await this.#schedule(false);
    const result = report.versions.find((v) => v.name === name);
    if (result?.action === 'failed') this.#logger.error({ version: name, device, error: result.error }, 'placement move failed: the version stays where it was');
  }

  #logReport(message: string, report: ApplyReport): void {
    const changed = report.versions.filter((v) => v.action !== 'unchanged');
    this.#logger.info({ configHash: report.configHash, versions: changed, servingDefault: report.servingDefault }, message);
  }

  #publish(slot: VersionSlot): void {
    publishVersionInfo(this.#metrics, slot, this.#loaded.config);
  }
}

function sigmoid(logit: number): number {
  return 1 / (1 + Math.exp(-logit));
}

function countTokens(pairs: readonly EncodedPair[]): number {
  let tokens = 0;
  for (const pair of pairs) tokens += pair.length;
  return tokens;
}

