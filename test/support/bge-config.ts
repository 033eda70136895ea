/** The config.yaml of the BGE multi-version reranker image, as its users have it. */
export const BGE_IMAGE_CONFIG = `
default_version: "v2-m3"
versions:
  v2-m3:    {enabled: true,  description: "bge-reranker-v2-m3", endpoint: "/rerank/v2-m3", fallback_to_cpu: true, gpu_memory_threshold_mb: 1500}
  v2-gemma: {enabled: false, description: "bge-reranker-v2-gemma", endpoint: "/rerank/v2-gemma"}
  v1:       {enabled: true,  description: "bge-reranker-base", endpoint: "/rerank/v1"}
global_config: {batch_size: 16, max_length: 512, use_fp16: true}
`;
