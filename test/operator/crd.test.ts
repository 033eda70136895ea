import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { buildCustomResourceDefinition } from '../../operator/crd/definition.ts';
import { CRD_FILE, renderCrdYaml } from '../../operator/crd/generate.ts';
import type { JsonSchemaProps } from '../../operator/crd/openapi.ts';
import { RerankerConfigSpecSchema } from '../../operator/crd/spec.ts';
import { ServingConfigSchema } from '../../server/config/schema.ts';
import { readExample } from './support/examples.ts';
import { validateAgainstCrd } from './support/structural.ts';

const crd = buildCustomResourceDefinition();
const version = crd.spec.versions[0]!;
const specSchema = version.schema.openAPIV3Schema.properties!.spec!;

function walk(node: JsonSchemaProps, path: string, visit: (node: JsonSchemaProps, path: string) => void): void {
  visit(node, path);
  for (const [key, child] of Object.entries(node.properties ?? {})) walk(child, `${path}.${key}`, visit);
  if (node.items) walk(node.items, `${path}[]`, visit);
  if (node.additionalProperties) walk(node.additionalProperties, `${path}{}`, visit);
}

/**
 * Properties under `node` with no description: what `kubectl explain` and docs/configuration.md would show
 * empty. Only declared properties count; the free keys of a map (additionalProperties) have none to give.
 */
function undescribedProperties(node: JsonSchemaProps, path: string): string[] {
  const found: string[] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    if (!child.description?.trim()) found.push(`${path}.${key}`);
    found.push(...undescribedProperties(child, `${path}.${key}`));
  }
  if (node.items) found.push(...undescribedProperties(node.items, `${path}[]`));
  if (node.additionalProperties) found.push(...undescribedProperties(node.additionalProperties, `${path}{}`));
  return found;
}

describe('RerankerConfig CRD', () => {
  test('the committed CRD is the one generated from the zod schemas (UPDATE_GOLDEN=1 rewrites it)', () => {
    const generated = renderCrdYaml();
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(CRD_FILE, generated);
    assert.equal(readFileSync(CRD_FILE, 'utf8'), generated, 'crds/ is stale: run `node operator/crd/generate.ts`');
  });

  test('names, scope, status subresource and printer columns', () => {
    assert.equal(crd.metadata.name, 'rerankerconfigs.rerank.dev');
    assert.equal(crd.spec.scope, 'Namespaced');
    assert.deepEqual(crd.spec.names.shortNames, ['rrc']);
    assert.equal(version.name, 'v1alpha1');
    assert.deepEqual(version.subresources, { status: {} });
    assert.deepEqual(
      version.additionalPrinterColumns.map((c) => c.name),
      ['Versions', 'Weights', 'Ready', 'Rollout', 'Canary', 'Config', 'Config-Hash', 'Age'],
    );
  });

  test('the schema is structural: every node typed, no additionalProperties beside properties, list-map keys required', () => {
    walk(version.schema.openAPIV3Schema, '', (node, path) => {
      assert.ok(node.type || node['x-kubernetes-int-or-string'] || node['x-kubernetes-preserve-unknown-fields'], `${path}: no type`);
      assert.ok(!(node.properties && node.additionalProperties), `${path}: properties and additionalProperties`);
      for (const key of node['x-kubernetes-list-map-keys'] ?? []) {
        const item = node.items!;
        assert.ok(item.required?.includes(key) || item.properties?.[key]?.default !== undefined, `${path}: list-map key ${key} optional`);
      }
      // CEL cost estimation needs bounds on every list a rule walks.
      if (node['x-kubernetes-validations'] && node.type === 'array') assert.ok(node.maxItems, `${path}: unbounded list under CEL`);
    });
  });

  test('every property of spec and status has a description, for kubectl explain and the docs', () => {
    const properties = version.schema.openAPIV3Schema.properties!;
    const undescribed = [...undescribedProperties(properties.spec!, 'spec'), ...undescribedProperties(properties.status!, 'status')];
    assert.deepEqual(undescribed, [], 'describe them with .meta({ description }) in operator/crd/spec.ts');
  });

  test('the description check names undescribed properties inside objects, list items and map values', () => {
    const schema: JsonSchemaProps = {
      type: 'object',
      properties: {
        described: { type: 'string', description: 'Has one.' },
        blank: { type: 'string', description: ' ' },
        list: {
          type: 'array',
          description: 'A list.',
          items: { type: 'object', properties: { name: { type: 'string' }, note: { type: 'string', description: 'Has one.' } } },
        },
        map: {
          type: 'object',
          description: 'A map.',
          additionalProperties: { type: 'object', properties: { count: { type: 'integer' } } },
        },
        labels: { type: 'object', description: 'Free keys.', additionalProperties: { type: 'string' } },
      },
    };
    assert.deepEqual(undescribedProperties(schema, 'spec'), ['spec.blank', 'spec.list[].name', 'spec.map{}.count']);
  });

  test('spec.serving is the server\'s ServingConfigSchema: every serving knob is in the CRD with the server\'s default', () => {
    const serving = specSchema.properties!.serving!;
    assert.deepEqual(Object.keys(serving.properties!).sort(), Object.keys(ServingConfigSchema.shape).sort());
    assert.deepEqual(serving.default, ServingConfigSchema.parse({}));
  });

  test('spec properties are exactly the zod schema\'s keys, at every level the TypeScript types describe', () => {
    assert.deepEqual(Object.keys(specSchema.properties!).sort(), Object.keys(RerankerConfigSpecSchema.shape).sort());
    const versionItem = specSchema.properties!.versions!.items!;
    const zodVersion = RerankerConfigSpecSchema.shape.versions.element;
    assert.deepEqual(Object.keys(versionItem.properties!).sort(), Object.keys(zodVersion.shape).sort());
  });

  const examples = readdirSync(new URL('../../crds/examples/', import.meta.url)).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -'.yaml'.length));
  test('every example under crds/examples is checked', () => {
    for (const name of ['quickstart', 'router', 'seed']) assert.ok(examples.includes(name), name);
  });
  for (const name of examples) {
    test(`example ${name} is accepted by the CRD (schema + CEL) and by the zod spec schema`, () => {
      const object = readExample(name);
      assert.deepEqual(validateAgainstCrd(specSchema, object.spec), []);
      assert.equal(RerankerConfigSpecSchema.safeParse(object.spec).success, true);
    });
  }

  test('CRD defaulting and zod defaulting give the same spec', () => {
    const spec = readExample('seed').spec;
    const viaCrd = structuredClone(spec) as Record<string, unknown>;
    validateAgainstCrd(specSchema, viaCrd);
    assert.deepEqual(
      RerankerConfigSpecSchema.parse(defaultedLikeApiserver(specSchema, spec)),
      RerankerConfigSpecSchema.parse(spec),
    );
  });
});

function defaultedLikeApiserver(schema: JsonSchemaProps, value: unknown): unknown {
  if (schema.type === 'object' && value && typeof value === 'object' && !Array.isArray(value)) {
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const [key, child] of Object.entries(schema.properties ?? {})) {
      if (out[key] === undefined && child.default !== undefined) out[key] = structuredClone(child.default);
      if (out[key] !== undefined) out[key] = defaultedLikeApiserver(child, out[key]);
    }
    return out;
  }
  if (schema.type === 'array' && Array.isArray(value)) return value.map((v) => defaultedLikeApiserver(schema.items!, v));
  return value;
}

test('the CRD YAML parses back to the built object', () => {
  const parsed = load(readFileSync(CRD_FILE, 'utf8'));
  assert.deepEqual(parsed, JSON.parse(JSON.stringify(crd)));
});
