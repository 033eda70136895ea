import { readExample } from './examples.ts';

/**
 * The RerankerConfig specs the CRD's validation (structural schema + CEL) must accept and refuse. One
 * list, checked three ways: against the cel-js mirror of the apiserver and the operator's zod schema
 * (test/operator/crd-cel.test.ts), and against a real kube-apiserver (test/cluster/crd.test.ts).
 */

export type Spec = Record<string, unknown> & { versions: Array<Record<string, unknown>> };
export type Mutation = (spec: Spec) => void;

/** The seed example's spec (crds/examples/seed.yaml), a fresh copy each call. */
export const seedSpec = (): Spec => structuredClone(readExample('seed').spec) as unknown as Spec;

/** The seed example's spec with `mutate` applied. */
export function specWith(mutate: Mutation): Spec {
  const spec = seedSpec();
  mutate(spec);
  return spec;
}

const model = (spec: Spec, i: number) => spec.versions[i]!.model as Record<string, unknown>;

/** Specs that pass, keyed so a test can add what it checks about one of them. */
export const ACCEPTED = {
  seed: { what: 'the seed example', mutate: (() => {}) as Mutation },
  edgeWeights: {
    what: 'weights of 0 and 100 and a default version left at its defaults',
    mutate: ((s) => {
      s.versions[0]!.weight = 100;
      s.versions[1]!.weight = 0;
      delete s.versions[0]!.enabled;
    }) as Mutation,
  },
  hfToken: {
    what: 'a token Secret on an hf:// source',
    mutate: ((s) => (model(s, 0).tokenSecretRef = { name: 'hf-token' })) as Mutation,
  },
  autoscaling: {
    what: 'an HPA on CPU for the GPU default, scale to zero by KEDA on the queue for the weight-0 version, a PDB, a priority class and a GPU budget',
    mutate: ((s) => {
      s.gpuBudget = 6;
      s.versions[0]!.autoscaling = { minReplicas: 2, maxReplicas: 4, metric: 'cpu', target: 70 };
      s.versions[0]!.disruption = { maxUnavailable: 2 };
      s.versions[0]!.priorityClassName = 'reranker-critical';
      s.versions[2]!.autoscaling = { minReplicas: 0, maxReplicas: 3, metric: 'queue', target: 64, engine: 'keda', prometheusAddress: 'http://prometheus.monitoring:9090' };
    }) as Mutation,
  },
  inflight: {
    what: 'an HPA on requests in flight for the canary, scale to zero by KEDA on requests in flight for the weight-0 version',
    mutate: ((s) => {
      s.versions[1]!.autoscaling = { minReplicas: 1, maxReplicas: 3, metric: 'inflight', target: 4 };
      s.versions[2]!.autoscaling = { minReplicas: 0, maxReplicas: 2, metric: 'inflight', target: 4, engine: 'keda', prometheusAddress: 'http://prometheus.monitoring:9090' };
    }) as Mutation,
  },
  rollout: {
    what: 'a rollout of the canary in three steps, judged by every gate',
    mutate: ((s) => {
      s.rollout = {
        canary: 'v2-gemma',
        steps: [10, 50, 100],
        stepInterval: '1m30s',
        minRequests: 100,
        analysis: { maxErrorRatio: 0.01, maxErrorRatioDelta: 0.005, maxP99Ms: 800, maxP99Ratio: 1.5, maxFallbacks: 0, maxLoadFailures: 0, minTopKOverlap: 0.8, minKendallTau: 0.6 },
        onSuccess: 'promote',
        onFailure: 'rollback',
        keepStableFor: '15m',
      };
    }) as Mutation,
  },
  prometheus: {
    what: "a rollout whose figures come from Prometheus, one query of its own using every placeholder",
    mutate: ((s) => {
      s.rollout = {
        canary: 'v2-gemma',
        analysis: {
          maxErrorRatio: 0.01,
          prometheus: {
            url: 'http://prometheus-operated.monitoring.svc:9090',
            queries: { requests: 'sum(increase(reranker_requests_total{namespace="{{namespace}}",rrc="{{name}}",version="{{version}}"}[{{window}}]))' },
          },
        },
      };
    }) as Mutation,
  },
  prometheusAuth: {
    what: 'a rollout whose Prometheus wants a bearer token, its own CA, a tenant header and a longer timeout',
    mutate: ((s) => {
      s.rollout = {
        canary: 'v2-gemma',
        analysis: {
          prometheus: {
            url: 'https://mimir.monitoring.svc:8080/prometheus',
            timeout: '1m',
            auth: { bearerTokenSecret: { name: 'mimir-token' } },
            tls: { caSecret: { name: 'mimir-ca' } },
            headers: [{ name: 'X-Scope-OrgID', value: 'team-a' }, { name: 'X-Trace', value: 'rollout' }],
          },
        },
      };
    }) as Mutation,
  },
  prometheusBasic: {
    what: 'a rollout whose Prometheus wants basic auth, https with any certificate, and a timeout of 100ms',
    mutate: ((s) => {
      s.rollout = {
        canary: 'v2-gemma',
        analysis: { prometheus: { url: 'https://prom.example', timeout: '100ms', auth: { basicAuthSecret: { name: 'prom-basic' } }, tls: { insecureSkipVerify: true } } },
      };
    }) as Mutation,
  },
} satisfies Record<string, { what: string; mutate: Mutation }>;

/** A rollout whose analysis.prometheus is `prometheus`. */
const promRollout = (s: Spec, prometheus: Record<string, unknown>) => (s.rollout = { canary: 'v2-gemma', analysis: { prometheus } });

const autoscale = (spec: Spec, i: number, autoscaling: Record<string, unknown>) => (spec.versions[i]!.autoscaling = autoscaling);

/** Each bad spec must be refused by the apiserver (schema or CEL) AND by the operator's zod schema, naming why. */
export const REJECTED: Array<[what: string, mutate: Mutation, why: RegExp]> = [
  ['defaultVersion names no version', (s) => (s.defaultVersion = 'v3'), /defaultVersion must name one of versions/],
  ['defaultVersion names a disabled version', (s) => (s.versions[0]!.enabled = false), /defaultVersion must name an enabled version/],
  ['two versions share a name', (s) => (s.versions[1]!.name = 'v2-m3'), /spec\.versions\[1\]: Duplicate value|version names must be unique/],
  ['a weight above 100', (s) => (s.versions[0]!.weight = 101), /spec\.versions\[0\]\.weight in body should be less than or equal to 100/],
  ['a negative weight', (s) => (s.versions[1]!.weight = -1), /spec\.versions\[1\]\.weight in body should be greater than or equal to 0/],
  ['a model source with an unknown scheme', (s) => (s.versions[0]!.model = { source: 's3://bucket/m' }), /model\.source in body should match/],
  ['a sha256 that is not 64 hex digits', (s) => (s.versions[2]!.model = { source: 'hf://a/b', sha256: 'abc' }), /model\.sha256 in body should match/],
  ['a token Secret on a source that is not hf://', (s) => (model(s, 1).tokenSecretRef = { name: 'hf-token' }), /tokenSecretRef applies to hf:\/\/ sources/],
  ['a token Secret name that is not a DNS name', (s) => (model(s, 0).tokenSecretRef = { name: 'HF Token' }), /tokenSecretRef\.name in body should match/],
  ['a version name that is not a DNS label', (s) => (s.versions[2]!.name = 'V1.old'), /spec\.versions\[2\]\.name in body should match/],
  ['CPU fallback on a version without GPUs', (s) => (s.versions[2]!.cpuFallback = { replicas: 1 }), /cpuFallback only makes sense/],
  ['gateway mode without parentRefs', (s) => (s.routing = { mode: 'gateway' }), /gateway mode needs gateway.parentRefs/],
  ['a prompt template on a cross-encoder head', (s) => (s.versions[0]!.head = { type: 'cross-encoder', template: 'qwen3' }), /apply to type causal-lm-yes-no/],
  [
    'a custom prompt template whose body has no {document}',
    (s) => (s.versions[1]!.head = { type: 'causal-lm-yes-no', template: 'custom', body: 'Q: {query}', yesToken: 'yes' }),
    /template custom needs a body holding \{query\} and \{document\}/,
  ],
  [
    'a yes token given by text and by id',
    (s) => (s.versions[1]!.head = { type: 'causal-lm-yes-no', template: 'bge-gemma', yesToken: 'Yes', yesTokenId: 7 }),
    /give yesToken or yesTokenId, not both/,
  ],
  ['an unknown head type', (s) => (s.versions[1]!.head = { type: 'seq2seq' }), /head\.type: Unsupported value|head\.type in body should be one of/],
  ['an unknown routing mode', (s) => (s.routing = { mode: 'mesh' }), /spec\.routing\.mode: Unsupported value: "mesh"/],
  ['an unknown serving knob', (s) => ((s.serving as Record<string, unknown>).batchSize = 4), /unknown field "spec\.serving\.batchSize"/],
  ['autoscaling minReplicas above maxReplicas', (s) => autoscale(s, 0, { minReplicas: 3, maxReplicas: 2, target: 70 }), /minReplicas must not exceed maxReplicas/],
  [
    'scale to zero for a version with weight (a 10% canary)',
    (s) => autoscale(s, 1, { minReplicas: 0, maxReplicas: 2, metric: 'queue', target: 32, engine: 'keda', prometheusAddress: 'http://prom:9090' }),
    /autoscaling\.minReplicas must be 1 or more while weight > 0/,
  ],
  ['scale to zero with an HPA', (s) => autoscale(s, 2, { minReplicas: 0, maxReplicas: 2, target: 70 }), /minReplicas 0 \(scale to zero\) needs engine keda/],
  ['scale to zero by KEDA on CPU alone (KEDA scales to zero only on a non-CPU trigger)', (s) => autoscale(s, 2, { minReplicas: 0, maxReplicas: 2, target: 70, engine: 'keda' }), /minReplicas 0 \(scale to zero\) needs engine keda and metric queue or inflight/],
  ['KEDA on the queue with no Prometheus to ask', (s) => autoscale(s, 2, { maxReplicas: 2, metric: 'queue', target: 32, engine: 'keda' }), /engine keda with metric queue or inflight needs prometheusAddress/],
  ['KEDA on requests in flight with no Prometheus to ask', (s) => autoscale(s, 2, { maxReplicas: 2, metric: 'inflight', target: 4, engine: 'keda' }), /engine keda with metric queue or inflight needs prometheusAddress/],
  ['autoscaling on a metric no component exports', (s) => autoscale(s, 0, { maxReplicas: 2, metric: 'gpu', target: 4 }), /autoscaling\.metric: Unsupported value: "gpu"/],
  ['a rollout of a version that does not exist', (s) => (s.rollout = { canary: 'v3' }), /rollout\.canary must name one of versions/],
  ['a rollout of a disabled version', (s) => ((s.versions[1]!.enabled = false), (s.rollout = { canary: 'v2-gemma' })), /rollout\.canary must name an enabled version/],
  ['a rollout of the default version onto itself', (s) => (s.rollout = { canary: 'v2-m3' }), /rollout\.canary must differ from the stable version/],
  ['a rollout whose stable is the canary', (s) => (s.rollout = { canary: 'v2-gemma', stable: 'v2-gemma' }), /rollout\.canary and rollout\.stable must differ/],
  ['a rollout from a stable version that does not exist', (s) => (s.rollout = { canary: 'v2-gemma', stable: 'v0' }), /rollout\.stable must name one of versions/],
  ['rollout steps that go down', (s) => (s.rollout = { canary: 'v2-gemma', steps: [50, 10, 100] }), /rollout\.steps must increase/],
  ['rollout steps that repeat', (s) => (s.rollout = { canary: 'v2-gemma', steps: [10, 10, 100] }), /rollout\.steps must increase/],
  ['a step interval that is not a duration', (s) => (s.rollout = { canary: 'v2-gemma', stepInterval: '2 minutes' }), /rollout\.stepInterval in body should match/],
  ['an error ratio gate above 1', (s) => (s.rollout = { canary: 'v2-gemma', analysis: { maxErrorRatio: 5 } }), /rollout\.analysis\.maxErrorRatio in body should be less than or equal to 1/],
  [
    'a Prometheus query with a placeholder the operator does not fill',
    (s) => (s.rollout = { canary: 'v2-gemma', analysis: { prometheus: { url: 'http://prom:9090', queries: { errors: 'sum(x{pod="{{pod}}"})' } } } }),
    /a rollout\.analysis\.prometheus query may use only the placeholders \{\{version\}\}, \{\{namespace\}\}, \{\{name\}\}, \{\{window\}\}/,
  ],
  [
    'a Prometheus URL that is not http(s)',
    (s) => (s.rollout = { canary: 'v2-gemma', analysis: { prometheus: { url: 'prom:9090' } } }),
    /rollout\.analysis\.prometheus\.url in body should match/,
  ],
  [
    'Prometheus auth with both a bearer token and basic auth',
    (s) => promRollout(s, { url: 'http://prom:9090', auth: { bearerTokenSecret: { name: 't' }, basicAuthSecret: { name: 'b' } } }),
    /rollout\.analysis\.prometheus\.auth takes one of bearerTokenSecret and basicAuthSecret/,
  ],
  ['Prometheus auth with neither', (s) => promRollout(s, { url: 'http://prom:9090', auth: {} }), /rollout\.analysis\.prometheus\.auth takes one of bearerTokenSecret and basicAuthSecret/],
  ['Prometheus tls on an http:// url', (s) => promRollout(s, { url: 'http://prom:9090', tls: { insecureSkipVerify: true } }), /rollout\.analysis\.prometheus\.tls applies to an https:\/\/ url/],
  [
    'Prometheus tls with a CA and insecureSkipVerify',
    (s) => promRollout(s, { url: 'https://prom:9090', tls: { caSecret: { name: 'ca' }, insecureSkipVerify: true } }),
    /rollout\.analysis\.prometheus\.tls takes caSecret or insecureSkipVerify, not both/,
  ],
  ['a Prometheus timeout above 60s', (s) => promRollout(s, { url: 'http://prom:9090', timeout: '2m' }), /rollout\.analysis\.prometheus\.timeout must be between 100ms and 60s/],
  ['a Prometheus timeout below 100ms', (s) => promRollout(s, { url: 'http://prom:9090', timeout: '50ms' }), /rollout\.analysis\.prometheus\.timeout must be between 100ms and 60s/],
  ['a Prometheus timeout that is not a duration', (s) => promRollout(s, { url: 'http://prom:9090', timeout: 'soon' }), /rollout\.analysis\.prometheus\.timeout in body should match/],
  [
    'a Prometheus header that sets Authorization',
    (s) => promRollout(s, { url: 'http://prom:9090', headers: [{ name: 'authorization', value: 'Bearer x' }] }),
    /rollout\.analysis\.prometheus\.headers may not set Authorization: use auth/,
  ],
  [
    'a Prometheus header given twice (names are case-insensitive)',
    (s) => promRollout(s, { url: 'http://prom:9090', headers: [{ name: 'X-Scope-OrgID', value: 'a' }, { name: 'x-scope-orgid', value: 'b' }] }),
    /rollout\.analysis\.prometheus\.headers names each header once/,
  ],
  [
    'a Prometheus header value with a line break',
    (s) => promRollout(s, { url: 'http://prom:9090', headers: [{ name: 'X-Scope-OrgID', value: 'a\r\nX-Evil: 1' }] }),
    /rollout\.analysis\.prometheus\.headers\[0\]\.value in body should match/,
  ],
  [
    'a Prometheus token Secret name that is not a DNS name',
    (s) => promRollout(s, { url: 'http://prom:9090', auth: { bearerTokenSecret: { name: 'Prom Token' } } }),
    /rollout\.analysis\.prometheus\.auth\.bearerTokenSecret\.name in body should match/,
  ],
  ['a negative GPU budget', (s) => (s.gpuBudget = -1), /spec\.gpuBudget in body should be greater than or equal to 0/],
  ['no versions at all', (s) => (s.versions = []), /spec\.versions in body should have at least 1 items/],
];
