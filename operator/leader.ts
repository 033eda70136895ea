import type { Clock } from './clock.ts';
import { isApiError, KINDS, type KubeClient, type KubeObject } from './kube.ts';

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
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

/**
 * Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews; others
 * take over once the lease record has not changed for a full lease duration — timed by their own
 * clock from when they last saw it change, so clock skew between nodes does not matter. Every write
 * carries the resourceVersion read, so two candidates cannot both win (the loser gets 409).
 */
export class LeaderElector {
  readonly #o: Required<Omit<LeaderElectorOptions, 'onStartedLeading' | 'onStoppedLeading'>> & Pick<LeaderElectorOptions, 'onStartedLeading' | 'onStoppedLeading'>;
  #leading = false;
  #observed: { record: string; at: number } | undefined;
  #cancel: (() => void) | undefined;
  #stopped = false;

  constructor(options: LeaderElectorOptions) {
    this.#o = { leaseDurationMs: 15_000, retryMs: 2_000, ...options };
  }

  get isLeader(): boolean {
    return this.#leading;
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
    } catch {
      // The lease expires by itself.
    }
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    let leading: boolean;
    try {
      leading = await this.tryAcquireOrRenew();
    } catch {
      leading = false;
    }
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
    const fresh: LeaseSpec = { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: now.toISOString(), renewTime: now.toISOString(), leaseTransitions: 0 };
    const lease = await kube.get<Lease>(this.#ref());
    if (!lease) {
      try {
        await kube.create({ ...KINDS.lease, metadata: { name: this.#o.name, namespace: this.#o.namespace }, spec: fresh });
        return true;
      } catch (error) {
        if (isApiError(error, 409)) return false;
        throw error;
      }
    }
    const spec = lease.spec ?? {};
    const record = JSON.stringify(spec);
    if (!this.#observed || this.#observed.record !== record) this.#observed = { record, at: now.getTime() };
    const heldByMe = spec.holderIdentity === identity;
    const expired = !spec.holderIdentity || now.getTime() - this.#observed.at >= (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (!heldByMe && !expired) return false;
    const next: LeaseSpec = heldByMe
      ? { ...spec, renewTime: now.toISOString(), leaseDurationSeconds: durationSeconds }
      : { ...fresh, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 };
    try {
      const written = await kube.replace<Lease>({ ...lease, spec: next });
      this.#observed = { record: JSON.stringify(written.spec ?? next), at: now.getTime() };
      return true;
    } catch (error) {
      if (isApiError(error, 409)) return false;
      throw error;
    }
  }
}
