import { ApiException } from '@kubernetes/client-node';

/** Small helpers the test kubelet's modules share: logging, API errors, time formats, quoting. */

/** Field manager of the kubelet's server-side applies and status patches. */
export const FIELD_MANAGER = 'test-kubelet';

export function log(message: string, error?: unknown): void {
  const detail = error === undefined ? '' : `: ${describeError(error)}`;
  process.stderr.write(`[test-kubelet] ${message}${detail}\n`);
}

export function describeError(error: unknown): string {
  if (error instanceof ApiException) {
    const body = typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
    return `HTTP ${error.code}: ${body.slice(0, 500)}`;
  }
  return error instanceof Error ? error.message : String(error);
}

export function apiCode(error: unknown): number | undefined {
  if (error instanceof ApiException) return error.code;
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : undefined;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** metav1.Time: RFC 3339, whole seconds. */
export const timeNow = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
/** metav1.MicroTime: six fractional digits. */
export const microNow = () => new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
export const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
