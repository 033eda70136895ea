import type { UpstreamHealthSettings } from '../config/router-schema.ts';

/**
 * What the router knows of each upstream's health, as Envoy keeps it: an active state from the checks
 * of its readiness path, and a passive ejection from the answers to real requests. An upstream takes
 * requests while it is not failing its checks and not ejected. Pure over an injected clock: the checks'
 * timers and HTTP live in HealthChecker, the requests' in the proxy; both only report outcomes here.
 */

/** From active checks: `pending` until the first check answers (routable, not yet counted ready). */
export type ActiveState = 'pending' | 'healthy' | 'unhealthy';

/** A change worth a log line and a metric. */
export type HealthEvent =
  | { type: 'ejected'; upstream: string; forMs: number; failures: number; reason: string }
  | { type: 'returned'; upstream: string }
  | { type: 'unhealthy'; upstream: string; reason: string }
  | { type: 'healthy'; upstream: string };

export interface UpstreamStatus {
  upstream: string;
  /** Takes requests now: not failing its checks, not ejected. */
  available: boolean;
  /** Passed its checks (not merely pending) and not ejected: what readiness counts. */
  healthy: boolean;
  active: ActiveState;
  /** The last failed check, while the upstream is unhealthy. */
  checkFailure?: string;
  /** ISO time the ejection ends, while ejected. */
  ejectedUntil?: string;
  /** The failure that ejected it, while ejected. */
  ejectionReason?: string;
  /** Failures (5xx or no answer) in a row, of real requests. */
  consecutiveFailures: number;
  /** Times ejected, decaying by one per base ejection time in rotation: the next ejection's multiplier less one. */
  ejections: number;
}

interface State {
  active: ActiveState;
  checkFailures: number;
  checkPasses: number;
  checkFailure?: string;
  consecutiveFailures: number;
  lastFailure?: string;
  ejectedUntil?: number;
  ejectionReason?: string;
  ejections: number;
  /** When the last ejection ended (for the multiplier's decay). */
  returnedAt?: number;
}

export interface UpstreamHealthOptions {
  settings: () => UpstreamHealthSettings;
  /** Milliseconds, monotonic; `performance.now` unless a test steps it. */
  now?: () => number;
  /** Wall-clock milliseconds for the ISO times shown; `Date.now` unless a test fixes it. */
  wallClock?: () => number;
  onEvent?: (event: HealthEvent) => void;
}

export class UpstreamHealth {
  readonly #states = new Map<string, State>();
  readonly #settings: () => UpstreamHealthSettings;
  readonly #now: () => number;
  readonly #wallClock: () => number;
  readonly #onEvent: (event: HealthEvent) => void;

  constructor(options: UpstreamHealthOptions) {
    this.#settings = options.settings;
    this.#now = options.now ?? (() => performance.now());
    this.#wallClock = options.wallClock ?? Date.now;
    this.#onEvent = options.onEvent ?? (() => {});
  }

  /** Follow the routing table's upstreams: new ones start pending (healthy when checks are off), gone ones are forgotten. */
  sync(upstreams: Iterable<string>): void {
    const wanted = new Set(upstreams);
    for (const upstream of this.#states.keys()) if (!wanted.has(upstream)) this.#states.delete(upstream);
    const checking = this.#settings().healthCheck.enabled;
    for (const upstream of wanted) {
      const state = this.#states.get(upstream);
      if (!state) this.#states.set(upstream, { active: checking ? 'pending' : 'healthy', checkFailures: 0, checkPasses: 0, consecutiveFailures: 0, ejections: 0 });
      else if (!checking && state.active !== 'healthy') {
        state.active = 'healthy';
        delete state.checkFailure;
      }
    }
  }

  get upstreams(): string[] {
    return [...this.#states.keys()];
  }

  /** May take a request now. An upstream this does not know (a table newer than the last sync) may. */
  isAvailable(upstream: string): boolean {
    const state = this.#state(upstream);
    return state === undefined || (state.active !== 'unhealthy' && state.ejectedUntil === undefined);
  }

  /** At least one upstream passed its checks and is not ejected. */
  anyHealthy(upstreams: Iterable<string> = this.#states.keys()): boolean {
    for (const upstream of upstreams) {
      const state = this.#state(upstream);
      if (state?.active === 'healthy' && state.ejectedUntil === undefined) return true;
    }
    return false;
  }

  /** Why an upstream takes no requests now (for a 503's message), or undefined when it does; `retryAfterMs` until it may. */
  unavailableReason(upstream: string): { reason: string; retryAfterMs: number } | undefined {
    const state = this.#state(upstream);
    if (!state) return undefined;
    const { intervalMs } = this.#settings().healthCheck;
    if (state.active === 'unhealthy') return { reason: `failing its health checks (${state.checkFailure ?? 'unknown'})`, retryAfterMs: intervalMs };
    if (state.ejectedUntil !== undefined) {
      const left = state.ejectedUntil - this.#now();
      return { reason: `ejected for ${Math.ceil(left / 1000)} s more after failures in a row (last: ${state.ejectionReason ?? 'unknown'})`, retryAfterMs: left };
    }
    return undefined;
  }

  /** A real request got a response that is not 5xx: the failure count starts over. */
  requestSucceeded(upstream: string): void {
    const state = this.#state(upstream);
    if (state) state.consecutiveFailures = 0;
  }

  /** A real request got a 5xx or no response; enough in a row eject the upstream, when the ejection limits allow. */
  requestFailed(upstream: string, reason: string): void {
    const state = this.#state(upstream);
    if (!state) return;
    state.consecutiveFailures += 1;
    state.lastFailure = reason;
    const outlier = this.#settings().outlierDetection;
    if (state.ejectedUntil !== undefined || state.consecutiveFailures < outlier.consecutiveFailures || !this.#mayEject(upstream)) return;
    const now = this.#now();
    const decayed = state.returnedAt === undefined ? state.ejections : Math.max(0, state.ejections - Math.floor((now - state.returnedAt) / outlier.baseEjectionTimeMs));
    state.ejections = decayed + 1;
    const forMs = Math.min(outlier.baseEjectionTimeMs * state.ejections, outlier.maxEjectionTimeMs);
    state.ejectedUntil = now + forMs;
    state.ejectionReason = reason;
    this.#onEvent({ type: 'ejected', upstream, forMs, failures: state.consecutiveFailures, reason });
  }

  /** An active check passed. */
  checkPassed(upstream: string): void {
    const state = this.#state(upstream);
    if (!state) return;
    state.checkFailures = 0;
    state.checkPasses += 1;
    const { healthyThreshold } = this.#settings().healthCheck;
    if (state.active === 'pending' || (state.active === 'unhealthy' && state.checkPasses >= healthyThreshold)) {
      const was = state.active;
      state.active = 'healthy';
      delete state.checkFailure;
      if (was === 'unhealthy') this.#onEvent({ type: 'healthy', upstream });
    }
  }

  /** An active check failed (no answer, or not 2xx). */
  checkFailed(upstream: string, reason: string): void {
    const state = this.#state(upstream);
    if (!state) return;
    state.checkPasses = 0;
    state.checkFailures += 1;
    state.checkFailure = reason;
    const { unhealthyThreshold } = this.#settings().healthCheck;
    if (state.active === 'pending' || (state.active === 'healthy' && state.checkFailures >= unhealthyThreshold)) {
      state.active = 'unhealthy';
      this.#onEvent({ type: 'unhealthy', upstream, reason });
    }
  }

  status(): UpstreamStatus[] {
    return [...this.#states.keys()].sort().map((upstream) => {
      const state = this.#state(upstream) as State;
      const ejected = state.ejectedUntil !== undefined;
      return {
        upstream,
        available: state.active !== 'unhealthy' && !ejected,
        healthy: state.active === 'healthy' && !ejected,
        active: state.active,
        ...(state.active === 'unhealthy' && state.checkFailure !== undefined ? { checkFailure: state.checkFailure } : {}),
        ...(ejected
          ? {
              ejectedUntil: new Date(this.#wallClock() + ((state.ejectedUntil as number) - this.#now())).toISOString(),
              ejectionReason: state.ejectionReason ?? 'unknown',
            }
          : {}),
        consecutiveFailures: state.consecutiveFailures,
        ejections: state.ejections,
      };
    });
  }

  /** The state, with an ejection that has run its time ended. */
  #state(upstream: string): State | undefined {
    const state = this.#states.get(upstream);
    if (state?.ejectedUntil !== undefined && this.#now() >= state.ejectedUntil) {
      delete state.ejectedUntil;
      delete state.ejectionReason;
      state.consecutiveFailures = 0;
      state.returnedAt = this.#now();
      this.#onEvent({ type: 'returned', upstream });
    }
    return state;
  }

  /**
   * Envoy's max_ejection_percent (at least one may be ejected, none at 0), and never the last upstream that is
   * still taking requests: with every other one out, failing requests go on reaching this one (and its
   * checks decide whether it is taken out).
   */
  #mayEject(upstream: string): boolean {
    const { maxEjectionPercent } = this.#settings().outlierDetection;
    let ejected = 0;
    let othersAvailable = 0;
    for (const other of this.#states.keys()) {
      const state = this.#state(other) as State;
      if (state.ejectedUntil !== undefined) ejected += 1;
      else if (other !== upstream && state.active !== 'unhealthy') othersAvailable += 1;
    }
    const limit = maxEjectionPercent === 0 ? 0 : Math.max(1, Math.floor((this.#states.size * maxEjectionPercent) / 100));
    return ejected < limit && othersAvailable > 0;
  }
}
