/** Small statistics helpers for the benchmarks. */

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

/** Prometheus text → value of one sample, summed over the series whose labels contain `labelFilter`. */
export function metricSum(text: string, name: string, labelFilter = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (labelFilter && !rest.includes(labelFilter)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

/**
 * Whether a setting is faster than the baseline from its per-round ratios to it: faster at a median of at
 * least `fasterAt` with no round below 1, slower at a median of at most 1/`fasterAt` with no round above 1.
 * Under 3 rounds there is no median that one slow minute cannot make, so no verdict.
 */
export function ratioVerdict(ratios: readonly number[], fasterAt: number): 'faster' | 'slower' | 'no clear difference' | 'no verdict under 3 rounds' {
  if (ratios.length < 3) return 'no verdict under 3 rounds';
  const middle = median(ratios);
  if (middle >= fasterAt && Math.min(...ratios) >= 1) return 'faster';
  if (middle <= 1 / fasterAt && Math.max(...ratios) <= 1) return 'slower';
  return 'no clear difference';
}
