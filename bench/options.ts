/** Command-line options of the benchmarks, checked before any work starts. */

/** A count: a whole number of at least `min`, else an error naming the option. */
export function wholeNumber(name: string, value: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name}: a whole number ≥ ${min}, not ${value}`);
  return n;
}
