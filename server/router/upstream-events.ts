import type { Logger } from '../logger.ts';
import type { RouterMetrics } from './metrics.ts';
import type { HealthEvent } from './upstream-health.ts';

/** Each change of an upstream's health: a log line (warn when it goes out, info when it comes back), ejections counted. */
export function trackUpstreamHealth(metrics: RouterMetrics, logger: Logger): (event: HealthEvent) => void {
  return (event) => {
    const { upstream } = event;
    switch (event.type) {
      case 'ejected':
        metrics.upstreamEjections.inc({ upstream });
        logger.warn(
          { upstream, ejectedForMs: event.forMs, failures: event.failures, reason: event.reason },
          `upstream ${upstream} ejected for ${Math.round(event.forMs / 1000)} s after ${event.failures} failures in a row (last: ${event.reason})`,
        );
        return;
      case 'returned':
        logger.info({ upstream }, `upstream ${upstream} back in rotation after its ejection`);
        return;
      case 'unhealthy':
        logger.warn({ upstream, reason: event.reason }, `upstream ${upstream} failing its health checks: ${event.reason}`);
        return;
      case 'healthy':
        logger.info({ upstream }, `upstream ${upstream} passing its health checks again`);
        return;
    }
  };
}
