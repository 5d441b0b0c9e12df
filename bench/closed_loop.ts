/**
 * The closed-loop measurement shared by the load generators (bench/gokv_load.ts,
 * bench/denokv_load.ts): C workers with one request in flight each take request numbers 0..N-1
 * in turn; the result is the JSON line bench/cluster_bench.ts reads.
 *
 * @module
 */
import process from "node:process";

/** One request: `i` is the request number, `worker` the worker running it (0..c-1). Resolves
 * false (or throws) for a failed request. */
export type Request = (i: number, worker: number) => Promise<boolean | void>;

/** What a closed-loop run measured, in the generators' JSON field names. */
export interface LoopReport {
  /** Requests per second over the run. */
  ops_per_s: number;
  /** Median latency (ms, two decimals). */
  p50_ms: string;
  /** 99th percentile latency (ms, two decimals). */
  p99_ms: string;
  /** Requests that failed. */
  errors: number;
  /** The generator's own CPU use (% of one core). */
  gen_cpu_pct: number;
}

/** Runs `n` requests with `c` workers, one in flight each, and measures them. */
export async function closedLoop(n: number, c: number, request: Request): Promise<LoopReport> {
  const lat = new Float64Array(n);
  let next = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async (_, w) => {
    for (let i = next++; i < n; i = next++) {
      const s = performance.now();
      try {
        if (await request(i, w) === false) errors++;
      } catch {
        errors++;
      }
      lat[i] = performance.now() - s;
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  lat.sort();
  const q = (p: number) => lat[Math.min(n - 1, Math.floor(p * n))].toFixed(2);
  return {
    ops_per_s: Math.round(n / secs),
    p50_ms: q(0.5),
    p99_ms: q(0.99),
    errors,
    gen_cpu_pct: Math.round((100 * (cpu.user + cpu.system) / 1e6) / secs),
  };
}
