import { Environment } from '@marcbachmann/cel-js';
import type { JsonSchemaProps } from '../../../operator/crd/openapi.ts';

/**
 * What the apiserver does with a custom resource's spec, in the order it does it: default, check the
 * structural schema (types, required, enums, bounds, patterns; unknown fields are refused, as
 * kubectl's default strict field validation does), then evaluate every `x-kubernetes-validations` CEL
 * rule with `self` bound to its node. Integers reach CEL as ints (BigInt), as they do in the apiserver.
 *
 * Messages are worded as kube-apiserver v1.32 words them (test/cluster/crd.test.ts checks the same
 * cases against a real one). As there, a wrong type, a missing required field, an enum miss, or a
 * string or list over its maximum blocks the CEL rules; failed patterns and bounds do not.
 */
/** CEL as the apiserver offers it: the standard library plus the Kubernetes list functions the rules use. */
const cel = new Environment({ unlistedVariablesAreDyn: true }).registerFunction('list.isSorted(): bool', (list: unknown[]) =>
  list.every((item, i) => i === 0 || (list[i - 1] as number | bigint | string) <= (item as number | bigint | string)),
);

export function validateAgainstCrd(schema: JsonSchemaProps, value: unknown): string[] {
  const errors: Problem[] = [];
  const defaulted = applyDefaults(schema, structuredClone(value));
  check(schema, defaulted, 'spec', errors);
  const messages = errors.map((e) => e.message);
  // Strict field validation refuses an unknown field while decoding (400), before any validation.
  const undecodable = messages.filter((m) => m.startsWith('strict decoding error'));
  if (undecodable.length) return undecodable;
  if (errors.some((e) => e.blocking)) {
    messages.push('<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation');
  } else {
    runCel(schema, defaulted, 'spec', messages);
  }
  return messages;
}

interface Problem {
  message: string;
  /** The apiserver skips CEL when it meets one of these (apiextensions-apiserver hasBlockingErr). */
  blocking: boolean;
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

const invalid = (path: string, value: unknown, detail: string): Problem => ({ message: `${path}: Invalid value: ${JSON.stringify(value)}: ${path} in body ${detail}`, blocking: false });
const blocking = (message: string): Problem => ({ message, blocking: true });
const typeOf = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'object' ? 'object' : Number.isInteger(value) ? 'integer' : typeof value);
const typeInvalid = (path: string, value: unknown, type: string) =>
  blocking(`${path}: Invalid value: "${typeOf(value)}": ${path} in body must be of type ${type}: "${typeOf(value)}"`);

function check(schema: JsonSchemaProps, value: unknown, path: string, errors: Problem[]): void {
  if (schema['x-kubernetes-int-or-string']) {
    if (typeof value !== 'string' && !Number.isInteger(value)) errors.push(typeInvalid(path, value, 'integer,string'));
    return;
  }
  switch (schema.type) {
    case 'object': {
      if (!isObject(value)) return void errors.push(typeInvalid(path, value, 'object'));
      for (const key of schema.required ?? []) if (value[key] === undefined) errors.push(blocking(`${path}.${key}: Required value`));
      for (const [key, child] of Object.entries(value)) {
        const childSchema = schema.properties?.[key] ?? schema.additionalProperties;
        if (!childSchema) {
          if (!schema['x-kubernetes-preserve-unknown-fields']) errors.push(blocking(`strict decoding error: unknown field "${path}.${key}"`));
          continue;
        }
        check(childSchema, child, `${path}.${key}`, errors);
      }
      return;
    }
    case 'array': {
      if (!Array.isArray(value)) return void errors.push(typeInvalid(path, value, 'array'));
      if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(invalid(path, value.length, `should have at least ${schema.minItems} items`));
      if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(blocking(`${path}: Too many: ${value.length}: must have at most ${schema.maxItems} items`));
      const keys = schema['x-kubernetes-list-map-keys'];
      if (schema['x-kubernetes-list-type'] === 'map' && keys) {
        const seen = new Set<string>();
        value.forEach((item, i) => {
          const key = JSON.stringify(Object.fromEntries(keys.map((k) => [k, (item as Record<string, unknown>)[k]])));
          if (seen.has(key)) errors.push({ message: `${path}[${i}]: Duplicate value: ${key}`, blocking: false });
          seen.add(key);
        });
      }
      value.forEach((item, i) => check(schema.items!, item, `${path}[${i}]`, errors));
      return;
    }
    case 'string':
      if (typeof value !== 'string') return void errors.push(typeInvalid(path, value, 'string'));
      if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(invalid(path, value, `should be at least ${schema.minLength} chars long`));
      if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(blocking(`${path}: Too long: may not be more than ${schema.maxLength} bytes`));
      if (schema.pattern && !new RegExp(schema.pattern).test(value)) errors.push(invalid(path, value, `should match '${schema.pattern}'`));
      break;
    case 'integer':
    case 'number':
      if (typeof value !== 'number' || (schema.type === 'integer' && !Number.isInteger(value))) {
        return void errors.push(typeInvalid(path, value, schema.type));
      }
      if (schema.minimum !== undefined && value < schema.minimum) errors.push(invalid(path, value, `should be greater than or equal to ${schema.minimum}`));
      if (schema.maximum !== undefined && value > schema.maximum) errors.push(invalid(path, value, `should be less than or equal to ${schema.maximum}`));
      break;
    case 'boolean':
      if (typeof value !== 'boolean') errors.push(typeInvalid(path, value, 'boolean'));
      break;
  }
  if (schema.enum && !schema.enum.includes(value)) {
    errors.push(blocking(`${path}: Unsupported value: ${JSON.stringify(value)}: supported values: ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}`));
  }
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
      ok = cel.evaluate(rule, { self: toCel(schema, value) });
    } catch (error) {
      throw new Error(`${path}: CEL rule ${rule} failed to evaluate: ${(error as Error).message}`, { cause: error });
    }
    if (ok !== true) errors.push(`${path}: Invalid value: "${typeOf(value)}": ${message ?? `failed rule: ${rule}`}`);
  }
  if (schema.type === 'object' && isObject(value)) {
    for (const [key, child] of Object.entries(schema.properties ?? {})) runCel(child, value[key], `${path}.${key}`, errors);
  } else if (schema.type === 'array' && Array.isArray(value)) {
    value.forEach((item, i) => runCel(schema.items!, item, `${path}[${i}]`, errors));
  }
}
