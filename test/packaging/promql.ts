import { parser } from '@prometheus-io/lezer-promql';
import { OperatorMetrics } from '../../operator/metrics.ts';
import { ServerMetrics } from '../../server/metrics.ts';
import { RouterMetrics } from '../../server/router/metrics.ts';

/** Every metric name the server, the router and the operator register (their default process metrics left out). */
export async function registeredNames(): Promise<Set<string>> {
  const registries = [
    new ServerMetrics({ defaultMetrics: false }).registry,
    new RouterMetrics({ defaultMetrics: false }).registry,
    new OperatorMetrics({ defaultMetrics: false }).registry,
  ];
  const names = new Set<string>();
  for (const registry of registries) for (const metric of await registry.getMetricsAsJSON()) names.add(metric.name);
  return names;
}

export interface ParsedQuery {
  /** Offsets where Prometheus' own grammar (lezer-promql) found no valid PromQL; empty when it parses. */
  errors: number[];
  /** Metric names its selectors read, a histogram's _bucket/_sum/_count read as the histogram. */
  metrics: string[];
}

/** Parse a PromQL expression with the grammar the Prometheus UI uses. */
export function parsePromQL(expr: string): ParsedQuery {
  const errors: number[] = [];
  const metrics: string[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') metrics.push(expr.slice(node.from, node.to).replace(/_(bucket|sum|count)$/, ''));
    },
  });
  return { errors, metrics };
}
