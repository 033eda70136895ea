/** What the suites see of a running test kubelet and of its pods. */

export interface KubeletPod {
  namespace: string;
  name: string;
  uid: string;
  /** 127.0.0.N, once allocated. */
  ip: string | undefined;
  /** The server container's process id while it runs. */
  pid: number | undefined;
  /** Host directory of the pod's `config` volume (the ConfigMap mounted at /etc/rerank), once written. */
  configDir: string | undefined;
  phase: string;
  ready: boolean;
  restartCount: number;
}

export interface TestKubelet {
  readonly nodeName: string;
  /** The pods this kubelet runs now. */
  pods(): KubeletPod[];
  /** One of them by name (any namespace unless given). */
  pod(name: string, namespace?: string): KubeletPod | undefined;
  /** The last output of a pod's processes (also of pods already gone). */
  logs(name: string, namespace?: string): string;
  /** Kill every process, end the watches, delete the pods it ran (see `deletePodsOnStop`). */
  stop(): Promise<void>;
}
