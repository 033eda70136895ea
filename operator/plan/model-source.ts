import { resolveSource } from '../../server/models/resolve.ts';
import type { RerankerConfigSpec } from '../crd/spec.ts';
import { PlanError } from './serving-config.ts';

/**
 * Each enabled version's model source, parsed by the same code `rerank-server models pull` runs in
 * the init container. The CRD checks only the scheme; a source that would fail there (an hf:// repo
 * with three path parts, an oci:// reference without a repository, a URL that names no file) is
 * refused here, in status, rather than as a crash-looping init container.
 */
export function checkModelSources(spec: RerankerConfigSpec): void {
  const problems: string[] = [];
  spec.versions.forEach((version, index) => {
    if (!version.enabled) return;
    try {
      resolveSource(version.model.source, { env: {}, ...(version.model.sha256 ? { sha256: version.model.sha256 } : {}) });
    } catch (error) {
      problems.push(`spec.versions[${index}].model.source (${version.name}): ${error instanceof Error ? error.message : String(error)}`);
    }
  });
  if (problems.length > 0) throw new PlanError(problems.join('; '));
}
