/* eslint-disable @typescript-eslint/no-explicit-any -- reads into serialized output */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiException, dumpYaml } from '@kubernetes/client-node';
import { load } from 'js-yaml';
import { buildCustomResourceDefinition } from '../../operator/crd/definition.ts';
import { KubeApiError, type KubeObject } from '../../operator/kube.ts';
import { apiError, MAX_WATCH_SECONDS, toClientModel, toWire, WATCH_INACTIVITY_MS, watchTimeoutSeconds, type WatchInternals } from '../../operator/kube-client.ts';
import { failureKind } from '../../operator/failures.ts';
import { planDesiredObjects } from '../../operator/planner.ts';
import { IMAGES, example } from './support/examples.ts';

/** What client-node puts on the wire for an object: its typed serializer's output (dumpYaml runs the same one). */
const onTheWire = (clientObject: unknown) => load(dumpYaml(clientObject));

describe('client-node adapter: what the apiserver receives', () => {
  const crd = buildCustomResourceDefinition() as unknown as KubeObject;

  test('the trap: a plain CRD object loses its x-kubernetes-* keys in client-node\'s typed serializer', () => {
    const sent = onTheWire(crd) as typeof crd & { spec: any };
    const spec = sent.spec.versions[0].schema.openAPIV3Schema.properties.spec;
    assert.equal(spec['x-kubernetes-validations'], undefined);
    assert.equal(spec.properties.routing.properties.mode.enum, undefined);
  });

  test('through toClientModel the CRD arrives whole: CEL rules, list types, int-or-string, defaults, enums', () => {
    const sent = onTheWire(toClientModel(crd));
    assert.deepEqual(sent, JSON.parse(JSON.stringify(crd)));
  });

  test('planned objects arrive exactly as planned (Deployment, Service, ConfigMap, HTTPRoute)', () => {
    for (const object of planDesiredObjects(example('seed'), IMAGES, {})) {
      assert.deepEqual(onTheWire(toClientModel(object)), JSON.parse(JSON.stringify(object)), `${object.kind} ${object.metadata.name}`);
    }
  });

  test('typed objects read back come out as wire JSON, timestamps as strings', () => {
    const typed = toClientModel({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', namespace: 'n', creationTimestamp: '2026-01-01T00:00:00.000Z' },
    });
    assert.deepEqual(toWire(typed), { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'n', creationTimestamp: '2026-01-01T00:00:00.000Z' } });
  });

  test('API errors keep their status code and the apiserver\'s message, with what was being done', () => {
    const mapped = apiError(new ApiException(409, 'Conflict', JSON.stringify({ reason: 'Conflict', message: 'the object has been modified' }), {}), 'replace Lease l');
    assert.ok(mapped instanceof KubeApiError);
    assert.equal(mapped.code, 409);
    assert.equal(mapped.message, 'replace Lease l: the object has been modified (409 Conflict)');
    const missingKind = apiError(new Error('Unrecognized API version and kind: gateway.networking.k8s.io/v1 HTTPRoute'), 'list HTTPRoute');
    assert.equal((missingKind as KubeApiError).code, 404);
    const refused = apiError(new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' }) }), 'get Lease l');
    assert.equal((refused as Error).message, 'get Lease l: fetch failed: connect ECONNREFUSED 127.0.0.1:6443', 'a network failure names what was being done and why');
    assert.equal(failureKind(refused), 'ECONNREFUSED');
  });

  test('watches ask the server to end them (5-10 min) before client-node\'s inactivity timeout would call them failed', async () => {
    const { Watch, KubeConfig } = await import('@kubernetes/client-node');
    const internals = new Watch(new KubeConfig()) as unknown as WatchInternals;
    assert.equal(typeof internals.requestTimeoutMs, 'number', 'client-node renamed its watch inactivity timeout');
    assert.ok(WATCH_INACTIVITY_MS > MAX_WATCH_SECONDS * 1000);
    assert.deepEqual([watchTimeoutSeconds(() => 0), watchTimeoutSeconds(() => 0.999)], [300, 599]);
  });
});
