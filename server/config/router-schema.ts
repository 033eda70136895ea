import { z } from 'zod';

/**
 * router.yaml, the router's part of the serving ConfigMap, in its own key because config.yaml is read
 * by the strict RerankConfigSchema. `rerank-server router` loads it (proxying each request to the
 * upstream of the version it chose: path, then header, then weighted choice from config.yaml's weights,
 * then the default) and the operator renders it, both through this schema.
 */
export const RouterConfigSchema = z.strictObject({
  router: z.strictObject({
    /** Request header that pins a version. */
    headerName: z.string().min(1),
    /** Base URL of each enabled version's Service (its CPU fallback's while only that is ready). */
    upstreams: z.record(z.string(), z.url({ protocol: /^https?$/ })),
  }),
});

export type RouterConfig = z.infer<typeof RouterConfigSchema>;
