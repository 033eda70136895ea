import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { buildCustomResourceDefinition } from '../../operator/crd/definition.ts';
import { ACCEPTED, REJECTED, specWith, type Spec } from '../operator/support/cel-cases.ts';
import { CRD_FILE, ROOT, clusterSkip, installCrd, startCluster, type Cluster } from './harness.ts';

/**
 * The RerankerConfig CRD as a real kube-apiserver (v1.32) takes it: the generated file, the chart's
 * copy and the code that builds it are one CRD; the server accepts its schema as structural; and the
 * specs of test/operator/support/cel-cases.ts (the list the cel-js mirror and zod are checked against
 * in test/operator/crd-cel.test.ts) are accepted or refused here too, for the same reason.
 */

const CHART_CRD = join(ROOT, 'charts/rerank-operator/crds/rerankerconfigs.rerank.dev.yaml');
const EXAMPLES = join(ROOT, 'crds/examples');
const CRD_NAME = 'rerankerconfigs.rerank.dev';
const crd = buildCustomResourceDefinition();

interface Condition { type: string; status: string; reason?: string; message?: string }
interface ServedCrd {
  spec: { versions: Array<{ name: string; schema: unknown; additionalPrinterColumns?: unknown[]; subresources?: unknown }>; names: { shortNames?: string[] } };
  status: { conditions?: Condition[]; acceptedNames?: { kind?: string; shortNames?: string[] } };
}

const resource = (spec: Spec | unknown, namespace: string, name = 'rrc-case') => ({
  apiVersion: 'rerank.dev/v1alpha1',
  kind: 'RerankerConfig',
  metadata: { name, namespace },
  spec,
});

describe('RerankerConfig CRD on a real kube-apiserver', { skip: clusterSkip }, () => {
  let cluster: Cluster;
  let namespace: string;

  /** `kubectl create --dry-run=server` with strict field validation: undefined if accepted, else the server's message. */
  async function refusal(object: unknown): Promise<string | undefined> {
    try {
      await cluster.kubectl(['create', '--dry-run=server', '--validate=strict', '-o', 'name', '-f', '-'], { input: JSON.stringify(object) });
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  }

  before(async () => {
    cluster = await startCluster();
    await installCrd(cluster);
    namespace = await cluster.namespace('crd');
  });
  after(async () => {
    await cluster?.cleanup();
  });

  test('crds/, the chart copy and buildCustomResourceDefinition() are one CRD, and the server serves it: Established, structural, as sent', async () => {
    const file = readFileSync(CRD_FILE, 'utf8');
    assert.equal(readFileSync(CHART_CRD, 'utf8'), file, 'charts/rerank-operator/crds/ is not a copy of crds/');
    assert.deepEqual(load(file), JSON.parse(JSON.stringify(crd)), 'crds/ is not what operator/crd/definition.ts builds');

    const served = JSON.parse(await cluster.kubectl(['get', 'crd', CRD_NAME, '-o', 'json'])) as ServedCrd;
    const conditions = served.status.conditions ?? [];
    const status = (type: string) => conditions.find((c) => c.type === type)?.status;
    assert.equal(status('Established'), 'True', JSON.stringify(conditions));
    assert.equal(status('NamesAccepted'), 'True', JSON.stringify(conditions));
    assert.equal(conditions.find((c) => c.type === 'NonStructuralSchema'), undefined, JSON.stringify(conditions));
    assert.deepEqual(served.status.acceptedNames?.shortNames, ['rrc']);

    // Nothing in the schema was dropped or rewritten by the server (unknown keys would be).
    const ours = JSON.parse(JSON.stringify(crd.spec.versions[0]!)) as ServedCrd['spec']['versions'][0];
    const theirs = served.spec.versions.find((v) => v.name === ours.name)!;
    assert.deepEqual(theirs.schema, ours.schema);
    assert.deepEqual(theirs.subresources, ours.subresources);
    assert.deepEqual(theirs.additionalPrinterColumns, ours.additionalPrinterColumns);
  });

  for (const { what, mutate } of Object.values(ACCEPTED)) {
    test(`accepted (server dry-run): ${what}`, async () => {
      assert.equal(await refusal(resource(specWith(mutate), namespace)), undefined);
    });
  }

  for (const [what, mutate, why] of REJECTED) {
    test(`refused by the server: ${what}`, async () => {
      const message = await refusal(resource(specWith(mutate), namespace));
      assert.ok(message !== undefined, 'the server accepted it');
      assert.match(message, why);
    });
  }

  test('without strict field validation the server prunes an unknown serving knob instead of refusing it (kubectl --validate=warn)', async () => {
    const spec = specWith((s) => ((s.serving as Record<string, unknown>).batchSize = 4));
    const args = ['create', '--dry-run=server', '--validate=warn', '-o', 'json', '-f', '-'];
    const created = JSON.parse(await cluster.kubectl(args, { input: JSON.stringify(resource(spec, namespace)) })) as { spec: { serving: Record<string, unknown> } };
    assert.equal(created.spec.serving.batchSize, undefined);
    assert.equal(created.spec.serving.maxBatchSize, (spec.serving as Record<string, unknown>).maxBatchSize);
  });

  for (const file of readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml')).sort()) {
    test(`crds/examples/${file} is accepted (server dry-run)`, async () => {
      const object = load(readFileSync(join(EXAMPLES, file), 'utf8')) as { metadata: { name: string }; spec: unknown };
      assert.equal(await refusal(resource(object.spec, namespace, object.metadata.name)), undefined);
    });
  }

  test('kubectl get rrc shows the printer columns, filled from status', async () => {
    const object = load(readFileSync(join(EXAMPLES, 'seed.yaml'), 'utf8')) as { metadata: { name: string }; spec: unknown };
    const name = object.metadata.name;
    await cluster.kubectl(['create', '-f', '-'], { input: JSON.stringify(resource(object.spec, namespace, name)) });
    const status = {
      observedGeneration: 1,
      versionNames: 'v2-m3,v2-gemma,v1',
      weights: 'v2-m3=90,v2-gemma=10,v1=0',
      configHash: 'cafe1234',
      configApplied: '3/4',
      conditions: [{ type: 'Ready', status: 'False', reason: 'VersionsNotReady', message: 'no ready pods', lastTransitionTime: '2026-01-01T00:00:00Z' }],
      rollout: {
        phase: 'Progressing', canary: 'v2-gemma', stable: 'v2-m3', revision: 'r1', step: 1, weight: 10,
        stepStartedAt: '2026-01-01T00:00:00Z', message: 'step 2 of 5',
        lastAnalysis: { errorRatio: { value: 0.001, threshold: 0.01, ok: true }, topKOverlap: { threshold: 0.8, ok: true } },
      },
    };
    await cluster.kubectl(['patch', 'rrc', name, '-n', namespace, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);

    const columns = crd.spec.versions[0]!.additionalPrinterColumns;
    const table = async (...extra: string[]) => {
      const [header, row] = (await cluster.kubectl(['get', 'rrc', name, '-n', namespace, ...extra])).trim().split('\n');
      return { header: header!.trim().split(/\s+/), row: row!.trim().split(/\s+/) };
    };
    const plain = await table();
    assert.deepEqual(plain.header, ['NAME', ...columns.filter((c) => !c.priority).map((c) => c.name.toUpperCase())]);
    assert.deepEqual(plain.row.slice(0, 5), [name, status.versionNames, status.weights, 'False', status.configHash]);
    const wide = await table('-o', 'wide');
    assert.deepEqual(wide.header, ['NAME', ...columns.map((c) => c.name.toUpperCase())]);
    assert.equal(wide.row[wide.header.indexOf('CONFIG')], status.configApplied);
    assert.equal(wide.row[wide.header.indexOf('ROLLOUT')], 'Progressing');
    assert.equal(wide.row[wide.header.indexOf('CANARY')], '10');
  });
});
