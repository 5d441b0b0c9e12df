/**
 * One measured run of a closed-loop load generator process (bench/gokv_load.ts, etcdload,
 * bench/denokv_load.ts) against a system under test, with the servers' CPU sampled from /proc:
 * the machinery shared by bench/cluster_bench.ts and bench/scale_bench.ts.
 *
 * @module
 */

/** Linux USER_HZ: /proc/<pid>/stat times are in 1/100 s. */
const CLK_TCK = 100;

/** What one generator run measured. */
export interface Result {
  /** The system's name ("gokv", "etcd", ...). */
  system: string;
  /** The operation ("put", "get", ...). */
  op: string;
  /** Concurrent clients. */
  c: number;
  /** Operations per second. */
  opsPerSec: number;
  /** Median latency, ms. */
  p50: number;
  /** 99th percentile latency, ms. */
  p99: number;
  /** Failed requests. */
  errors: number;
  /** Server CPU (all server processes) per operation over the measured phase, µs. */
  serverUsPerOp: number;
  /** The generator's own CPU over the measured phase, % of one core (undefined if unknown). */
  genCpuPct?: number;
}

/** A system under test: its server pids and the generator command for one run. */
export interface System {
  /** The name its results carry. */
  name: string;
  /** The server processes whose CPU is counted. */
  pids: () => Promise<number[]>;
  /** The generator's command line (program first) for operation `op` at concurrency `c`. */
  generator: (op: string, c: number) => string[];
}

/** utime + stime of a process in seconds (0 when it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 of stat(5)
  } catch {
    return 0;
  }
}

/**
 * Runs one generator process while sampling the servers' CPU every 50 ms; the measured phase is
 * the last `n / ops_per_s` seconds before the generator printed its result (the generators
 * preload before measuring gets), so server CPU is taken over that window only. `n` is the
 * number of requests the generator makes (a watch run reports the events it delivered instead).
 */
export async function run(sys: System, op: string, c: number, n: number): Promise<Result> {
  const pids = await sys.pids();
  const samples: Array<[number, number]> = [];
  const sample = () =>
    samples.push([performance.now(), pids.reduce((s, p) => s + cpuSeconds(p), 0)]);
  sample();
  const timer = setInterval(sample, 50);
  const [cmd, ...args] = sys.generator(op, c);
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "inherit" }).output();
  clearInterval(timer);
  sample();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success) throw new Error(`${sys.name} generator failed: ${text}`);
  const r = JSON.parse(text);
  // Operations measured: n requests, or for watch the events delivered.
  const ops = r.delivered ?? n;
  const secs = ops / r.ops_per_s;
  const tEnd = samples[samples.length - 1][0];
  const at = (t: number) => { // server CPU seconds at time t, interpolated between samples
    const i = samples.findIndex(([ts]) => ts >= t);
    if (i < 0) return samples[samples.length - 1][1];
    if (i === 0) return samples[0][1];
    const [t0, c0] = samples[i - 1], [t1, c1] = samples[i];
    return c0 + (c1 - c0) * ((t - t0) / Math.max(1e-9, t1 - t0));
  };
  const cpu = at(tEnd) - at(tEnd - secs * 1000);
  return {
    system: sys.name,
    op,
    c,
    opsPerSec: r.ops_per_s,
    p50: Number(r.p50_ms),
    p99: Number(r.p99_ms),
    errors: r.errors,
    serverUsPerOp: (cpu * 1e6) / ops,
    genCpuPct: r.gen_cpu_pct,
  };
}

/** One result as a line of the benchmarks' console output. */
export function fmtRow(r: Result): string {
  return `${r.system.padEnd(8)} ${r.op.padEnd(4)} c=${String(r.c).padEnd(4)} ${
    String(Math.round(r.opsPerSec)).padStart(7)
  } ops/s  p50 ${r.p50.toFixed(2).padStart(7)} ms  p99 ${r.p99.toFixed(2).padStart(7)} ms  ` +
    `server ${r.serverUsPerOp.toFixed(0).padStart(4)} µs/op  generator ${
      r.genCpuPct === undefined ? "  ?" : String(r.genCpuPct).padStart(3)
    }% cpu${r.errors ? `  errors ${r.errors}` : ""}`;
}
