import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DOC_FILE, renderConfigurationDoc, servingConfigSchema } from '../../docs/generate.ts';
import { code, fieldRows, fieldTable, type SchemaNode } from '../../docs/reference.ts';

describe('docs/configuration.md', () => {
  test('is what `npm run docs` generates from the schemas and metrics registries', () => {
    assert.equal(readFileSync(DOC_FILE, 'utf8'), renderConfigurationDoc(), 'docs/configuration.md is stale: run npm run docs');
  });

  test('every key of the serving config file has a description', () => {
    const undescribed = fieldRows(servingConfigSchema()).rows.filter((row) => row.description === '').map((row) => row.key);
    assert.deepEqual(undescribed, [], 'describe them with .meta({ description }) in server/config/schema.ts');
  });

  test('the README links to it', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    assert.ok(readme.includes('](docs/configuration.md)'), 'README.md has no link to docs/configuration.md');
  });
});

describe('reference tables', () => {
  const schema: SchemaNode = {
    type: 'object',
    required: ['name'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 20, description: 'A <name> | or two' },
      limits: {
        type: 'object',
        default: { size: 4 },
        properties: { size: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: 4 } },
      },
      tags: { type: 'array', maxItems: 3, items: { type: 'string', enum: ['a', 'b'] } },
      routes: {
        type: 'array',
        items: { type: 'object', properties: { path: { type: 'string', pattern: '^/a|b`$' } }, 'x-kubernetes-validations': [{ rule: 'true', message: 'paths differ' }] },
      },
    },
  };

  test('one row per field with type, default, allowed values and an escaped description', () => {
    const { rows, rules } = fieldRows(schema);
    assert.deepEqual(
      rows.map((row) => [row.key, row.type, row.default, row.allowed]),
      [
        ['name', 'string', 'required', '1–20 chars'],
        ['limits', 'object', '`{}`', ''],
        ['limits.size', 'integer', '`4`', '≥ 1'],
        ['tags', '[]string', '', '≤ 3 items; each: `a`, `b`'],
        ['routes', '[]object', '', ''],
        ['routes[].path', 'string', '', '`` ^/a\\|b`$ ``'],
      ],
    );
    assert.deepEqual(rules, [{ key: 'routes[]', message: 'paths differ' }]);
    assert.match(fieldTable(rows), /\| A &lt;name> \\\| or two \|/);
  });

  test('a schema keyword the tables cannot show fails the generator instead of vanishing', () => {
    assert.throws(() => fieldRows({ type: 'object', properties: { x: { anyOf: [] } as unknown as SchemaNode } }), /x: "anyOf"/);
  });

  test('code spans survive backticks', () => {
    assert.equal(code('a`b'), '`` a`b ``');
    assert.equal(code('plain'), '`plain`');
  });
});
