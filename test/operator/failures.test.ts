import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { FailureReporter, failureKind } from '../../operator/failures.ts';
import { KubeApiError } from '../../operator/kube.ts';

test('a retried failure: counted every time, logged once per new kind, and once when it works again', () => {
  const lines: Array<{ msg: string; kind?: string; failures?: number }> = [];
  const sink = new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) });
  const counted: string[] = [];
  const reporter = new FailureReporter({ logger: pino(sink), what: 'list/watch Pod', count: (kind) => counted.push(kind) });
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
  for (let i = 0; i < 5; i++) reporter.failed(new Error('fetch failed', { cause: refused }));
  reporter.failed(new KubeApiError(403, 'Forbidden', 'pods is forbidden'));
  reporter.failed(new KubeApiError(403, 'Forbidden', 'pods is forbidden'));
  reporter.succeeded();
  reporter.succeeded();
  assert.deepEqual(counted, ['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED', '403 Forbidden', '403 Forbidden']);
  assert.deepEqual(lines.map((l) => [l.msg, l.kind ?? l.failures]), [
    ['list/watch Pod failed', 'ECONNREFUSED'],
    ['list/watch Pod failed', '403 Forbidden'],
    ['list/watch Pod works again', 7],
  ]);
  assert.equal(failureKind(new TypeError('x')), 'TypeError');
});
