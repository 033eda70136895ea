import type { Clock } from './clock.ts';
import { isApiError, KINDS, KubeApiError, type KubeClient, type KubeObject } from './kube.ts';

/**
 * A Lease's acquireTime and renewTime are MicroTime: RFC 3339 with exactly six fractional digits
 * (`2006-01-02T15:04:05.000000Z07:00`). The API server refuses the three of `Date.toISOString()`.
 */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Where leader election reports each failed round and the first good one after them. */
export interface ElectionFailures {
  failed(error: unknown): void;
  succeeded(): void;
}

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

type Lease = KubeObject & { spec?: LeaseSpec };

export interface LeaderElectorOptions {
  kube: KubeClient;
  clock: Clock;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  /** How often to renew (as leader) or retry (as follower); well under the lease duration. */
  retryMs?: number;
  /**
   * How long a leader whose renewals fail keeps leading before it steps down (client-go's
   * RenewDeadline): a brief API outage does not stop the controller, and the leader always stops
   * before anyone else may take the lease. Default: two thirds of the lease duration.
   */
  renewDeadlineMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  failures?: ElectionFailures;
}

/** Where the election stands, for /readyz: leading, standing by behind a live holder, or failing. */
export interface ElectionState {
  leading: boolean;
  /** Who holds the lease, as last read. */
  holder: string | undefined;
  /** Why the last round failed; undefined when it succeeded (won, or saw a live holder). */
  error: string | undefined;
}

/**
 * Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews; others
 * take over once the lease record has not changed for a full lease duration — timed by their own
 * clock from when they last saw it change, so clock skew between nodes does not matter. Every write
 * carries the resourceVersion read, so two candidates cannot both win (the loser gets 409).
 */
export class LeaderElector {
  readonly #o: Required<Omit<LeaderElectorOptions, 'onStartedLeading' | 'onStoppedLeading' | 'failures'>> & Pick<LeaderElectorOptions, 'onStartedLeading' | 'onStoppedLeading' | 'failures'>;
  #leading = false;
  #observed: { record: string; at: number } | undefined;
  #cancel: (() => void) | undefined;
  #stopped = false;
  #holder: string | undefined;
  #error: string | undefined;
  /** When this leader last renewed (ms), for the renew deadline. */
  #renewedAt = 0;

  constructor(options: LeaderElectorOptions) {
    const leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.#o = { leaseDurationMs, retryMs: 2_000, renewDeadlineMs: Math.floor((leaseDurationMs * 2) / 3), ...options };
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  get state(): ElectionState {
    return { leading: this.#leading, holder: this.#holder, error: this.#error };
  }

  get namespace(): string {
    return this.#o.namespace;
  }

  start(): void {
    void this.#tick();
  }

  /** Stop; a leader releases the lease so a successor need not wait out its duration. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancel?.();
    if (!this.#leading) return;
    this.#setLeading(false);
    try {
      const lease = await this.#o.kube.get<Lease>(this.#ref());
      if (lease?.spec?.holderIdentity === this.#o.identity) {
        await this.#o.kube.replace({ ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } });
      }
    } catch (error) {
      // The lease then expires by itself, a lease duration later; say why the handover is slow.
      this.#o.failures?.failed(error);
    }
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    let leading: boolean;
    try {
      leading = await this.tryAcquireOrRenew();
      this.#error = undefined;
      this.#o.failures?.succeeded();
    } catch (error) {
      this.#error = error instanceof Error ? error.message : String(error);
      this.#o.failures?.failed(error);
      // A leader keeps leading through failed renewals until its renew deadline.
      leading = this.#leading && this.#o.clock.now().getTime() - this.#renewedAt < this.#o.renewDeadlineMs;
    }
    if (leading && !this.#error) this.#renewedAt = this.#o.clock.now().getTime();
    if (this.#stopped) return;
    this.#setLeading(leading);
    this.#cancel = this.#o.clock.setTimer(this.#o.retryMs, () => void this.#tick());
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    if (leading) this.#o.onStartedLeading();
    else this.#o.onStoppedLeading();
  }

  #ref() {
    return { ...KINDS.lease, namespace: this.#o.namespace, name: this.#o.name };
  }

  /** One round: true when this candidate holds the lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { kube, clock, identity } = this.#o;
    const now = clock.now();
    const durationSeconds = Math.ceil(this.#o.leaseDurationMs / 1000);
    const fresh: LeaseSpec = { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 };
    const lease = await kube.get<Lease>(this.#ref());
    if (!lease) {
      try {
        await kube.create({ ...KINDS.lease, metadata: { name: this.#o.name, namespace: this.#o.namespace }, spec: fresh });
        this.#holder = identity;
        return true;
      } catch (error) {
        if (isApiError(error, 409)) return false;
        if (isApiError(error, 404)) {
          throw new KubeApiError(404, 'NotFound', `leader election: the Lease's namespace "${this.#o.namespace}" does not exist: create it, or set POD_NAMESPACE to a namespace that does (${error.message})`);
        }
        throw error;
      }
    }
    const spec = lease.spec ?? {};
    this.#holder = spec.holderIdentity || undefined;
    const record = JSON.stringify(spec);
    if (!this.#observed || this.#observed.record !== record) this.#observed = { record, at: now.getTime() };
    const heldByMe = spec.holderIdentity === identity;
    const expired = !spec.holderIdentity || now.getTime() - this.#observed.at >= (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (!heldByMe && !expired) return false;
    const next: LeaseSpec = heldByMe
      ? { ...spec, renewTime: microTime(now), leaseDurationSeconds: durationSeconds }
      : { ...fresh, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 };
    try {
      const written = await kube.replace<Lease>({ ...lease, spec: next });
      this.#holder = identity;
      this.#observed = { record: JSON.stringify(written.spec ?? next), at: now.getTime() };
      return true;
    } catch (error) {
      if (isApiError(error, 409)) return false;
      throw error;
    }
  }
}
