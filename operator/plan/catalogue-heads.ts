import { readFileSync } from 'node:fs';
import type { HeadConfig } from '../../server/config/head.ts';
import { DEFAULT_CATALOG, findEntry, parseCatalog, type Catalog } from '../../server/models/catalog.ts';

/**
 * The model catalogue's scoring heads, for versions whose spec names none. Read once (the catalogue ships
 * with the operator); a catalogue that is absent or broken gives no heads rather than failing every plan.
 */

let catalog: Catalog | undefined | null = null;

function load(): Catalog | undefined {
  if (catalog !== null) return catalog;
  const file = process.env.RERANK_MODEL_CATALOG ?? DEFAULT_CATALOG;
  try {
    catalog = parseCatalog(readFileSync(file, 'utf8'), file);
  } catch {
    catalog = undefined;
  }
  return catalog;
}

/** The head of the catalogue entry an hf:// source names (`hf://BAAI/bge-reranker-v2-gemma[@rev]`); other sources have none. */
export function catalogueHeadForSource(source: string): HeadConfig | undefined {
  if (!source.startsWith('hf://')) return undefined;
  const known = load();
  if (!known) return undefined;
  try {
    return findEntry(known, source)?.head;
  } catch {
    return undefined;
  }
}
