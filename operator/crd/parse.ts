import { formatIssues } from '../../server/config/load.ts';
import { RerankerConfigSpecSchema, type RerankerConfig, type RerankerConfigObject } from './spec.ts';

/** A spec the operator cannot act on; reported in status, not retried until the spec changes. */
export class SpecError extends Error {
  readonly issues: string[];
  constructor(issues: string[]) {
    super(`invalid spec: ${issues.join('; ')}`);
    this.name = 'SpecError';
    this.issues = issues;
  }
}

/** Validate and default a spec as read from the apiserver (which has already run the CRD's schema and CEL). */
export function parseRerankerConfig(object: RerankerConfigObject): RerankerConfig {
  const parsed = RerankerConfigSpecSchema.safeParse(object.spec);
  if (!parsed.success) throw new SpecError(formatIssues(parsed.error.issues).map((i) => `spec.${i}`));
  return { ...object, spec: parsed.data };
}
