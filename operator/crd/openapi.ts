import { z } from 'zod';

/** A node of a CRD's structural OpenAPI v3 schema, keys exactly as the apiserver reads them. */
export interface JsonSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, JsonSchemaProps>;
  additionalProperties?: JsonSchemaProps;
  items?: JsonSchemaProps;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-validations'?: Array<{ rule: string; message?: string }>;
}

const KEPT = new Set<string>([
  'type', 'description', 'properties', 'additionalProperties', 'items', 'required', 'enum', 'default', 'format',
  'pattern', 'minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems',
  'x-kubernetes-int-or-string', 'x-kubernetes-preserve-unknown-fields', 'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys', 'x-kubernetes-validations',
]);

/**
 * zod → structural schema. zod's JSON Schema is close; what a CRD forbids or needs is fixed here:
 * `additionalProperties: false` goes (unknown fields are pruned instead), int-or-string unions collapse
 * to the Kubernetes marker, zod's safe-integer bounds go, and any key a CRD does not know is an error
 * rather than silently dropped.
 */
export function toStructuralSchema(schema: z.ZodType): JsonSchemaProps {
  const json = z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'throw' }) as Record<string, unknown>;
  return convert(json, '(root)');
}

function convert(node: Record<string, unknown>, where: string): JsonSchemaProps {
  if (node['x-kubernetes-int-or-string'] === true) {
    const out: JsonSchemaProps = { 'x-kubernetes-int-or-string': true };
    if (typeof node.description === 'string') out.description = node.description;
    return out;
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$schema') continue;
    if (key === 'additionalProperties' && value === false) continue;
    if (!KEPT.has(key)) throw new Error(`${where}: "${key}" has no structural-schema equivalent`);
    if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, Record<string, unknown>>).map(([name, child]) => [name, convert(child, `${where}.${name}`)]),
      );
    } else if (key === 'items' || key === 'additionalProperties') {
      out[key] = convert(value as Record<string, unknown>, `${where}[]`);
    } else if ((key === 'minimum' || key === 'maximum') && Math.abs(value as number) >= Number.MAX_SAFE_INTEGER) {
      continue;
    } else {
      out[key] = value;
    }
  }
  if (out.type === undefined && out['x-kubernetes-preserve-unknown-fields'] !== true) {
    throw new Error(`${where}: a structural schema needs a type`);
  }
  return out as JsonSchemaProps;
}
