/**
 * Ad-hoc helper (not CI): the functions with the most self time in a V8 CPU
 * profile written by `deno run --cpu-prof`, optionally within a time window.
 *   deno run -A bench/lsm_prof_top.ts <file.cpuprofile> [top=30] [fromMs] [toMs]
 *     [--main=<main thread's .cpuprofile>]
 *
 * The window is in ms of the process's `performance.now()` (what `LSM_BENCH_TIMES=1` prints).
 * The main thread's profile starts with the process; a worker's (`CPU.<t>.<pid>.worker-<n>
 * .cpuprofile`: the LSM's background thread) starts when the worker does, so its timeline is
 * shifted by the difference of the profiles' start times: the main profile of the same pid in
 * the same directory is found by its name (or given with `--main`). A sample counts for the part
 * of its interval (until the next sample) inside the window.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";

/** A node of a V8 CPU profile. */
export interface ProfileNode {
  /** Its id. */
  id: number;
  /** The function. */
  callFrame: { functionName: string; url: string; lineNumber: number };
  /** Ids of its callees. */
  children?: number[];
}

/** A V8 CPU profile (`.cpuprofile`). */
export interface CpuProfile {
  /** The call tree. */
  nodes: ProfileNode[];
  /** Start time (µs of a monotonic clock shared by the process's threads). */
  startTime: number;
  /** The node of each sample. */
  samples: number[];
  /** Time since the previous sample (the first: since `startTime`), µs. */
  timeDeltas: number[];
}

/** Self and total time per function within a window. */
export interface ProfileTop {
  /** µs of samples inside the window. */
  window: number;
  /** End of the profile's timeline, µs after its origin. */
  end: number;
  /** Self time per function label, µs. */
  self: Map<string, number>;
  /** Time with the function on the stack, µs (recursion counted once). */
  total: Map<string, number>;
}

function label(n: ProfileNode): string {
  return `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").slice(-1)[0]}:${
    n.callFrame.lineNumber + 1
  }`;
}

/**
 * The time per function in `[fromUs, toUs]` of the timeline whose origin is `originUs` (the
 * main thread's `startTime`; default the profile's own).
 */
export function profileTop(
  prof: CpuProfile,
  fromUs = -Infinity,
  toUs = Infinity,
  originUs = prof.startTime,
): ProfileTop {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let t = prof.startTime - originUs;
  let window = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    t += prof.timeDeltas[i];
    // The sample stands for the time until the next one: the part of it inside the window.
    const dt = Math.min(toUs, t + (prof.timeDeltas[i + 1] ?? 0)) - Math.max(fromUs, t);
    if (!(dt > 0)) continue;
    window += dt;
    const n = byId.get(prof.samples[i])!;
    self.set(label(n), (self.get(label(n)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id)!);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + dt);
    }
  }
  return { window, end: t, self, total };
}

/** The main thread's profile of the process that wrote worker profile `file` (same directory,
 * same pid), or undefined when `file` is not a worker's or none is found. */
export function mainProfileOf(file: string): string | undefined {
  const m = /^CPU\.\d+\.(\d+)\.worker-\d+\.cpuprofile$/.exec(basename(file));
  if (!m) return undefined;
  const dir = dirname(file);
  for (const e of Deno.readDirSync(dir)) {
    if (new RegExp(`^CPU\\.\\d+\\.${m[1]}\\.cpuprofile$`).test(e.name)) return join(dir, e.name);
  }
  return undefined;
}

if (import.meta.main) {
  const mainArg = Deno.args.find((a) => a.startsWith("--main="))?.slice(7);
  const [file, topArg, fromArg, toArg] = Deno.args.filter((a) => !a.startsWith("--main="));
  const read = (f: string) => JSON.parse(Deno.readTextFileSync(f)) as CpuProfile;
  const prof = read(file);
  const mainFile = mainArg ?? mainProfileOf(file);
  const origin = mainFile ? read(mainFile).startTime : prof.startTime;
  const top = Number(topArg ?? 30);
  const from = fromArg === undefined ? -Infinity : Number(fromArg) * 1000;
  const to = toArg === undefined ? Infinity : Number(toArg) * 1000;
  const r = profileTop(prof, from, to, origin);
  const pct = (x: number) => ((x * 100) / r.window).toFixed(1).padStart(5) + "%";
  if (mainFile) {
    console.log(
      `timeline of ${basename(mainFile)}: this profile starts ${
        ((prof.startTime - origin) / 1000).toFixed(0)
      } ms after it`,
    );
  }
  console.log(`window ${(r.window / 1000).toFixed(0)} ms of ${(r.end / 1000).toFixed(0)} ms`);
  console.log("-- self");
  for (const [k, v] of [...r.self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(pct(v), (v / 1000).toFixed(0).padStart(6), "ms ", k);
  }
  console.log("-- total");
  for (const [k, v] of [...r.total].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(pct(v), (v / 1000).toFixed(0).padStart(6), "ms ", k);
  }
}
