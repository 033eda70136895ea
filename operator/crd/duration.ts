import { z } from 'zod';

/** A Kubernetes-style duration: one or more `<number><unit>` parts, units ms, s, m, h (e.g. 90s, 2m, 1h30m). */
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds of a duration string; throws on anything DurationSchema would refuse. */
export function durationMs(text: string): number {
  if (!DURATION.test(text)) throw new Error(`"${text}" is not a duration such as 30s, 2m or 1h30m`);
  let total = 0;
  for (const [, value, unit] of text.matchAll(PART)) total += Number(value) * UNIT_MS[unit as string]!;
  return Math.round(total);
}

/** A duration string, checked by pattern in the CRD and by the same pattern in zod. */
export const DurationSchema = z.string().max(32).regex(DURATION);
