import { PROMETHEUS_TIMEOUT, type PrometheusAnalysis } from '../crd/prometheus-spec.ts';
import { durationMs } from '../crd/duration.ts';
import { messageOf } from '../failures.ts';
import { isApiError, KINDS, type KubeClient, type KubeObject } from '../kube.ts';
import type { PrometheusTarget } from './prometheus.ts';

/**
 * analysis.prometheus made ready to ask: the timeout in milliseconds, the headers, and the credentials
 * and CA read from their Secrets in the RerankerConfig's namespace. Read at each judgement, so a Secret
 * created or rotated after the rollout started is used at the next one.
 */

/** A Secret of auth or tls that cannot be read, or lacks its key: the step cannot be judged. */
export class PrometheusSecretError extends Error {
  /** namespace/name of the Secret, and the key wanted (absent when the Secret itself is missing or unreadable). */
  readonly secret: string;
  readonly key: string | undefined;
  constructor(secret: string, key: string | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PrometheusSecretError';
    this.secret = secret;
    this.key = key;
  }
}

type Secret = KubeObject & { data?: Record<string, string> };

export async function prometheusTarget(kube: KubeClient, namespace: string, prometheus: PrometheusAnalysis): Promise<PrometheusTarget> {
  const secrets = new Map<string, Promise<Secret>>();
  /** The value of `key` in Secret `name`; each Secret is read once however many keys are wanted. */
  const read = async (field: string, name: string, key: string): Promise<string> => {
    const where = `${namespace}/${name}`;
    if (!secrets.has(name)) secrets.set(name, getSecret(kube, namespace, name, field));
    const secret = await secrets.get(name)!;
    const encoded = secret.data?.[key];
    if (encoded === undefined) {
      throw new PrometheusSecretError(where, key, `Secret ${where} has no key "${key}" (rollout.analysis.prometheus.${field})`);
    }
    return Buffer.from(encoded, 'base64').toString('utf8');
  };

  const headers: Record<string, string> = {};
  for (const { name, value } of prometheus.headers ?? []) headers[name] = value;
  let credentials: string | undefined;
  const { bearerTokenSecret: bearer, basicAuthSecret: basic } = prometheus.auth ?? {};
  if (bearer) {
    // A token written with `echo` ends in a newline; Prometheus' own bearer_token_file is trimmed too.
    const token = (await read('auth.bearerTokenSecret', bearer.name, bearer.key)).trim();
    if (!token) throw new PrometheusSecretError(`${namespace}/${bearer.name}`, bearer.key, `Secret ${namespace}/${bearer.name} key "${bearer.key}" is empty (rollout.analysis.prometheus.auth.bearerTokenSecret)`);
    headers.authorization = `Bearer ${token}`;
    credentials = `the bearer token of Secret ${namespace}/${bearer.name}, key ${bearer.key}`;
  } else if (basic) {
    const [username, password] = await Promise.all(
      ['username', 'password'].map(async (key) => (await read('auth.basicAuthSecret', basic.name, key)).replace(/\r?\n$/, '')),
    );
    headers.authorization = `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
    credentials = `basic auth from Secret ${namespace}/${basic.name}`;
  }
  const caSecret = prometheus.tls?.caSecret;
  const ca = caSecret ? await read('tls.caSecret', caSecret.name, caSecret.key) : undefined;
  if (caSecret && !ca?.includes('-----BEGIN CERTIFICATE-----')) {
    throw new PrometheusSecretError(`${namespace}/${caSecret.name}`, caSecret.key, `Secret ${namespace}/${caSecret.name} key "${caSecret.key}" holds no PEM certificate (rollout.analysis.prometheus.tls.caSecret)`);
  }
  return {
    url: prometheus.url,
    timeoutMs: durationMs(prometheus.timeout ?? PROMETHEUS_TIMEOUT.default),
    headers,
    ...(credentials ? { credentials } : {}),
    ...(ca !== undefined ? { ca } : {}),
    ...(prometheus.tls?.insecureSkipVerify ? { insecureSkipVerify: true } : {}),
  };
}

async function getSecret(kube: KubeClient, namespace: string, name: string, field: string): Promise<Secret> {
  const where = `${namespace}/${name}`;
  let secret: Secret | null;
  try {
    secret = await kube.get<Secret>({ ...KINDS.secret, namespace, name });
  } catch (error) {
    const hint = isApiError(error, 403) ? ': the operator may not get Secrets here (chart value rbac.secrets)' : '';
    throw new PrometheusSecretError(where, undefined, `cannot read Secret ${where} (rollout.analysis.prometheus.${field}): ${messageOf(error)}${hint}`, { cause: error });
  }
  if (!secret) throw new PrometheusSecretError(where, undefined, `Secret ${where} not found (rollout.analysis.prometheus.${field})`);
  return secret;
}
