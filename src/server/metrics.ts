// Prometheus metrics (text format at /metrics) on a registry of the app's own, so two apps in
// one process (tests) do not share counters. prom-client does the format.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly duration: Histogram<'route'>;
  readonly bundleBytes: Counter<'protocol'>;
  readonly publishes: Counter<'result'>;
  readonly pending: Gauge;
  readonly logBytes: Counter;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'rear_update_' });
  return {
    registry,
    requests: new Counter({ name: 'rear_update_http_requests_total', help: 'HTTP requests by route pattern, method and status', labelNames: ['route', 'method', 'status'], registers: [registry] }),
    duration: new Histogram({ name: 'rear_update_http_request_seconds', help: 'HTTP request duration by route pattern', labelNames: ['route'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [registry] }),
    bundleBytes: new Counter({ name: 'rear_update_bundle_bytes_served_total', help: 'bundle bytes sent, by protocol (api, rear)', labelNames: ['protocol'], registers: [registry] }),
    publishes: new Counter({ name: 'rear_update_publishes_total', help: 'publishes by result (created, unchanged, or the refusal code)', labelNames: ['result'], registers: [registry] }),
    pending: new Gauge({ name: 'rear_update_pending_machines', help: 'machines waiting for an assignment (as of the last resolve or assign)', registers: [registry] }),
    logBytes: new Counter({ name: 'rear_update_recovery_log_bytes_total', help: 'recovery log bytes received', registers: [registry] }),
  };
}
