import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inProcessServer, proxyRouter } from './implementations.ts';
import { stickyAnswers } from './suite.ts';

test('the server and the router put every sticky key on the same version, for versions listed out of name order', async () => {
  const setup = { defaultVersion: 'a', versions: { b: { weight: 50 }, a: { weight: 50 } }, seed: 1 };
  const keys = Array.from({ length: 400 }, (_, n) => `session-${n}`);
  const [server, router] = await Promise.all([inProcessServer.start(setup), proxyRouter.start(setup)]);
  try {
    const [inServer, behindRouter] = await Promise.all([stickyAnswers(server, keys), stickyAnswers(router, keys)]);
    const differing = keys.filter((_, i) => inServer[i] !== behindRouter[i]);
    assert.deepEqual(differing, [], `${differing.length} of ${keys.length} keys land on another version behind the router`);
    assert.deepEqual(new Set(inServer), new Set(['a', 'b']));
  } finally {
    await Promise.all([server.close(), router.close()]);
  }
});
