import { dumpYaml } from '@kubernetes/client-node';
import { JSON_SCHEMA, load } from 'js-yaml';

/** A Pod as it comes over the wire (only what the test kubelet reads). */
export interface PodObject {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
  };
  spec: PodSpec;
  status?: { phase?: string; conditions?: Array<{ type: string; status: string; lastTransitionTime?: string }> };
}

export interface PodSpec {
  nodeName?: string;
  restartPolicy?: string;
  terminationGracePeriodSeconds?: number;
  initContainers?: ContainerSpec[];
  containers: ContainerSpec[];
  volumes?: VolumeSpec[];
}

export interface ContainerSpec {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
}

export interface Probe {
  httpGet?: { path?: string; port: number | string; scheme?: string };
  failureThreshold?: number;
  successThreshold?: number;
  timeoutSeconds?: number;
}

export interface KeyToPath {
  key: string;
  path: string;
}

export interface VolumeSpec {
  name: string;
  configMap?: { name: string; items?: KeyToPath[]; optional?: boolean };
  secret?: { secretName: string; items?: KeyToPath[]; optional?: boolean };
  emptyDir?: object;
}

/** Typed client model (a list item) back to wire JSON. */
export function podToWire(item: object): PodObject {
  return load(dumpYaml({ apiVersion: 'v1', kind: 'Pod', ...item }, { lineWidth: -1 }), { schema: JSON_SCHEMA }) as PodObject;
}
