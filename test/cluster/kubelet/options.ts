import type { KubeConfig } from '@kubernetes/client-node';
import { LABEL, MANAGED_BY } from '../../../operator/names.ts';
import type { PodObject } from './pod-object.ts';

/** What a test kubelet is started with, and the defaults of what is left out. */

export interface TestKubeletOptions {
  kubeConfig: KubeConfig;
  /** Namespaces whose pods this kubelet runs. */
  namespaces: string[];
  /** Pods it runs (default `SERVER_POD_SELECTOR`: the operator's server pods). */
  labelSelector?: string;
  /** Node the pods are bound to (default `test-kubelet`); created or updated at start. */
  nodeName?: string;
  /** Periodic resync of every pod's ConfigMap volumes (default 60000, kubelet's). */
  syncPeriodMs?: number;
  /** Readiness (and startup) probe period (default 1000). */
  probePeriodMs?: number;
  /** SIGKILL a process this long after SIGTERM at most (default 5000; less when the pod's grace period is shorter). */
  killAfterMs?: number;
  /** First restart back-off of an exited container, doubled each time up to 5 min (default 10000, kubelet's). */
  restartBackoffMs?: number;
  /**
   * Pods for which this answers true never get ready: bound, given an IP, but their (simulated) init
   * container never completes, so no process starts: phase Pending, Initialized and Ready False.
   */
  neverReady?: (pod: PodObject) => boolean;
  /** Directory whose files (model.onnx, tokenizer.json, ...) stand in for what `models pull` fetches (default: tinyModel()). */
  model?: (pod: PodObject) => string | Promise<string>;
  /** Delete the pods it ran when stopped (default true). */
  deletePodsOnStop?: boolean;
  /** Bytes of output kept per pod for `logs()` (default 64 KiB). */
  logBytes?: number;
  /** Copy every process's output to stderr, prefixed (default: env RERANK_TEST_KUBELET_ECHO=1). */
  echo?: boolean;
  /** The API server ends each pod watch after this long, and the kubelet re-lists (default: 300-600 s at random, like client-go). */
  watchTimeoutSeconds?: number;
}

/** The operator's server pods. */
export const SERVER_POD_SELECTOR = `${LABEL.managedBy}=${MANAGED_BY},${LABEL.component}=server`;
export const DEFAULT_NODE_NAME = 'test-kubelet';

export interface ResolvedOptions {
  syncPeriodMs: number;
  probePeriodMs: number;
  killAfterMs: number;
  restartBackoffMs: number;
  neverReady: ((pod: PodObject) => boolean) | undefined;
  model: ((pod: PodObject) => string | Promise<string>) | undefined;
  deletePodsOnStop: boolean;
  logBytes: number;
  echo: boolean;
  watchTimeoutSeconds: number | undefined;
}

export function resolveOptions(options: TestKubeletOptions): ResolvedOptions {
  return {
    syncPeriodMs: options.syncPeriodMs ?? 60_000,
    probePeriodMs: options.probePeriodMs ?? 1000,
    killAfterMs: options.killAfterMs ?? 5000,
    restartBackoffMs: options.restartBackoffMs ?? 10_000,
    neverReady: options.neverReady,
    model: options.model,
    deletePodsOnStop: options.deletePodsOnStop ?? true,
    logBytes: options.logBytes ?? 64 * 1024,
    echo: options.echo ?? process.env.RERANK_TEST_KUBELET_ECHO === '1',
    watchTimeoutSeconds: options.watchTimeoutSeconds,
  };
}
