/**
 * Deterministic rerank workloads for the benchmarks: one query and 20–50 documents of mixed length,
 * sized in tokens by the tokenizer that will serve them.
 */

export interface RerankWorkloadRequest {
  query: string;
  documents: string[];
}

export interface WorkloadOptions {
  requests: number;
  seed: number;
  minDocuments?: number;
  maxDocuments?: number;
  minDocTokens?: number;
  maxDocTokens?: number;
  /** Token count of a text, from the serving tokenizer (special tokens excluded). */
  countTokens: (text: string) => Promise<number>;
}

const WORDS = (
  'the of and to in is for on that with as by at from this be are was it an or which retrieval passage ' +
  'model query document score rank search index vector dense sparse context answer question language ' +
  'system data time first new more most other some such only also into over after used use can may ' +
  'between each both these those their through during before under while where when what how why ' +
  'kubernetes cluster node pod service network memory batch token version config server request ' +
  'water river city history music science energy light world people school market health policy'
).split(' ');

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sentence(random: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i += 1) out.push(WORDS[Math.floor(random() * WORDS.length)] as string);
  return out.join(' ');
}

/** Grow a text word by word until the tokenizer says it has `target` tokens (or just over). */
async function textOfTokens(random: () => number, target: number, countTokens: WorkloadOptions['countTokens']): Promise<string> {
  let text = sentence(random, Math.max(1, Math.floor(target * 0.8)));
  let tokens = await countTokens(text);
  while (tokens < target) {
    text += ` ${sentence(random, Math.max(1, Math.ceil((target - tokens) / 2)))}`;
    tokens = await countTokens(text);
  }
  return text;
}

export async function buildWorkload(options: WorkloadOptions): Promise<RerankWorkloadRequest[]> {
  const random = mulberry32(options.seed);
  const minDocs = options.minDocuments ?? 20;
  const maxDocs = options.maxDocuments ?? 50;
  const minTokens = options.minDocTokens ?? 20;
  const maxTokens = options.maxDocTokens ?? 400;
  const requests: RerankWorkloadRequest[] = [];
  for (let r = 0; r < options.requests; r += 1) {
    const query = `${sentence(random, 6 + Math.floor(random() * 8))}?`;
    const count = minDocs + Math.floor(random() * (maxDocs - minDocs + 1));
    const documents: string[] = [];
    for (let d = 0; d < count; d += 1) {
      const target = minTokens + Math.floor(random() * (maxTokens - minTokens + 1));
      documents.push(await textOfTokens(random, target, options.countTokens));
    }
    requests.push({ query, documents });
  }
  return requests;
}
