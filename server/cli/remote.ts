import type { EngineInfo, VersionInfo } from '../engine/types.ts';

/** Talking to a running rerank-server: what `status` and `compare` use. */

export interface RemoteOptions {
  url: string;
  apiKey?: string;
}

/** A failure talking to the server, said in one line (the CLI prints it as is). */
export class RemoteError extends Error {
  override readonly name = 'RemoteError';
}

function unauthorized(options: RemoteOptions): string {
  return options.apiKey
    ? 'the server refused the API key given (--api-key or $RERANK_API_KEY)'
    : 'the server wants an API key: pass --api-key KEY or set RERANK_API_KEY';
}

async function request<T>(options: RemoteOptions, path: string, init: RequestInit = {}): Promise<{ body: T; response: Response }> {
  const headers = new Headers(init.headers);
  if (options.apiKey) headers.set('authorization', `Bearer ${options.apiKey}`);
  if (init.body) headers.set('content-type', 'application/json');
  const url = new URL(path, options.url);
  const what = `${init.method ?? 'GET'} ${url.pathname}`;
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { ...init, headers });
    text = await response.text();
  } catch (error) {
    const cause = (error as Error).cause;
    const reason = cause instanceof Error ? cause.message : (error as Error).message;
    throw new RemoteError(`cannot reach ${url.origin} (${reason}): is rerank-server running there? (--url)`, { cause: error });
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    if (response.status === 401) throw new RemoteError(`${what}: 401 Unauthorized: ${unauthorized(options)}`);
    const said = (body as { error?: unknown } | undefined)?.error;
    const message = typeof said === 'string' ? said.split('\n')[0] : response.statusText;
    throw new RemoteError(`${what}: ${response.status} ${message}`.trim());
  }
  if (body === undefined) throw new RemoteError(`${what}: ${url.origin} answered ${response.status} with no JSON: is it a rerank-server? (--url)`);
  return { body: body as T, response };
}

export type RemoteInfo = Omit<EngineInfo, 'versions' | 'devices'> & {
  versions: Array<VersionInfo & { queuedPairs?: number }>;
  /** Absent from servers older than it. */
  devices?: EngineInfo['devices'];
  notices?: string[];
  appliedAt?: string;
  pid?: number;
};

export async function fetchInfo(options: RemoteOptions): Promise<RemoteInfo> {
  const { body } = await request<RemoteInfo>(options, '/info');
  if (!Array.isArray(body.versions)) throw new RemoteError(`GET /info: ${options.url} answered without versions: is it a rerank-server? (--url)`);
  return body;
}

export interface VersionScores {
  version: string;
  /** The version that answered (differs when the asked one is not servable). */
  answeredBy: string;
  scores: number[];
}

/** One query through one version: scores in document order. */
export async function scoreWith(options: RemoteOptions, version: string, query: string, documents: string[]): Promise<VersionScores> {
  const { body, response } = await request<unknown>(options, `/rerank/${encodeURIComponent(version)}`, {
    method: 'POST',
    body: JSON.stringify({ query, texts: documents, top_k: documents.length }),
  }).catch((error: unknown) => {
    throw error instanceof RemoteError ? new RemoteError(`version ${version}: ${error.message}`, { cause: error }) : error;
  });
  if (!Array.isArray(body)) throw new RemoteError(`version ${version}: POST /rerank/${version}: the answer is not a list of scores`);
  const scores = new Array<number>(documents.length).fill(Number.NaN);
  for (const result of body as Array<{ index: number; score: number }>) scores[result.index] = result.score;
  return { version, answeredBy: response.headers.get('x-rerank-version') ?? version, scores };
}
