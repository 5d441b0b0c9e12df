/**
 * Prometheus metrics: the node uses npm:prom-client (text exposition format 0.0.4) with one
 * registry per node, never the library's global registry (several nodes may share a process).
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry };

/** Request and I/O latency buckets in seconds: 50 µs .. 10 s. */
export const LATENCY_BUCKETS: number[] = [
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

/** Buckets for long background work (snapshots, compactions, backups): 1 ms .. 30 min. */
export const DURATION_BUCKETS: number[] = [
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  1800,
];
