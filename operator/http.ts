import http from 'node:http';
import type { Registry } from 'prom-client';

export interface OperatorHttpOptions {
  registry: Registry;
  /** Alive: the process is not wedged (its informers and workers are running or standing by). */
  healthy: () => boolean;
  /**
   * Ready: why not, one line each (leader election failing, informers not listed or failing); empty
   * when ready — leading and synced, or a healthy standby behind a live leader. Absent: ready when healthy.
   */
  notReady?: () => string[];
  /** What /readyz says when ready (e.g. "leading" or "standby: the lease is held by ..."). */
  readyDetail?: () => string;
}

/** The operator's own endpoints: /metrics, /healthz, /readyz. Not the reranker server's. */
export function createOperatorServer(options: OperatorHttpOptions): http.Server {
  return http.createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(status, { 'content-type': type });
      response.end(body);
    };
    if (request.method !== 'GET') return reply(405, 'method not allowed\n');
    if (path === '/healthz') return options.healthy() ? reply(200, 'ok\n') : reply(503, 'unhealthy\n');
    if (path === '/readyz') {
      if (!options.healthy()) return reply(503, 'not ready: unhealthy\n');
      const reasons = options.notReady?.() ?? [];
      if (reasons.length > 0) return reply(503, `not ready:\n${reasons.map((r) => `- ${r}\n`).join('')}`);
      return reply(200, `ok${options.readyDetail ? `: ${options.readyDetail()}` : ''}\n`);
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => reply(200, text, options.registry.contentType),
        (error: Error) => reply(500, `${error.message}\n`),
      );
      return;
    }
    reply(404, 'not found\n');
  });
}
