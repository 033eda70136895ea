/** One changed key between two configs: a dotted path with its old and new value (undefined = absent). */
export interface ConfigChange {
  path: string;
  from: unknown;
  to: unknown;
}

/** Every leaf that differs between two plain-data configs, in a stable order. */
export function diffConfig(from: unknown, to: unknown, prefix = ''): ConfigChange[] {
  if (isPlainObject(from) && isPlainObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    return keys.flatMap((key) => diffConfig(from[key], to[key], prefix ? `${prefix}.${key}` : key));
  }
  if (JSON.stringify(from) === JSON.stringify(to)) return [];
  return [{ path: prefix || '(root)', from, to }];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
