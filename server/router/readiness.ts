import type { Middleware } from 'koa';
import type { RoutingTable } from './routing-table.ts';
import type { UpstreamHealth, UpstreamStatus } from './upstream-health.ts';

export interface RouterReadiness {
  ready: boolean;
  /** Why not, when not ready. */
  reason?: string;
  /** Each upstream of router.yaml, the versions it serves, and its health. */
  upstreams: Array<UpstreamStatus & { versions: string[] }>;
}

/**
 * Ready: both files loaded, some enabled version has an upstream, and at least one such upstream passed
 * its health checks and is not ejected. A router whose every upstream is out answers 503 here, so the
 * Service stops sending it clients it can only refuse.
 */
export function routerReadiness(filesReady: boolean, table: RoutingTable | undefined, health: UpstreamHealth): RouterReadiness {
  const statuses = health.status();
  const upstreams = statuses.map((status) => ({
    ...status,
    versions: (table?.versions ?? []).filter((v) => v.enabled && v.upstream === status.upstream).map((v) => v.name),
  }));
  if (!filesReady || !table) {
    return { ready: false, reason: 'config.yaml or router.yaml is not loaded, or no enabled version has an upstream', upstreams };
  }
  if (health.anyHealthy(upstreams.filter((u) => u.versions.length > 0).map((u) => u.upstream))) return { ready: true, upstreams };
  const why = upstreams.map((u) => `${u.upstream} (${u.versions.join(', ')}): ${describe(u)}`).join('; ');
  return { ready: false, reason: `no upstream is healthy: ${why}`, upstreams };
}

function describe(status: UpstreamStatus): string {
  if (status.ejectedUntil !== undefined) return `ejected until ${status.ejectedUntil} (${status.ejectionReason ?? 'failures in a row'})`;
  if (status.active === 'unhealthy') return `failing its health checks (${status.checkFailure ?? 'unknown'})`;
  if (status.active === 'pending') return 'not checked yet';
  return 'healthy';
}

/** GET /readyz of the router: 200 or 503, with each upstream's health in the body. */
export function routerReadyz(readiness: () => RouterReadiness): Middleware {
  return (ctx) => {
    const { ready, reason, upstreams } = readiness();
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready', ...(reason !== undefined ? { reason } : {}), upstreams };
  };
}
