import os from 'node:os';
import { PatchStrategy, setHeaderOptions, type CoordinationV1Api, type CoreV1Api } from '@kubernetes/client-node';
import { apiCode, FIELD_MANAGER, microNow, timeNow } from './helpers.ts';

/**
 * The kubelet's Node: registered at start (server-side apply), then kept Ready by a heartbeat of its
 * status conditions and its Lease in kube-node-lease, so the node-lifecycle controller leaves it alone.
 */
export class NodeRegistration {
  readonly #nodeName: string;
  readonly #core: CoreV1Api;
  readonly #coordination: CoordinationV1Api;
  #readyTransition: string | undefined;

  constructor(nodeName: string, core: CoreV1Api, coordination: CoordinationV1Api) {
    this.#nodeName = nodeName;
    this.#core = core;
    this.#coordination = coordination;
  }

  /** Creates or updates the Node (keeping the time it last became Ready), then beats once. */
  async register(): Promise<void> {
    const node = await this.#core.readNode({ name: this.#nodeName }).catch((error: unknown) => {
      if (apiCode(error) === 404) return undefined;
      throw error;
    });
    const ready = node?.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
    this.#readyTransition = ready?.lastTransitionTime ? new Date(ready.lastTransitionTime).toISOString().replace(/\.\d+Z$/, 'Z') : timeNow();
    const body = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: this.#nodeName, labels: { 'kubernetes.io/hostname': this.#nodeName, 'kubernetes.io/os': 'linux', 'rerank.dev/test-kubelet': 'true' } },
    };
    await this.#core.patchNode({ name: this.#nodeName, body, fieldManager: FIELD_MANAGER, force: true }, setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply));
    await this.heartbeat();
  }

  /** The Node's status (Ready, no pressure) and its Lease renewed; every 10 s. */
  async heartbeat(): Promise<void> {
    const now = timeNow();
    const condition = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: type === 'Ready' ? this.#readyTransition : now,
    });
    const capacity = { cpu: String(os.cpus().length), memory: `${Math.floor(os.totalmem() / 1024)}Ki`, pods: '110' };
    const status = {
      conditions: [
        condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'test kubelet'),
        condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'test kubelet'),
        condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'test kubelet'),
        condition('Ready', 'True', 'KubeletReady', 'test kubelet is posting ready status'),
      ],
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: this.#nodeName },
      ],
      capacity,
      allocatable: capacity,
      nodeInfo: {
        machineID: '',
        systemUUID: '',
        bootID: '',
        kernelVersion: os.release(),
        osImage: 'test kubelet',
        containerRuntimeVersion: 'test-kubelet://1',
        kubeletVersion: 'v1.32.0-test',
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    };
    await this.#core.patchNodeStatus({ name: this.#nodeName, body: { status } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.#nodeName, namespace: 'kube-node-lease' },
      spec: { holderIdentity: this.#nodeName, leaseDurationSeconds: 40, renewTime: microNow() },
    };
    await this.#coordination.patchNamespacedLease(
      { name: this.#nodeName, namespace: 'kube-node-lease', body: lease, fieldManager: FIELD_MANAGER, force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }
}
