import { z } from 'zod';

/**
 * Fault injection by config, as Istio's VirtualService `fault` (delay, abort) but per reranker version:
 * a share of the requests a version answers wait `delayMs` first, and a share fail with `errorStatus`
 * instead of being scored. The server's `faults` of a version, and the CRD's `spec.versions[].faults`
 * (the operator renders it through), so a rollout's gates can be tried on a canary that is known bad.
 */

/** The statuses an injected failure may answer: a model that fails (500), a version that cannot serve (503). */
export const FAULT_STATUSES = [500, 503] as const;
export type FaultStatus = (typeof FAULT_STATUSES)[number];

/** The longest injected delay: longer would only hold connections (and a drain) for nothing. */
export const MAX_FAULT_DELAY_MS = 60_000;

export const FaultsSchema = z
  .strictObject({
    errorRatio: z
      .number()
      .min(0)
      .max(1)
      .default(0)
      .meta({ description: 'Share of the requests this version answers that fail with `errorStatus` instead of being scored, 0 to 1.' }),
    errorStatus: z
      .literal(FAULT_STATUSES)
      .default(500)
      .meta({ description: 'Status of an injected failure: 500 (as a model that fails) or 503 (as a version that cannot serve).' }),
    delayMs: z
      .number()
      .int()
      .min(0)
      .max(MAX_FAULT_DELAY_MS)
      .default(0)
      .meta({ description: 'Milliseconds a delayed request waits before it is scored (or failed); 0: no delay.' }),
    delayRatio: z
      .number()
      .min(0)
      .max(1)
      .default(1)
      .meta({ description: 'Share of the requests this version answers that wait `delayMs`, 0 to 1 (default: every one).' }),
  })
  .meta({
    description:
      'Fault injection, for trying canary gates and clients on a version known to be bad (as Istio\'s VirtualService fault). ' +
      'After the version is chosen, `delayRatio` of its requests wait `delayMs`, then `errorRatio` of them fail with ' +
      '`errorStatus` without being scored. They count in the version\'s metrics as any other request (reranker_requests_total ' +
      'with their status, reranker_request_duration_seconds) and in reranker_injected_faults_total; the server warns at ' +
      'start and on each reload that changes them, and /info shows them. Not for production traffic.',
  });

export type FaultSettings = z.output<typeof FaultsSchema>;
export type FaultsInput = z.input<typeof FaultsSchema>;

/** Whether a setting injects anything at all. */
export function faultsActive(faults: FaultSettings | undefined): faults is FaultSettings {
  return faults !== undefined && (faults.errorRatio > 0 || (faults.delayMs > 0 && faults.delayRatio > 0));
}

/** One line for logs: what is injected, e.g. `errorRatio 0.3 (500), delay 200 ms on 50 %`. */
export function describeFaults(faults: FaultSettings): string {
  const parts: string[] = [];
  if (faults.errorRatio > 0) parts.push(`errorRatio ${faults.errorRatio} (${faults.errorStatus})`);
  if (faults.delayMs > 0 && faults.delayRatio > 0) parts.push(`delay ${faults.delayMs} ms on ${Math.round(faults.delayRatio * 1000) / 10} %`);
  return parts.length ? parts.join(', ') : 'nothing';
}
