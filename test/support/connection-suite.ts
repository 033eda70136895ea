import assert from 'node:assert/strict';
import { test } from 'node:test';
import { filler, RawConnection, rawRequest } from './raw-http.ts';

/**
 * What the server and the router both promise about connections (they share server/http/listen.ts and
 * the HTTP shell): one suite, run against each, so the two cannot drift.
 */

export interface ConnectionTarget {
  url: string;
  /** Parsed log lines, at level info and above. */
  logs: Array<Record<string, unknown>>;
  metricsText(): Promise<string>;
  /** Later rerank requests take this long to be answered once received (the core's work, or the upstream's). */
  slowHandler(ms: number): void;
  /** A promise that resolves when the next rerank request reaches the core (or the upstream). */
  nextHandled(): Promise<void>;
  /** Begin the shutdown drain, as SIGTERM does. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** The serving knobs each target starts with. */
export const SUITE_SERVING = { receiveTimeoutMs: 1000, maxBodyBytes: 64 * 1024, drainTimeoutMs: 1500 };

const RERANK_BODY = JSON.stringify({ query: 'q', texts: ['a', 'bb'] });
const post = (length: number | 'chunked', extra = '') =>
  `POST /rerank HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n${length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`}${extra}`;

export function connectionSuite(name: string, start: () => Promise<ConnectionTarget>): void {
  const withTarget = (title: string, body: (target: ConnectionTarget) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const target = await start();
      try {
        await body(target);
      } finally {
        await target.close();
      }
    });

  withTarget('a body that stops arriving is answered 408 and its connection closed, within the receive timeout', async (target) => {
    const exchange = await rawRequest(target.url, { head: post(1000), chunks: ['{"query": "q", "te'], thenWaitMs: 5000 });
    assert.match(exchange.statusLine, /^HTTP\/1\.1 408 /);
    assert.match(exchange.text, /"error_type":"request_timeout"/);
    assert.ok(exchange.closedAfterMs >= SUITE_SERVING.receiveTimeoutMs - 100, `closed after ${exchange.closedAfterMs} ms`);
    assert.ok(exchange.closedAfterMs < SUITE_SERVING.receiveTimeoutMs + 1500, `closed after ${exchange.closedAfterMs} ms`);
    assert.match(await target.metricsText(), /http_connection_errors_total\{kind="receive_timeout"\} 1/);
    // The request had reached its handler: the access log says 408 too, not a client that left.
    await until(() => target.logs.some((line) => line.msg === 'request' && line.status === 408), 'the access log line of the 408');
  });

  withTarget('headers that stop arriving are answered 408 too', async (target) => {
    const exchange = await rawRequest(target.url, { head: 'GET /healthz HTTP/1.1\r\nHost: te', headUnfinished: true, thenWaitMs: 5000 });
    assert.match(exchange.statusLine, /^HTTP\/1\.1 408 /);
    assert.ok(exchange.closedAfterMs < SUITE_SERVING.receiveTimeoutMs + 1500, `closed after ${exchange.closedAfterMs} ms`);
  });

  withTarget('what is not HTTP is answered 400 as JSON, counted, and logged once per kind', async (target) => {
    for (let i = 0; i < 2; i += 1) {
      const exchange = await rawRequest(target.url, { head: 'HELLO THERE\r\n\u0001', thenWaitMs: 3000 });
      assert.match(exchange.statusLine, /^HTTP\/1\.1 400 /);
      assert.match(exchange.text, /Connection: close/);
      assert.match(exchange.text, /"error":"malformed HTTP request \(HPE_/);
    }
    assert.match(await target.metricsText(), /http_connection_errors_total\{kind="malformed"\} 2/);
    assert.equal(target.logs.filter((line) => line.kind === 'malformed').length, 1, 'the first is logged at info, the second only counted');
  });

  withTarget('a request whose handler works longer than the receive timeout is still answered 200', async (target) => {
    target.slowHandler(SUITE_SERVING.receiveTimeoutMs * 2.5);
    const started = performance.now();
    const response = await fetch(`${target.url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: RERANK_BODY });
    assert.equal(response.status, 200);
    await response.text();
    assert.ok(performance.now() - started >= SUITE_SERVING.receiveTimeoutMs * 2.5 - 50);
  });

  withTarget('a too-large body sent whole before reading, with Connection: close, still gets its 413 (declared length)', async (target) => {
    const chunks = 64;
    const exchange = await rawRequest(target.url, {
      head: post(chunks * 32 * 1024, '\r\nConnection: close'),
      chunks: filler(chunks, 32 * 1024),
      pauseMs: 2,
      readAfterWriting: true,
    });
    assert.equal(exchange.writeError, undefined, 'the server read the whole body rather than resetting the connection');
    assert.match(exchange.statusLine, /^HTTP\/1\.1 413 /);
    assert.match(exchange.text, /larger than the limit of 65536 bytes/);
  });

  withTarget('a too-large chunked body gets its 413 too, and the connection stays usable when the client keeps it', async (target) => {
    const chunk = Buffer.alloc(32 * 1024, 'a');
    const framed = function* () {
      for (let i = 0; i < 32; i += 1) yield Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
      yield '0\r\n\r\n';
    };
    const connection = await RawConnection.open(target.url);
    try {
      connection.write(`${post('chunked')}\r\n\r\n`);
      for (const part of framed()) connection.write(part);
      const refused = await connection.response();
      assert.equal(refused.status, 413);
      connection.write('GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n');
      assert.equal((await connection.response()).status, 200);
    } finally {
      connection.destroy();
    }
  });

  withTarget('probes are logged only when they fail', async (target) => {
    for (const path of ['/healthz', '/readyz']) assert.equal((await fetch(`${target.url}${path}`)).status, 200);
    await (await fetch(`${target.url}/info`)).text();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const requestLines = target.logs.filter((line) => line.msg === 'request');
    assert.deepEqual(
      requestLines.map((line) => line.path).filter((path) => path === '/healthz' || path === '/readyz'),
      [],
      'passing probes are not logged at info',
    );
    assert.ok(requestLines.some((line) => line.path === '/info'), 'other requests still are');
  });

  withTarget('draining: readiness fails, idle connections close, in-flight requests are answered with Connection: close, then it is done', async (target) => {
    target.slowHandler(400);
    const idle = await RawConnection.open(target.url);
    idle.write('GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n');
    assert.equal((await idle.response()).status, 200);

    const busy = await RawConnection.open(target.url);
    const handled = target.nextHandled();
    busy.write(`${post(Buffer.byteLength(RERANK_BODY))}\r\n\r\n${RERANK_BODY}`);
    // A probe halfway through its headers when the drain begins: it is answered, and says why it fails.
    const probe = await RawConnection.open(target.url);
    probe.write('GET /readyz HTTP/1.1\r\nHost: test');
    await handled;

    const started = performance.now();
    const drained = target.drain();
    await idle.closed;
    probe.write('\r\n\r\n');
    const readiness = await probe.response();
    assert.equal(readiness.status, 503);
    assert.deepEqual(JSON.parse(readiness.body), { status: 'not_ready', reason: 'draining' });
    assert.equal(readiness.headers.connection, 'close');
    await probe.closed;

    const answer = await busy.response();
    assert.equal(answer.status, 200, answer.body);
    assert.equal(answer.headers.connection, 'close');
    await busy.closed;
    await drained;
    assert.ok(performance.now() - started < SUITE_SERVING.drainTimeoutMs, 'done once the in-flight request was answered, before the drain time');
    await assert.rejects(fetch(`${target.url}/healthz`), 'no new connections');
    assert.ok(
      target.logs.some((line) => line.msg === 'request' && line.path === '/readyz' && line.status === 503 && line.level === 40),
      'the failing probe is logged, at warn',
    );
  });

  withTarget('draining ends at the drain time even when a request is still being worked on', async (target) => {
    target.slowHandler(SUITE_SERVING.drainTimeoutMs * 4);
    const busy = await RawConnection.open(target.url);
    const handled = target.nextHandled();
    busy.write(`${post(Buffer.byteLength(RERANK_BODY))}\r\n\r\n${RERANK_BODY}`);
    await handled;
    const started = performance.now();
    await target.drain();
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= SUITE_SERVING.drainTimeoutMs - 50 && elapsed < SUITE_SERVING.drainTimeoutMs + 1000, `drained in ${elapsed} ms`);
    await busy.closed;
    assert.ok(target.logs.some((line) => line.msg === 'drain time is up: closing the connections left, their requests unanswered' && line.connections === 1));
  });
}

async function until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
