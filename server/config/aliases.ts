import type { z } from 'zod';

/**
 * Keys of configs written for the BGE reranker image (snake_case, `global_config`) and the keys of the
 * serving config they stand for. The serving-config schema runs `normaliseConfigKeys` first, so such a
 * file is read by the one schema: nothing else parses it. A fixed table, documented in the README and
 * docs/configuration.md; a test checks that every target is a key of the schema.
 */
export const CONFIG_KEY_ALIASES = {
  /** Top-level keys. */
  config: { default_version: 'defaultVersion', global_config: 'serving' },
  /** Keys of each `versions.<name>`. */
  version: { fallback_to_cpu: 'fallbackToCpu', gpu_memory_threshold_mb: 'gpuMemoryThresholdMb' },
  /** Keys of `serving` (`global_config`). */
  serving: {
    batch_size: 'maxBatchSize',
    max_batch_size: 'maxBatchSize',
    max_batch_tokens: 'maxBatchTokens',
    max_length: 'maxLength',
    max_queued_pairs: 'maxQueuedPairs',
    max_queue_wait_ms: 'maxQueueWaitMs',
    max_documents: 'maxDocuments',
    max_body_bytes: 'maxBodyBytes',
    max_document_bytes: 'maxDocumentBytes',
    top_k: 'topK',
    use_fp16: 'useFp16',
    log_level: 'logLevel',
  },
} as const satisfies Record<'config' | 'version' | 'serving', Record<string, string>>;

/**
 * Renames aliased keys to the schema's own (see CONFIG_KEY_ALIASES), keeping the order of the keys.
 * An alias given beside the key it stands for is an issue naming both. A version's `endpoint` that is
 * its own `/rerank/<name>` (as the BGE image writes it) is dropped: the server answers there anyway.
 * Anything that is not the expected object is returned as it is, for the schema to report.
 */
export function normaliseConfigKeys(raw: unknown, ctx: z.RefinementCtx): unknown {
  if (!isPlainObject(raw)) return raw;
  const config = renameKeys(raw, CONFIG_KEY_ALIASES.config, [], ctx);
  if (isPlainObject(config.serving)) config.serving = renameKeys(config.serving, CONFIG_KEY_ALIASES.serving, ['serving'], ctx);
  if (isPlainObject(config.versions)) {
    const versions: Record<string, unknown> = {};
    for (const [name, version] of Object.entries(config.versions)) {
      if (!isPlainObject(version)) {
        versions[name] = version;
        continue;
      }
      const renamed = renameKeys(version, CONFIG_KEY_ALIASES.version, ['versions', name], ctx);
      if (renamed.endpoint === `/rerank/${name}`) delete renamed.endpoint;
      versions[name] = renamed;
    }
    config.versions = versions;
  }
  return config;
}

function renameKeys(object: Record<string, unknown>, aliases: Readonly<Record<string, string>>, path: string[], ctx: z.RefinementCtx): Record<string, unknown> {
  const renamed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) {
    const target = Object.hasOwn(aliases, key) ? aliases[key] : undefined;
    if (target === undefined) {
      renamed[key] = value;
      continue;
    }
    const twin = Object.keys(object).find((other) => other !== key && (other === target || aliases[other] === target));
    if (twin !== undefined) {
      // One issue per clash: two aliases of one key report it from the one that sorts first.
      if (twin === target || key < twin) {
        ctx.addIssue({ code: 'custom', path: [...path, key], message: `"${key}" and "${twin}" both set ${target}: keep one` });
      }
      continue;
    }
    renamed[target] = value;
  }
  return renamed;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
