import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compareRankings, kendallTauB, rankingOfScores } from '../../server/ranking/agreement.ts';
import { parseRanking } from '../../server/router/ranking-agreement.ts';

const tei = (...pairs: Array<[number, number]>) => JSON.stringify(pairs.map(([index, score]) => ({ index, score })));
const cohere = (...pairs: Array<[number, number]>) =>
  JSON.stringify({ id: 'r', model: 'v', results: pairs.map(([index, relevance_score]) => ({ index, relevance_score, document: { text: `d${index}` } })), meta: {} });

describe('ranking agreement', () => {
  test('parses the TEI, Cohere/Jina and {results: [{index, score}]} shapes alike, ordered by score with ties in the answer\'s order', () => {
    const expected = [3, 0, 2, 1];
    assert.deepEqual(parseRanking(tei([3, 0.9], [0, 0.5], [2, 0.5], [1, 0.1])).order, expected);
    assert.deepEqual(parseRanking(cohere([3, 0.9], [0, 0.5], [2, 0.5], [1, 0.1])).order, expected);
    assert.deepEqual(parseRanking(Buffer.from(JSON.stringify({ results: [{ index: 1, score: -2 }, { index: 3, score: 4 }] }))).order, [3, 1]);
    // Not best first as given (a top_k answer is; a client library may not be): the scores decide.
    assert.deepEqual(parseRanking(tei([1, 0.1], [0, 0.7])).order, [0, 1]);
    assert.equal(parseRanking(cohere([3, 0.9])).scores.get(3), 0.9);
  });

  test('refuses what is no ranking, saying why', () => {
    assert.throws(() => parseRanking('<html>'), /^Error: not JSON/);
    assert.throws(() => parseRanking('{"error":"boom"}'), /neither a result array \(TEI\) nor an object with `results`/);
    assert.throws(() => parseRanking('[{"score":1}]'), /result 0 has no integer index/);
    assert.throws(() => parseRanking('[{"index":0,"score":"high"}]'), /result 0 has no numeric relevance_score or score/);
    assert.throws(() => parseRanking(tei([0, 1], [0, 0.5])), /index 0 appears twice/);
  });

  test('identical rankings: overlap 1, tau 1; reversed: overlap of the top k only, tau -1', () => {
    const a = parseRanking(tei([0, 0.9], [1, 0.8], [2, 0.7], [3, 0.6], [4, 0.5]));
    assert.deepEqual(compareRankings(a, a, 3), { topKOverlap: 1, kendallTau: 1, k: 3, common: 5 });
    const reversed = parseRanking(tei([4, 0.9], [3, 0.8], [2, 0.7], [1, 0.6], [0, 0.5]));
    // Top 3: {0,1,2} against {4,3,2}: one in common.
    assert.deepEqual(compareRankings(a, reversed, 3), { topKOverlap: 1 / 3, kendallTau: -1, k: 3, common: 5 });
    // k never exceeds what both answered.
    assert.equal(compareRankings(a, reversed, 10).k, 5);
    // With every document in both top-k's the overlap is 1 whatever the order: it says nothing, so it is
    // absent (not observed), and only tau judges such requests.
    assert.deepEqual(compareRankings(a, reversed, 10), { kendallTau: -1, k: 5, common: 5 });
    assert.deepEqual(compareRankings(a, a, 5), { kendallTau: 1, k: 5, common: 5 });
  });

  test('partial overlap (top_n answers): tau over the documents both ranked only', () => {
    const a = parseRanking(tei([0, 0.9], [1, 0.8], [2, 0.7]));
    const b = parseRanking(tei([1, 0.95], [0, 0.6], [5, 0.5]));
    const agreement = compareRankings(a, b, 3);
    assert.equal(agreement.topKOverlap, 2 / 3);
    assert.equal(agreement.common, 2);
    // Over {0, 1}: a says 0 > 1, b says 1 > 0.
    assert.equal(agreement.kendallTau, -1);
    // One document in common: tau is undefined, not a made-up 0 or 1.
    const c = parseRanking(tei([0, 0.9], [7, 0.1]));
    const d = parseRanking(tei([0, 0.3], [8, 0.2]));
    assert.deepEqual(compareRankings(c, d, 2), { topKOverlap: 0.5, k: 2, common: 1 });
  });

  test("Kendall's tau-b with ties matches the textbook value", () => {
    // x has one tied pair, y one tied pair; n0 = 10, C = 8, D = 0 → 8 / √(9 · 9).
    assert.equal(kendallTauB([1, 2, 2, 3, 4], [1, 2, 3, 3, 4]), 8 / 9);
    // scipy.stats.kendalltau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) = -0.47140452079103173
    assert.ok(Math.abs(kendallTauB([12, 2, 1, 12, 2], [1, 4, 7, 1, 0])! - -0.47140452079103173) < 1e-12);
    assert.equal(kendallTauB([1, 1, 1], [1, 2, 3]), undefined, 'all tied on one side');
    assert.equal(kendallTauB([1], [1]), undefined);
    // Ties in the answers' scores reach the comparison as ties, not as the order they were listed in.
    const tied = parseRanking(tei([0, 0.5], [1, 0.5], [2, 0.1]));
    const strict = parseRanking(tei([1, 0.9], [0, 0.8], [2, 0.1]));
    assert.equal(compareRankings(tied, strict, 3).kendallTau, kendallTauB([0.5, 0.5, 0.1], [0.8, 0.9, 0.1]));
    assert.ok(compareRankings(tied, strict, 3).kendallTau! > 0.8 && compareRankings(tied, strict, 3).kendallTau! < 1);
  });
  test('the ranking of a score per document (the engine\'s outcome): best first, ties by index, the same as the answer parsed', () => {
    const ranking = rankingOfScores([0.2, 0.9, 0.2, 0.5]);
    assert.deepEqual(ranking.order, [1, 3, 0, 2]);
    assert.equal(ranking.scores.get(3), 0.5);
    assert.deepEqual(ranking, parseRanking(tei([0, 0.2], [1, 0.9], [2, 0.2], [3, 0.5])));
    // Pairs: 3 concordant, 2 discordant, one tied in x (documents 0 and 2): (3 − 2) / √(5 · 6).
    assert.deepEqual(compareRankings(ranking, rankingOfScores([0.1, 0.2, 0.3, 0.4]), 2), { topKOverlap: 0.5, kendallTau: 1 / Math.sqrt(30), k: 2, common: 4 });
  });
});
