/**
 * The ranking in a rerank answer's body, for the router's mirroring: the comparison itself is
 * server/ranking/agreement.ts, shared with the engine's shadow scoring.
 */

import type { Ranking } from '../ranking/agreement.ts';

/**
 * The ranking in a rerank answer, whatever API shape it has: TEI (`[{index, score}]`), Cohere v1/v2 and
 * Jina (`{results: [{index, relevance_score}]}`), or a `results` of `{index, score}`. Throws saying what
 * is wrong when it is none of them: not JSON, no result list, an item without an integer index or a
 * numeric score, an index twice.
 */
export function parseRanking(body: string | Buffer): Ranking {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (error) {
    throw new Error(`not JSON (${(error as Error).message})`, { cause: error });
  }
  const items = Array.isArray(parsed) ? parsed : isObject(parsed) && Array.isArray(parsed.results) ? parsed.results : undefined;
  if (items === undefined) throw new Error('neither a result array (TEI) nor an object with `results` (Cohere, Jina)');
  const scores = new Map<number, number>();
  const given: number[] = [];
  items.forEach((item: unknown, position: number) => {
    if (!isObject(item)) throw new Error(`result ${position} is not an object`);
    const { index } = item;
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0) throw new Error(`result ${position} has no integer index`);
    const score = typeof item.relevance_score === 'number' ? item.relevance_score : item.score;
    if (typeof score !== 'number' || !Number.isFinite(score)) throw new Error(`result ${position} has no numeric relevance_score or score`);
    if (scores.has(index)) throw new Error(`index ${index} appears twice`);
    scores.set(index, score);
    given.push(index);
  });
  // Array.prototype.sort is stable: equal scores keep the answer's order.
  const order = [...given].sort((a, b) => scores.get(b)! - scores.get(a)!);
  return { order, scores };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
