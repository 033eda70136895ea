import type { Images } from './planner.ts';

const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const;
export const DEFAULT_SERVER_IMAGE = 'ghcr.io/rerank-dev/rerank-server:latest';

/**
 * The images the operator runs for every RerankerConfig unless its `spec.images` says otherwise, from the
 * environment the chart sets: RERANK_SERVER_IMAGE, RERANK_MODEL_FETCHER_IMAGE and
 * RERANK_SERVER_IMAGE_PULL_POLICY (Always, IfNotPresent or Never; unset: Kubernetes' default).
 */
export function imagesFromEnv(env: Record<string, string | undefined>): Images {
  const images: Images = { server: env.RERANK_SERVER_IMAGE || DEFAULT_SERVER_IMAGE };
  if (env.RERANK_MODEL_FETCHER_IMAGE) images.modelFetcher = env.RERANK_MODEL_FETCHER_IMAGE;
  const policy = env.RERANK_SERVER_IMAGE_PULL_POLICY;
  if (policy) {
    const known = PULL_POLICIES.find((p) => p === policy);
    if (!known) throw new Error(`RERANK_SERVER_IMAGE_PULL_POLICY=${policy}: expected one of ${PULL_POLICIES.join(', ')}`);
    images.pullPolicy = known;
  }
  return images;
}
