import type { FaultSettings } from '../config/faults.ts';
import type { ShadowSettings } from '../config/schema.ts';
import type { GpuMemory } from '../gpu/probe.ts';
import type { HeadInfo } from './scoring-head.ts';

/**
 * The serving core's contract with the HTTP layer. Nothing here knows about HTTP: the API adapters
 * (TEI, Cohere, Jina) turn their request shapes into a RerankRequest and shape the RerankOutcome back.
 */

export interface RerankRequest {
  query: string;
  documents: string[];
  /** Truncate pairs longer than maxLength (default). When false, an over-long pair is a 413. */
  truncate?: boolean;
  /** Version named by the path (`/rerank/{version}`) — wins over everything else. */
  pathVersion?: string;
  /** Version named by the `X-Rerank-Version` header. */
  headerVersion?: string;
  /**
   * A user or session id: when set (and no path or header version), the weighted draw is a hash of it
   * rather than random, so the key stays on one version while the weights stay the same.
   */
  stickyKey?: string;
  /** Aborted when the caller goes away; its queued pairs are then skipped. */
  signal?: AbortSignal;
  /**
   * When the caller can no longer use the answer, in `performance.now()` milliseconds (the HTTP layer's
   * X-Request-Timeout-Ms from the request's arrival). A request expected to wait past it is refused, and
   * one still unanswered then is answered `deadline` with its waiting pairs dropped.
   */
  deadline?: number;
}

export interface StageTimings {
  tokenizeSeconds: number;
  queueSeconds: number;
  inferenceSeconds: number;
}

export interface RerankOutcome {
  /** The version that answered. */
  version: string;
  /** Raw logit per document, in request order. Always finite. */
  logits: number[];
  /** Sigmoid of each logit, in request order: the normalized relevance score in [0, 1]. */
  scores: number[];
  /** Tokens fed to the model for this request (sum over its pairs, before padding). */
  tokens: number;
  timings: StageTimings;
  /** Set when the request named a version (path or header) that could not serve, and `version` answered instead. */
  fallbackFrom?: string;
}

/** `disabled`: configured with `enabled: false`, so not loaded. */
export type VersionState = 'loading' | 'ready' | 'failed' | 'draining' | 'disabled';

export interface VersionInfo {
  name: string;
  state: VersionState;
  enabled: boolean;
  description: string;
  device: 'cpu' | 'cuda';
  weight: number;
  modelPath: string;
  /** Graph inputs the model takes (XLM-R style graphs have no token_type_ids). */
  inputs: string[];
  /** Set when the model is a generated stand-in whose scores carry no meaning. */
  synthetic: boolean;
  /**
   * How its model's output becomes a score: `cross-encoder`, or `causal-lm-yes-no` with its template, yes/no
   * token ids, normalization and the graph form that runs (`prepared` [batch, 2], or `full-vocabulary`).
   */
  head?: HeadInfo;
  error?: string;
  /** Tokens per pair for this version: the configured maxLength, capped by the model's position table. */
  maxLength?: number;
  /** Why `cuda` was configured and the version runs on CPU. */
  deviceFallback?: string;
  /** The .onnx file its session runs (a `model_cpu/` export on CPU, the fp16 export with useFp16 on CUDA, when there are). */
  modelFile?: string;
  /** With useFp16 on: whether its session runs the fp16 export, and if not why (e.g. it does not apply on CPU). */
  fp16?: { applied: boolean; note: string };
  /** The export its session runs (`variant`), what the config asked for, and why this one. */
  variant?: { setting: string; chosen: string; reason: string };
  /** Pairs waiting in the queue of the session serving it. */
  queuedPairs?: number;
  /** Requests it is answering now (tokenizing, queued or running). */
  inFlight?: number;
  placement?: VersionPlacement;
  /** Its `shadow` setting, when it has one, with the shadow scorings under way now. */
  shadow?: ShadowSettings & { inFlight: number };
  /** Its `faults` setting, while it injects anything. */
  faults?: FaultSettings;
}

/** Where a version runs, for GPU → CPU fallback. `VersionInfo.device` is the provider actually in use. */
export interface VersionPlacement {
  /** The device the config asks for. */
  configured: 'cpu' | 'cuda';
  /** Where it should run now: `configured`, unless low GPU memory moved it to CPU. */
  wanted: 'cpu' | 'cuda';
  /** Why `wanted` differs from `configured`. */
  reason?: string;
  /** Free memory of the GPU at the last probe, in MiB (versions configured for `cuda`, with a probe). */
  gpuFreeMb?: number;
}

/**
 * A device the server runs versions on: `cpu` always; `cuda` once a version is configured for it, with
 * the GPU as the GPU probe last read it.
 */
export interface DeviceInfo {
  device: 'cpu' | 'cuda';
  /** The versions on this device now (loading, ready or draining), by name. */
  versions: string[];
  /** `cuda`: the GPUs the probe reports (nvidia-smi: index, memory in MiB); empty before the first reading or when none can be read. */
  gpus?: GpuMemory[];
}

export interface EngineInfo {
  defaultVersion: string;
  /**
   * The version answering default traffic, when not `defaultVersion`: a reload named a default that is
   * still loading (or failed to load), and the previous default answers meanwhile.
   */
  servingDefault?: string;
  configHash: string;
  /** When the config in force was applied (ISO 8601). */
  appliedAt?: string;
  versions: VersionInfo[];
  /** Where the versions run: cpu, and cuda with its GPU(s) when a version wants one. */
  devices: DeviceInfo[];
  limits: {
    maxLength: number;
    maxBatchTokens: number;
    maxBatchSize: number;
    maxQueuedPairs: number;
    maxDocuments: number;
    maxBodyBytes: number;
  };
}

/** What the HTTP layer needs from the core. */
export interface Reranker {
  rerank(request: RerankRequest): Promise<RerankOutcome>;
  info(): EngineInfo;
  /** True once every enabled version has loaded and warmed up (or failed, with the default ready). */
  isReady(): boolean;
}
