import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { Middleware } from 'koa';
import { RerankError } from '../errors.ts';

/**
 * Optional API key. When `apiKey()` returns a key, the routes this middleware guards need
 * `Authorization: Bearer <key>`; when it returns undefined, they are open. Read per request, so a rotated
 * key applies without a restart.
 */
export function requireApiKey(apiKey: () => string | undefined): Middleware {
  return async (ctx, next) => {
    const expected = apiKey();
    if (expected !== undefined) {
      const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(ctx.get('Authorization'));
      if (!match?.[1]) throw new RerankError('unauthorized', 'missing API key: send "Authorization: Bearer <key>"');
      if (!sameSecret(match[1], expected)) throw new RerankError('unauthorized', 'invalid API key');
    }
    await next();
  };
}

/** Constant time: compares digests, so neither the content nor the length of the key leaks through timing. */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

let cachedFile: { path: string; mtimeMs: number; size: number; key: string } | undefined;

/**
 * The configured key: `RERANK_API_KEY`, else the contents of `RERANK_API_KEY_FILE` (a mounted Secret;
 * re-read when its mtime or size changes, so rotation needs no restart). Undefined when neither is set.
 * A key file that is set but unreadable or empty fails closed: the guarded routes answer 503 instead of
 * silently becoming open.
 */
export function resolveApiKey(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const direct = env.RERANK_API_KEY?.trim();
  if (direct) return direct;
  const file = env.RERANK_API_KEY_FILE?.trim();
  if (!file) return undefined;
  try {
    const stat = statSync(file);
    if (cachedFile?.path === file && cachedFile.mtimeMs === stat.mtimeMs && cachedFile.size === stat.size) {
      return cachedFile.key;
    }
    const key = readFileSync(file, 'utf8').trim();
    if (!key) throw new Error('the file is empty');
    cachedFile = { path: file, mtimeMs: stat.mtimeMs, size: stat.size, key };
    return key;
  } catch (error) {
    cachedFile = undefined;
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new RerankError('unavailable', `API key file RERANK_API_KEY_FILE cannot be read (${reason})`, { cause: error });
  }
}
