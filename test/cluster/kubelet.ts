/**
 * A test kubelet for the real-API-server suites: the control plane of `../shared/k8s/cluster.sh` has no
 * scheduler and no kubelet, so pods stay Pending. This stands in for both, for the pods the operator's
 * Deployments create (by default the server pods, `app.kubernetes.io/managed-by=rerank-operator,
 * app.kubernetes.io/component=server`; any selector may be given, e.g. to add the router pods):
 *
 * - **Scheduling**: registers a Node (`test-kubelet`: Ready, heartbeats through its Lease in
 *   kube-node-lease so the node-lifecycle controller leaves it alone) and binds every Pending,
 *   unscheduled pod to it through the pods/binding subresource.
 * - **Pod network**: each pod gets its own loopback address 127.0.0.N (N from 2, taken per running pod,
 *   freed when it stops; lock files under $TMPDIR/rerank-test-kubelet-ips keep concurrent test
 *   processes apart). THE ONE LIBERTY TAKEN WITH THE POD'S COMMAND: `--host 127.0.0.N` is appended to
 *   the args of `rerank-server start` and `rerank-server router`, which stand for the pod's own IP.
 * - **Containers**: `rerank-server` is `node <repo>/server/cli/main.ts` (this Node, process.execPath),
 *   run as a local process inside a private mount namespace (`unshare --mount --propagation private`,
 *   needs root) where each of the container's volumeMounts is bind-mounted from the pod's directory on
 *   this machine over its absolute path (/etc/rerank, /models, /tmp; read-only where the mount says
 *   so), like a container runtime: the rendered config names `/models/<version>` and those paths
 *   resolve. The mount points are created on this machine and stay empty there. Where the project or
 *   Node lives under /tmp (a clone there), a volume at /tmp would hide them: it is given as TMPDIR
 *   instead (what os.tmpdir() and the server use). Everything else of the
 *   container (image, resources, securityContext, liveness probe, env from Secrets) is ignored.
 * - **Init containers are not run**: their model sources (hf://, pvc://, ...) are not reachable here.
 *   Instead, for an init container `rerank-server models pull <source> --dir <dir>` the generated tiny
 *   model (`tinyModel()` from test/support/models.ts, or the `model` option) is copied to `<dir>` in its
 *   volume: for the operator's pods that is the models volume at `/models/<version>`, the version being
 *   the pod's `rerank.dev/version` label. A pod without such an init container that mounts /models and
 *   carries that label gets the model at `/models/<version>` all the same.
 * - **ConfigMap (and Secret) volumes like kubelet's atomic writer**: the data goes to
 *   `<volume>/..<timestamp>/`, a `..data_tmp` symlink to it is renamed over `..data`, each key is a
 *   top-level symlink `<key> -> ..data/<key>`, and the previous timestamped directory is removed. The
 *   volume is refreshed, and rewritten only when its content changed, (a) whenever the Pod object
 *   itself changes (labels, annotations or spec: a real kubelet resyncs a pod's volumes then, which is
 *   what the operator's `rerank.dev/config-hash` annotation relies on), (b) when a container exits (the
 *   pod sync that follows refreshes them before the restart) and (c) on a slow periodic sync
 *   (`syncPeriodMs`, 60 s like kubelet's). Never on a ConfigMap change alone.
 * - **Status** through the status subresource: phase, podIP(s) 127.0.0.N, hostIP 127.0.0.1, startTime,
 *   conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled) and
 *   container statuses; Ready follows the container's readinessProbe httpGet, polled every
 *   `probePeriodMs` (its failureThreshold counts in those periods). The ReplicaSet, Deployment and
 *   EndpointSlice controllers of kube-controller-manager take it from there.
 * - **Exit and deletion**: a container that exits is reported terminated and not ready, and restarted
 *   after a back-off (restartPolicy Always, or OnFailure after a failure) with restartCount + 1. A pod
 *   given a deletionTimestamp has its processes SIGTERMed (SIGKILLed after `killAfterMs` at most), and
 *   is then deleted with gracePeriodSeconds 0, as kubelet does.
 *
 * `stop()` kills every process, ends the watches and (unless `deletePodsOnStop: false`) deletes the pods
 * it ran, so no Running pod remains whose process is gone. Processes also die with the test process:
 * they run under `setpriv --pdeathsig KILL` and a process 'exit' hook SIGKILLs them. Pods bound to the
 * node whose deletion is overdue and that no kubelet runs (a test process killed before stop()) are
 * deleted for good at start and every 30 s, so their namespaces can finish terminating.
 *
 * Limits: the API server rejects loopback addresses in EndpointSlices ("may not be in the loopback
 * range"), so Services selecting these pods get no endpoints (kube-controller-manager logs
 * FailedToUpdateEndpointSlices): find pods by label and call their podIP, as the operator does. Service
 * DNS names do not resolve here either. Liveness probes are not run.
 */

export type { KubeletPod, TestKubelet } from './kubelet/api.ts';
export { writeAtomically } from './kubelet/atomic-writer.ts';
export { startTestKubelet } from './kubelet/kubelet.ts';
export { kubeletSkip } from './kubelet/lifetime.ts';
export { DEFAULT_NODE_NAME, SERVER_POD_SELECTOR, type TestKubeletOptions } from './kubelet/options.ts';
export type { PodObject } from './kubelet/pod-object.ts';
