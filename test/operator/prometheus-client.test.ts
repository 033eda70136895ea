import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PrometheusAnalysisSchema, type PrometheusAnalysis } from '../../operator/crd/prometheus-spec.ts';
import type { KubeObject } from '../../operator/kube.ts';
import { HttpPrometheusClient, PrometheusRefusedError } from '../../operator/rollout/prometheus.ts';
import { prometheusTarget, PrometheusSecretError } from '../../operator/rollout/prometheus-target.ts';
import { FakeKube } from './support/fake-kube.ts';
import { FakePrometheus, vector } from './support/fake-prometheus.ts';
import { makeTestCa, testCaUnavailable, type TestCa } from './support/test-ca.ts';

const AT = new Date('2026-01-01T00:02:00Z');
const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

/** A Secret in namespace rag holding `data` (plain text, stored base64 as the apiserver does). */
function secret(name: string, data: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'rag' }, type: 'Opaque', data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) };
}

async function kubeWith(...secrets: KubeObject[]): Promise<FakeKube> {
  const kube = new FakeKube();
  for (const s of secrets) await kube.create(s);
  return kube;
}

/** analysis.prometheus as the spec parses it. */
const spec = (value: Record<string, unknown>): PrometheusAnalysis => PrometheusAnalysisSchema.parse(value);

describe('Prometheus behind authentication: credentials from Secrets, over real HTTP on loopback', () => {
  const client = new HttpPrometheusClient();
  let bearer: FakePrometheus;
  let basic: FakePrometheus;
  before(async () => {
    bearer = await FakePrometheus.start({ authorization: 'Bearer s3cr3t-token' });
    basic = await FakePrometheus.start({ authorization: `Basic ${b64('grafana:pa:ss word')}` });
    bearer.answer = basic.answer = () => vector('12');
  });
  after(() => Promise.all([bearer.close(), basic.close(), client.close()]));

  test('a bearer token from a Secret key (its trailing newline dropped) is sent, with the extra headers; the answer is read', async () => {
    const kube = await kubeWith(secret('prom-token', { token: 's3cr3t-token\n' }));
    const target = await prometheusTarget(kube, 'rag', spec({ url: bearer.url, auth: { bearerTokenSecret: { name: 'prom-token' } }, headers: [{ name: 'X-Scope-OrgID', value: 'team-a' }] }));
    assert.equal(await client.query(target, 'sum(up)', AT), 12);
    const sent = bearer.headers.at(-1)!;
    assert.equal(sent.authorization, 'Bearer s3cr3t-token');
    assert.equal(sent['x-scope-orgid'], 'team-a');
    assert.equal(target.credentials, 'the bearer token of Secret rag/prom-token, key token');
  });

  test('basic auth from the username and password keys of a Secret', async () => {
    const kube = await kubeWith(secret('prom-basic', { username: 'grafana', password: 'pa:ss word' }));
    const target = await prometheusTarget(kube, 'rag', spec({ url: basic.url, auth: { basicAuthSecret: { name: 'prom-basic' } } }));
    assert.equal(await client.query(target, 'sum(up)', AT), 12);
  });

  test('a 401 or 403 is a refusal that says which credentials were sent, never the credentials', async () => {
    const kube = await kubeWith(secret('prom-token', { 'other-key': 'wrong-token' }));
    const target = await prometheusTarget(kube, 'rag', spec({ url: bearer.url, auth: { bearerTokenSecret: { name: 'prom-token', key: 'other-key' } } }));
    const refusal = await client.query(target, 'up', AT).then(
      () => assert.fail('a wrong token was accepted'),
      (error: unknown) => error,
    );
    assert.ok(refusal instanceof PrometheusRefusedError);
    assert.equal(refusal.status, 401);
    assert.match(refusal.message, new RegExp(`^Prometheus ${bearer.url}: HTTP 401 Unauthorized: the credentials were refused \\(sent the bearer token of Secret rag/prom-token, key other-key\\): Unauthorized$`));
    assert.doesNotMatch(refusal.message, /wrong-token/);
    await assert.rejects(client.query({ url: bearer.url, timeoutMs: 5000, headers: {} }, 'up', AT), /HTTP 401 Unauthorized: the credentials were refused \(no credentials sent: set rollout\.analysis\.prometheus\.auth\)/);
    const forbidding = await FakePrometheus.start();
    try {
      forbidding.answer = () => ({ status: 403, body: { status: 'error', errorType: 'forbidden', error: 'tenant team-a may not read' } });
      await assert.rejects(
        client.query({ url: forbidding.url, timeoutMs: 5000, headers: {}, credentials: 'basic auth from Secret rag/x' }, 'up', AT),
        /HTTP 403 Forbidden: these credentials may not query \(sent basic auth from Secret rag\/x\): \{"status":"error".*tenant team-a may not read/,
      );
    } finally {
      await forbidding.close();
    }
  });

  test("the spec's timeout bounds each query", async () => {
    const hanging = await FakePrometheus.start();
    try {
      hanging.answer = () => 'hang';
      const target = await prometheusTarget(new FakeKube(), 'rag', spec({ url: hanging.url, timeout: '250ms' }));
      assert.equal(target.timeoutMs, 250);
      await assert.rejects(client.query(target, 'up', AT), new RegExp(`Prometheus ${hanging.url}: no answer within 250 ms`));
      assert.equal((await prometheusTarget(new FakeKube(), 'rag', spec({ url: hanging.url }))).timeoutMs, 5000);
    } finally {
      await hanging.close();
    }
  });
});

describe("analysis.prometheus's Secrets that cannot be used", () => {
  const url = 'http://prom:9090';
  const cases: Array<[what: string, analysis: Record<string, unknown>, secrets: KubeObject[], why: RegExp, key: string | undefined]> = [
    ['a token Secret that does not exist', { auth: { bearerTokenSecret: { name: 'prom-token' } } }, [], /^Secret rag\/prom-token not found \(rollout\.analysis\.prometheus\.auth\.bearerTokenSecret\)$/, undefined],
    ['a token Secret without the key', { auth: { bearerTokenSecret: { name: 'prom-token', key: 'bearer' } } }, [secret('prom-token', { token: 'x' })], /^Secret rag\/prom-token has no key "bearer" \(rollout\.analysis\.prometheus\.auth\.bearerTokenSecret\)$/, 'bearer'],
    ['an empty token', { auth: { bearerTokenSecret: { name: 'prom-token' } } }, [secret('prom-token', { token: ' \n' })], /^Secret rag\/prom-token key "token" is empty/, 'token'],
    ['a basic auth Secret without a password', { auth: { basicAuthSecret: { name: 'prom-basic' } } }, [secret('prom-basic', { username: 'u' })], /^Secret rag\/prom-basic has no key "password" \(rollout\.analysis\.prometheus\.auth\.basicAuthSecret\)$/, 'password'],
    ['a CA key that holds no certificate', { url: 'https://prom:9090', tls: { caSecret: { name: 'prom-ca' } } }, [secret('prom-ca', { 'ca.crt': 'not a PEM' })], /^Secret rag\/prom-ca key "ca\.crt" holds no PEM certificate/, 'ca.crt'],
  ];
  for (const [what, analysis, secrets, why, key] of cases) {
    test(`${what}: an error naming the Secret and the key`, async () => {
      const kube = await kubeWith(...secrets);
      const error = await prometheusTarget(kube, 'rag', spec({ url, ...analysis })).then(
        () => assert.fail('no error'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof PrometheusSecretError);
      assert.match(error.message, why);
      assert.equal(error.key, key);
    });
  }

  test('a Secret the operator may not read says which chart value grants it', async () => {
    const kube = await kubeWith(secret('prom-token', { token: 't' }));
    kube.fail('get', 'Secret', 403, { message: 'secrets "prom-token" is forbidden' });
    await assert.rejects(
      prometheusTarget(kube, 'rag', spec({ url, auth: { bearerTokenSecret: { name: 'prom-token' } } })),
      /^PrometheusSecretError: cannot read Secret rag\/prom-token \(rollout\.analysis\.prometheus\.auth\.bearerTokenSecret\): .*forbidden.*: the operator may not get Secrets here \(chart value rbac\.secrets\)$/,
    );
  });
});

const noCa = testCaUnavailable();
describe('an https Prometheus with a CA of its own', { skip: noCa }, () => {
  const client = new HttpPrometheusClient();
  let ca: TestCa;
  let prometheus: FakePrometheus;
  before(async () => {
    ca = makeTestCa();
    prometheus = await FakePrometheus.start({ tls: { key: ca.serverKey, cert: ca.serverCert } });
    prometheus.answer = () => vector('3');
  });
  after(() => Promise.all([prometheus.close(), client.close()]));

  test('trusted through the CA in a Secret; refused without it, naming the certificate problem; insecureSkipVerify takes any', async () => {
    assert.match(prometheus.url, /^https:/);
    const kube = await kubeWith(secret('prom-ca', { 'ca.crt': ca.caCert }));
    const trusted = await prometheusTarget(kube, 'rag', spec({ url: prometheus.url, tls: { caSecret: { name: 'prom-ca' } } }));
    assert.equal(await client.query(trusted, 'sum(up)', AT), 3);
    const publicCas = await prometheusTarget(kube, 'rag', spec({ url: prometheus.url }));
    await assert.rejects(client.query(publicCas, 'sum(up)', AT), new RegExp(`Prometheus ${prometheus.url}: fetch failed: .*(self-signed certificate|unable to verify|unable to get local issuer)`));
    const skipping = await prometheusTarget(kube, 'rag', spec({ url: prometheus.url, tls: { insecureSkipVerify: true } }));
    assert.equal(await client.query(skipping, 'sum(up)', AT), 3);
    // The trusted target still works after the others: each trust has its own connections.
    assert.equal(await client.query(trusted, 'sum(up)', AT), 3);
  });
});
