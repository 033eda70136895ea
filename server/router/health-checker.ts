import type { HealthCheckSettings } from '../config/router-schema.ts';
import { createAgents, forward, UpstreamFailure, type Agents } from './proxy.ts';
import { upstreamUrl } from './routing-table.ts';
import type { UpstreamHealth } from './upstream-health.ts';

export interface HealthCheckerOptions {
  health: UpstreamHealth;
  settings: () => HealthCheckSettings;
  /** Each failed check, with what failed (`timeout`, `refused`, `status`, ...), for a metric. */
  onCheckFailed?: (upstream: string, kind: string, reason: string) => void;
  /** Its own keep-alive agents unless given: checks never wait behind requests for a socket. */
  agents?: Agents;
}

/**
 * Active health checks: one loop per upstream, each a GET of the check path, then a pause of the
 * interval, reporting every outcome to UpstreamHealth. A new upstream is checked at once, so a router
 * that just started learns within one timeout which of its upstreams answer.
 */
export class HealthChecker {
  readonly #options: HealthCheckerOptions;
  readonly #agents: Agents;
  readonly #ownAgents: boolean;
  readonly #loops = new Map<string, AbortController>();
  #stopped = false;

  constructor(options: HealthCheckerOptions) {
    this.#options = options;
    this.#ownAgents = options.agents === undefined;
    this.#agents = options.agents ?? createAgents();
  }

  /** Check exactly these upstreams: start loops for new ones, stop those of upstreams gone. */
  sync(upstreams: Iterable<string>): void {
    if (this.#stopped) return;
    const wanted = new Set(this.#options.settings().enabled ? upstreams : []);
    for (const [upstream, loop] of this.#loops) {
      if (wanted.has(upstream)) continue;
      loop.abort();
      this.#loops.delete(upstream);
    }
    for (const upstream of wanted) {
      if (this.#loops.has(upstream)) continue;
      const loop = new AbortController();
      this.#loops.set(upstream, loop);
      void this.#run(upstream, loop.signal);
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const loop of this.#loops.values()) loop.abort();
    this.#loops.clear();
    if (this.#ownAgents) {
      this.#agents.http.destroy();
      this.#agents.https.destroy();
    }
  }

  async #run(upstream: string, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const settings = this.#options.settings();
      const failure = await this.check(upstream, settings, signal);
      if (signal.aborted) return;
      if (failure === undefined) this.#options.health.checkPassed(upstream);
      else {
        this.#options.health.checkFailed(upstream, failure.reason);
        this.#options.onCheckFailed?.(upstream, failure.kind, failure.reason);
      }
      await pause(settings.intervalMs, signal);
    }
  }

  /** One check: undefined when it passed, else what failed. */
  async check(upstream: string, settings: HealthCheckSettings, signal: AbortSignal): Promise<{ kind: string; reason: string } | undefined> {
    const what = `GET ${settings.path}`;
    try {
      const res = await forward({
        url: upstreamUrl(upstream, settings.path),
        method: 'GET',
        headers: { accept: 'application/json', 'user-agent': 'rerank-router-health-check' },
        body: Buffer.alloc(0),
        timeoutMs: settings.timeoutMs,
        signal,
        version: upstream,
        agents: this.#agents,
      });
      const status = res.statusCode ?? 0;
      const body = await readSome(res, 300);
      if (status >= 200 && status < 300) return undefined;
      return { kind: 'status', reason: `${what} answered ${status}${body ? `: ${body}` : ''}` };
    } catch (error) {
      if (error instanceof UpstreamFailure) return { kind: error.kind, reason: `${what}: ${error.detail}` };
      return { kind: 'other', reason: `${what}: ${(error as Error).message}` };
    }
  }
}

/** The first `limit` characters of a response body, on one line; the rest is drained. */
async function readSome(res: NodeJS.ReadableStream, limit: number): Promise<string> {
  let text = '';
  try {
    for await (const chunk of res) if (text.length < limit) text += chunk.toString();
  } catch {
    // A body that breaks off: the status already says what the check needs.
  }
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > limit ? `${line.slice(0, limit)}…` : line;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref();
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
