import type { Registry } from 'prom-client';

/**
 * Markdown reference tables from JSON Schema (what zod's `z.toJSONSchema` and the CRD's structural
 * schema produce) and from prom-client registries. Plain functions over plain data: docs/generate.ts
 * feeds them the real schemas and metrics.
 */

/** The JSON Schema keys the tables read. Any other structural keyword is an error, not a silent gap. */
export interface SchemaNode {
  type?: string | string[];
  description?: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  propertyNames?: SchemaNode;
  items?: SchemaNode;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-validations'?: Array<{ rule: string; message?: string }>;
}

export interface FieldRow {
  key: string;
  type: string;
  /** Rendered default: `required`, a value, or empty when the field is optional without one. */
  default: string;
  allowed: string;
  description: string;
}

/** A rule the schema states beside its fields (a CEL validation), with where it applies. */
export interface SchemaRule {
  key: string;
  message: string;
}

const UNSUPPORTED = ['anyOf', 'oneOf', 'allOf', '$ref', 'not', 'if'];

/** One row per field, depth first in declaration order; array items and map values continue the path as `[]` and `.<name>`. */
export function fieldRows(root: SchemaNode, prefix = ''): { rows: FieldRow[]; rules: SchemaRule[] } {
  const rows: FieldRow[] = [];
  const rules: SchemaRule[] = [];
  const visit = (node: SchemaNode, key: string, required: boolean): void => {
    for (const keyword of UNSUPPORTED) {
      if (keyword in node) throw new Error(`${key || '(root)'}: "${keyword}" is not supported by the reference tables`);
    }
    if (key !== prefix) rows.push({ key, type: typeOf(node), default: defaultOf(node, required), allowed: allowedOf(node), description: node.description ?? '' });
    for (const validation of node['x-kubernetes-validations'] ?? []) {
      rules.push({ key: key || '(root)', message: validation.message ?? validation.rule });
    }
    const join = (name: string) => (key ? `${key}.${name}` : name);
    for (const [name, child] of Object.entries(node.properties ?? {})) visit(child, join(name), node.required?.includes(name) ?? false);
    const element = node.items ?? (typeof node.additionalProperties === 'object' ? node.additionalProperties : undefined);
    if (element?.properties) {
      const elementKey = node.items ? `${key}[]` : join('<name>');
      for (const validation of element['x-kubernetes-validations'] ?? []) rules.push({ key: elementKey, message: validation.message ?? validation.rule });
      for (const [name, child] of Object.entries(element.properties)) visit(child, `${elementKey}.${name}`, element.required?.includes(name) ?? false);
    }
  };
  visit(root, prefix, true);
  return { rows, rules };
}

function typeOf(node: SchemaNode): string {
  if (node['x-kubernetes-int-or-string']) return 'int or string';
  const types = Array.isArray(node.type) ? node.type : node.type ? [node.type] : [];
  if (types.length > 1) return types.join(' or ');
  if (types[0] === 'array') return `[]${node.items ? typeOf(node.items) : 'any'}`;
  if (types[0] === 'object' && typeof node.additionalProperties === 'object') return `map[string]${typeOf(node.additionalProperties)}`;
  return types[0] ?? 'any';
}

function defaultOf(node: SchemaNode, required: boolean): string {
  if (node.default === undefined) return required ? 'required' : '';
  // An object whose default is just its fields' defaults reads as `{}`: each field row shows its own.
  if (isPlainObject(node.default) && node.properties && sameJson(node.default, impliedDefault(node))) return code('{}');
  return code(scalar(node.default));
}

function impliedDefault(node: SchemaNode): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, child] of Object.entries(node.properties ?? {})) if (child.default !== undefined) out[name] = child.default;
  return out;
}

function allowedOf(node: SchemaNode): string {
  const parts: string[] = [];
  if (node.enum) parts.push(node.enum.map((value) => code(scalar(value))).join(', '));
  const range = rangeOf(node.minimum, node.maximum, node.exclusiveMinimum, node.exclusiveMaximum);
  if (range) parts.push(range);
  const length = node.minLength === 1 && node.maxLength === undefined ? 'non-empty' : countOf(node.minLength, node.maxLength, 'chars');
  if (length) parts.push(length);
  if (node.pattern !== undefined) parts.push(code(node.pattern));
  if (node.format !== undefined) parts.push(node.format);
  const items = countOf(node.minItems, node.maxItems, 'items');
  if (items) parts.push(items);
  if (node.items && !node.items.properties) {
    const each = allowedOf(node.items);
    if (each) parts.push(`each: ${each}`);
  }
  if (node.propertyNames) {
    const keys = allowedOf(node.propertyNames);
    if (keys) parts.push(`keys: ${keys}`);
  }
  return parts.join('; ');
}

/** zod states "any safe integer" as ±(2^53 - 1); that is no limit worth printing. */
function bound(value: number | undefined): number | undefined {
  return value === undefined || Math.abs(value) >= Number.MAX_SAFE_INTEGER ? undefined : value;
}

function rangeOf(min?: number, max?: number, exclusiveMin?: number, exclusiveMax?: number): string {
  const lo = bound(min);
  const hi = bound(max);
  const xlo = bound(exclusiveMin);
  const xhi = bound(exclusiveMax);
  if (lo !== undefined && hi !== undefined) return `${lo}–${hi}`;
  const parts: string[] = [];
  if (lo !== undefined) parts.push(`≥ ${lo}`);
  if (xlo !== undefined) parts.push(`> ${xlo}`);
  if (hi !== undefined) parts.push(`≤ ${hi}`);
  if (xhi !== undefined) parts.push(`< ${xhi}`);
  return parts.join(', ');
}

function countOf(min: number | undefined, max: number | undefined, unit: string): string {
  if (min !== undefined && min > 0 && max !== undefined) return `${min}–${max} ${unit}`;
  if (max !== undefined) return `≤ ${max} ${unit}`;
  if (min !== undefined && min > 0) return `≥ ${min} ${unit}`;
  return '';
}

export interface MetricRow {
  name: string;
  type: string;
  labels: string[];
  help: string;
}

/**
 * What prom-client's metric objects carry at run time. Its typings leave out `labelNames` and declare
 * `type` as a numeric enum, while the objects hold the Prometheus type name ("counter", ...).
 */
interface RegisteredMetric {
  name: string;
  help: string;
  type: unknown;
  labelNames?: readonly string[];
}

/** The metrics a registry holds, in registration order. */
export function metricRows(registry: Registry): MetricRow[] {
  return (registry.getMetricsAsArray() as unknown as RegisteredMetric[]).map((metric) => {
    if (typeof metric.type !== 'string') throw new Error(`${metric.name}: metric type ${String(metric.type)} is not a name`);
    return { name: metric.name, type: metric.type, labels: [...(metric.labelNames ?? [])], help: metric.help };
  });
}

export function fieldTable(rows: readonly FieldRow[]): string {
  return table(
    ['Key', 'Type', 'Default', 'Allowed', 'Description'],
    rows.map((row) => [code(row.key), row.type, row.default === 'required' ? '**required**' : row.default, row.allowed, text(row.description)]),
  );
}

export function metricTable(rows: readonly MetricRow[]): string {
  return table(
    ['Metric', 'Type', 'Labels', 'Help'],
    rows.map((row) => [code(row.name), row.type, row.labels.map(code).join(', '), text(row.help)]),
  );
}

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

/** A code span that survives backticks inside and, in a table, pipes. */
export function code(value: string): string {
  const longestRun = Math.max(0, ...[...value.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longestRun + 1);
  const padded = longestRun > 0 ? ` ${value} ` : value;
  return `${fence}${padded.replaceAll('|', '\\|')}${fence}`;
}

/** Prose for a table cell: one line, pipes escaped, and `<x>` outside code spans shown rather than read as HTML. */
function text(value: string): string {
  return value
    .replace(/\s*\n\s*/g, ' ')
    .replaceAll('|', '\\|')
    .split(/(`[^`]*`)/)
    .map((part, i) => (i % 2 === 1 ? part : part.replace(/<(?=[A-Za-z/])/g, '&lt;')))
    .join('');
}

function scalar(value: unknown): string {
  if (typeof value === 'string') return value === '' ? '""' : value;
  return JSON.stringify(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys(value[key])]));
}
