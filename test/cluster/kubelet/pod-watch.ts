import type { CoreV1Api, Watch } from '@kubernetes/client-node';
import { log, sleep } from './helpers.ts';
import { podToWire, type PodObject } from './pod-object.ts';

/** The pods of one namespace, listed and then watched, listed again whenever a watch ends, until stopped. */

export interface PodWatch {
  core: CoreV1Api;
  watch: Watch;
  namespace: string;
  labelSelector: string;
  /** The API server ends each watch after this long (default: 300-600 s at random, like client-go). */
  timeoutSeconds: number | undefined;
  /** Each established watch's controller while it lasts; aborting it ends the watch. */
  aborts: Set<AbortController>;
  stopping(): boolean;
  debug(message: string): void;
  /** A pod listed, added or modified. */
  pod(pod: PodObject): void;
  /** After each list: the uids of the pods it held (others of the namespace are gone). */
  listed(uids: Set<string>): void;
  /** A pod deleted. */
  deleted(pod: PodObject): void;
}

/** List and watch the pods of one namespace until stopped; `connected` once first watching (or with the first list's error). */
export async function watchPods(w: PodWatch, connected: (error?: unknown) => void): Promise<void> {
  const namespace = w.namespace;
  let failures = 0;
  let everConnected = false;
  while (!w.stopping()) {
    try {
      const list = await w.core.listNamespacedPod({ namespace, labelSelector: w.labelSelector });
      const seen = new Set<string>();
      for (const item of list.items) {
        const pod = podToWire(item);
        seen.add(pod.metadata.uid);
        w.pod(pod);
      }
      w.listed(seen);
      await new Promise<void>((resolve) => {
        const timeoutSeconds = w.timeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
        const query = { labelSelector: w.labelSelector, resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true, timeoutSeconds };
        let controller: AbortController | undefined;
        const done = () => {
          if (controller) w.aborts.delete(controller);
          resolve();
        };
        w.watch
          .watch(
            `/api/v1/namespaces/${namespace}/pods`,
            query,
            (type: string, object: unknown) => {
              if (w.stopping()) return;
              if (type === 'ERROR') {
                const status = object as { code?: number; message?: string };
                if (status.code !== 410) log(`watch of pods in ${namespace}: ${status.code ?? ''} ${status.message ?? ''}; re-listing`);
                controller?.abort();
                done();
              } else if (type === 'DELETED') {
                w.deleted(object as PodObject);
              } else if (type === 'ADDED' || type === 'MODIFIED') {
                w.pod(object as PodObject);
              }
            },
            (error: unknown) => {
              if (error && !w.stopping() && (error as Error).name !== 'AbortError') log(`watch of pods in ${namespace} ended; re-listing`, error);
              else if (!w.stopping()) w.debug(`watch of pods in ${namespace} ended; re-listing`);
              done();
            },
          )
          .then(
            (abort) => {
              controller = abort;
              w.aborts.add(abort);
              failures = 0;
              everConnected = true;
              connected();
              if (w.stopping()) abort.abort();
            },
            (error: unknown) => {
              if (!w.stopping()) log(`watching pods in ${namespace}`, error);
              done();
            },
          );
      });
    } catch (error) {
      if (!everConnected) {
        connected(error);
        return;
      }
      if (!w.stopping()) log(`listing pods in ${namespace}`, error);
      failures += 1;
    }
    if (!w.stopping()) await sleep(Math.min(200 * 2 ** failures, 5000));
  }
  connected();
}
