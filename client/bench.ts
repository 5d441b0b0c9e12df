/**
 * A closed-loop load generator over the client library, used by `gokv bench` and
 * bench/cluster_bench.ts: C workers each keep one request in flight.
 *
 * @module
 */
import { Client, type ClientOptions, type ConsistencyLevel } from "./client.ts";

/** What to run. */
export interface BenchOptions {
  /** Client addresses of the cluster. */
  endpoints: string[];
  /** TLS and token of the connections (as {@link ClientOptions}). */
  security?: Pick<ClientOptions, "tls" | "token">;
  /** Concurrent closed-loop workers (default 16). */
  clients?: number;
  /** Client instances (TCP connections per node) shared by the workers (default 1). */
  connections?: number;
  /** Fraction of operations that are gets, 0..1 (default 0: puts only). */
  readRatio?: number;
  /** Distinct keys (default 10 000). */
  keySpace?: number;
  /** Key length in bytes, at least 4 (default 15: "key" + 12 digits). */
  keySize?: number;
  /** Value length in bytes (default 100). */
  valueSize?: number;
  /** Stop after this many operations... */
  count?: number;
  /** ...or after this long (default 10 000 ms when count is not given). */
  durationMs?: number;
  /** Consistency of gets (default linearizable). */
  consistency?: ConsistencyLevel;
  /** Write every key once before measuring (default: when readRatio > 0). */
  preload?: boolean;
  /** Called about every 200 ms with the fraction done and ops so far. */
  onProgress?: (fraction: number, ops: number) => void;
}

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  /** Median. */
  p50: number;
  /** 95th percentile. */
  p95: number;
  /** 99th percentile. */
  p99: number;
  /** Slowest. */
  max: number;
}

/** The outcome of a run. */
export interface BenchResult {
  /** Operations completed successfully. */
  ops: number;
  /** Operations that failed. */
  errors: number;
  /** Gets among `ops`. */
  gets: number;
  /** Puts among `ops`. */
  puts: number;
  /** Wall time in seconds. */
  seconds: number;
  /** Successful operations per second. */
  opsPerSec: number;
  /** Latency of all completed operations. */
  latency: LatencySummary;
  /** The first error's message, if any failed. */
  firstError?: string;
}

/** The benchmark key for index `i`: "key" followed by zero-padded digits, `size` bytes long. */
export function benchKey(i: number, size = 15): string {
  return "key" + String(i).padStart(Math.max(1, size - 3), "0");
}

/** Percentiles of `samples` (sorted in place). */
export function summarize(samples: Float64Array | number[]): LatencySummary {
  const s = samples instanceof Float64Array ? samples.sort() : samples.sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { p50: 0, p95: 0, p99: 0, max: 0 };
  const q = (p: number) => s[Math.min(n - 1, Math.floor(p * n))];
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99), max: s[n - 1] };
}

/** Runs the load and returns throughput and latency. */
export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const C = opts.clients ?? 16;
  const keySpace = opts.keySpace ?? 10_000;
  const keySize = opts.keySize ?? 15;
  const readRatio = opts.readRatio ?? 0;
  const count = opts.count;
  const durationMs = count === undefined ? opts.durationMs ?? 10_000 : Infinity;
  const value = new Uint8Array(opts.valueSize ?? 100).fill(0x76);
  const keys = Array.from(
    { length: keySpace },
    (_, i) => new TextEncoder().encode(benchKey(i, keySize)),
  );
  const nconn = Math.max(1, Math.min(opts.connections ?? 1, C));
  const clients: Client[] = [];
  try {
    for (let i = 0; i < nconn; i++) {
      clients.push(
        await Client.connect({
          endpoints: opts.endpoints,
          timeoutMs: 10_000,
          ...opts.security,
        }),
      );
    }
    if (opts.preload ?? readRatio > 0) {
      let next = 0;
      await Promise.all(Array.from({ length: Math.min(C, 256) }, async (_, w) => {
        const c = clients[w % nconn];
        while (next < keySpace) await c.put(keys[next++], value);
      }));
    }
    let lat = new Float64Array(count ?? 1 << 16);
    let n = 0;
    let errors = 0;
    let gets = 0;
    let started = 0;
    let firstError: string | undefined;
    const t0 = performance.now();
    const end = t0 + durationMs;
    const progress = opts.onProgress
      ? setInterval(() => {
        const f = count !== undefined ? n / count : (performance.now() - t0) / durationMs;
        opts.onProgress!(Math.min(1, f), n);
      }, 200)
      : undefined;
    await Promise.all(Array.from({ length: C }, async (_, w) => {
      const c = clients[w % nconn];
      while (count !== undefined ? started < count : performance.now() < end) {
        started++;
        const k = keys[Math.floor(Math.random() * keySpace)];
        const isGet = readRatio > 0 && Math.random() < readRatio;
        const s = performance.now();
        try {
          if (isGet) await c.get(k, { consistency: opts.consistency });
          else await c.put(k, value);
        } catch (e) {
          errors++;
          firstError ??= (e as Error).message;
          continue;
        }
        if (n === lat.length) {
          const bigger = new Float64Array(lat.length * 2);
          bigger.set(lat);
          lat = bigger;
        }
        lat[n++] = performance.now() - s;
        if (isGet) gets++;
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    if (progress !== undefined) clearInterval(progress);
    opts.onProgress?.(1, n);
    return {
      ops: n,
      errors,
      gets,
      puts: n - gets,
      seconds,
      opsPerSec: n / seconds,
      latency: summarize(lat.subarray(0, n)),
      firstError,
    };
  } finally {
    for (const c of clients) await c.close();
  }
}
