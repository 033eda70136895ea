import { readFile } from 'node:fs/promises';
import { SeededRandom } from '../modelgen/graph.ts';

/** The (query, documents) groups a quantized model is compared on: generated, or read from a JSON file. */

export interface SampleGroup {
  query: string;
  documents: string[];
}

const WORDS = (
  'the of and to in is for on that with as by at from this be are was it an or which retrieval passage model query document ' +
  'score rank search index vector dense sparse context answer question language system data time first new more most other ' +
  'between each both these their through during before under while where when what how why cluster node service network ' +
  'memory batch token version config server request water river city history music science energy light world people school'
).split(' ');

/** `groups` queries with `documents` documents each, of 20–200 words; the same seed gives the same text. */
export function generateSample(options: { groups?: number; documents?: number; seed?: number } = {}): SampleGroup[] {
  const random = new SeededRandom(options.seed ?? 1);
  const words = (n: number) => Array.from({ length: n }, () => WORDS[Math.floor(random.uniform() * WORDS.length)] as string).join(' ');
  return Array.from({ length: options.groups ?? 6 }, () => ({
    query: `${words(5 + Math.floor(random.uniform() * 10))}?`,
    documents: Array.from({ length: options.documents ?? 25 }, () => words(20 + Math.floor(random.uniform() * 181))),
  }));
}

/**
 * A sample file: a JSON array of `{query, documents: [...]}` (documents as strings or `{text}`), of
 * `{query, document}` or of `[query, document]`; pairs of the same query form one group.
 */
export function parseSample(text: string, source: string): SampleGroup[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source}: not JSON: ${(error as Error).message}`, { cause: error });
  }
  if (!Array.isArray(raw) || raw.length === 0) throw new Error(`${source}: expected a non-empty JSON array of pairs`);
  const groups = new Map<string, string[]>();
  const add = (query: unknown, document: unknown, at: string) => {
    const doc = typeof document === 'object' && document !== null && 'text' in document ? (document as { text: unknown }).text : document;
    if (typeof query !== 'string' || typeof doc !== 'string') throw new Error(`${source}: ${at}: query and document must be strings`);
    groups.set(query, [...(groups.get(query) ?? []), doc]);
  };
  raw.forEach((item: unknown, i) => {
    if (Array.isArray(item) && item.length === 2) return add(item[0], item[1], `[${i}]`);
    if (typeof item === 'object' && item !== null) {
      const entry = item as Record<string, unknown>;
      if (Array.isArray(entry.documents)) return entry.documents.forEach((d, j) => add(entry.query, d, `[${i}].documents[${j}]`));
      if ('document' in entry) return add(entry.query, entry.document, `[${i}]`);
    }
    throw new Error(`${source}: [${i}]: expected {query, documents}, {query, document} or [query, document]`);
  });
  return [...groups].map(([query, documents]) => ({ query, documents }));
}

export async function readSample(file: string): Promise<SampleGroup[]> {
  return parseSample(await readFile(file, 'utf8'), file);
}
