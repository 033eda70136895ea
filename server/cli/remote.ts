import type { EngineInfo, VersionInfo } from '../engine/types.ts';

/** Talking to a running rerank-server: what `status` and `compare` use. */

export interface RemoteOptions {
  url: string;
  apiKey?: string;
}

async function request<T>(options: RemoteOptions, path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  if (options.apiKey) headers.set('authorization', `Bearer ${options.apiKey}`);
  if (init.body) headers.set('content-type', 'application/json');
  const url = new URL(path, options.url);
  let response: Response;
  try {
    response = await fetch(url, { ...init, headers });
  } catch (error) {
    const reason = (error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : (error as Error).message;
    throw new Error(`cannot reach ${url.origin}: ${reason}`, { cause: error });
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      // not JSON: keep the text
    }
    throw new Error(`${init.method ?? 'GET'} ${url.pathname}: ${response.status} ${message}`);
  }
  return JSON.parse(text) as T;
}

export type RemoteInfo = Omit<EngineInfo, 'versions'> & {
  versions: Array<VersionInfo & { queuedPairs?: number }>;
  notices?: string[];
  appliedAt?: string;
  pid?: number;
};

export function fetchInfo(options: RemoteOptions): Promise<RemoteInfo> {
  return request<RemoteInfo>(options, '/info');
}

export interface VersionScores {
  version: string;
  /** The version that answered (differs when the asked one is not servable). */
  answeredBy: string;
  scores: number[];
}

/** One query through one version: scores in document order. */
export async function scoreWith(options: RemoteOptions, version: string, query: string, documents: string[]): Promise<VersionScores> {
  const headers = new Headers(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {});
  headers.set('content-type', 'application/json');
  const url = new URL(`/rerank/${encodeURIComponent(version)}`, options.url);
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({ query, texts: documents, top_k: documents.length }),
  });
  const body = (await response.json()) as Array<{ index: number; score: number }> | { error?: string };
  if (!response.ok || !Array.isArray(body)) {
    throw new Error(`version ${version}: ${response.status} ${(body as { error?: string }).error ?? ''}`.trim());
  }
  const scores = new Array<number>(documents.length).fill(Number.NaN);
  for (const result of body) scores[result.index] = result.score;
  return { version, answeredBy: response.headers.get('x-rerank-version') ?? version, scores };
}
