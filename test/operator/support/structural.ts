import { evaluate } from '@marcbachmann/cel-js';
import type { JsonSchemaProps } from '../../../operator/crd/openapi.ts';

/**
 * What the apiserver does with a custom resource's spec, in the order it does it: default, check the
 * structural schema (types, required, enums, bounds, patterns; unknown fields would be pruned, here they
 * are reported), then evaluate every `x-kubernetes-validations` CEL rule with `self` bound to its node.
 * Integers reach CEL as ints (BigInt), as they do in the apiserver.
 */
export function validateAgainstCrd(schema: JsonSchemaProps, value: unknown): string[] {
  const errors: string[] = [];
  const defaulted = applyDefaults(schema, structuredClone(value));
  check(schema, defaulted, 'spec', errors);
  if (errors.length === 0) runCel(schema, defaulted, 'spec', errors);
  return errors;
}

function applyDefaults(schema: JsonSchemaProps, value: unknown): unknown {
  if (schema.type === 'object' && isObject(value) && schema.properties) {
    for (const [key, child] of Object.entries(schema.properties)) {
      if (value[key] === undefined && child.default !== undefined) value[key] = structuredClone(child.default);
      if (value[key] !== undefined) value[key] = applyDefaults(child, value[key]);
    }
  } else if (schema.type === 'array' && Array.isArray(value) && schema.items) {
    return value.map((item) => applyDefaults(schema.items!, item));
  }
  return value;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function check(schema: JsonSchemaProps, value: unknown, path: string, errors: string[]): void {
  if (schema['x-kubernetes-int-or-string']) {
    if (typeof value !== 'string' && !Number.isInteger(value)) errors.push(`${path}: must be an integer or a string`);
    return;
  }
  switch (schema.type) {
    case 'object': {
      if (!isObject(value)) return void errors.push(`${path}: must be an object`);
      for (const key of schema.required ?? []) if (value[key] === undefined) errors.push(`${path}.${key}: Required value`);
      for (const [key, child] of Object.entries(value)) {
        const childSchema = schema.properties?.[key] ?? schema.additionalProperties;
        if (!childSchema) {
          if (!schema['x-kubernetes-preserve-unknown-fields']) errors.push(`${path}.${key}: unknown field`);
          continue;
        }
        check(childSchema, child, `${path}.${key}`, errors);
      }
      return;
    }
    case 'array': {
      if (!Array.isArray(value)) return void errors.push(`${path}: must be an array`);
      if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${path}: at least ${schema.minItems} items`);
      if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${path}: at most ${schema.maxItems} items`);
      const keys = schema['x-kubernetes-list-map-keys'];
      if (schema['x-kubernetes-list-type'] === 'map' && keys) {
        const seen = new Set<string>();
        for (const item of value) {
          const key = JSON.stringify(keys.map((k) => (item as Record<string, unknown>)[k]));
          if (seen.has(key)) errors.push(`${path}: Duplicate value: ${key}`);
          seen.add(key);
        }
      }
      value.forEach((item, i) => check(schema.items!, item, `${path}[${i}]`, errors));
      return;
    }
    case 'string':
      if (typeof value !== 'string') return void errors.push(`${path}: must be a string`);
      if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${path}: too short`);
      if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${path}: too long`);
      if (schema.pattern && !new RegExp(schema.pattern).test(value)) errors.push(`${path}: must match ${schema.pattern}`);
      break;
    case 'integer':
    case 'number':
      if (typeof value !== 'number' || (schema.type === 'integer' && !Number.isInteger(value))) {
        return void errors.push(`${path}: must be an ${schema.type}`);
      }
      if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${path}: must be >= ${schema.minimum}`);
      if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${path}: must be <= ${schema.maximum}`);
      break;
    case 'boolean':
      if (typeof value !== 'boolean') errors.push(`${path}: must be a boolean`);
      break;
  }
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${path}: must be one of ${schema.enum.join(', ')}`);
}

function toCel(schema: JsonSchemaProps, value: unknown): unknown {
  if (schema.type === 'integer' && typeof value === 'number') return BigInt(value);
  if (schema.type === 'array' && Array.isArray(value)) return value.map((item) => toCel(schema.items!, item));
  if (schema.type === 'object' && isObject(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, toCel(schema.properties?.[k] ?? schema.additionalProperties ?? {}, v)]),
    );
  }
  return value;
}

function runCel(schema: JsonSchemaProps, value: unknown, path: string, errors: string[]): void {
  if (value === undefined) return;
  for (const { rule, message } of schema['x-kubernetes-validations'] ?? []) {
    let ok: unknown;
    try {
      ok = evaluate(rule, { self: toCel(schema, value) });
    } catch (error) {
      throw new Error(`${path}: CEL rule ${rule} failed to evaluate: ${(error as Error).message}`, { cause: error });
    }
    if (ok !== true) errors.push(`${path}: ${message ?? `failed rule: ${rule}`}`);
  }
  if (schema.type === 'object' && isObject(value)) {
    for (const [key, child] of Object.entries(schema.properties ?? {})) runCel(child, value[key], `${path}.${key}`, errors);
  } else if (schema.type === 'array' && Array.isArray(value)) {
    value.forEach((item, i) => runCel(schema.items!, item, `${path}[${i}]`, errors));
  }
}
