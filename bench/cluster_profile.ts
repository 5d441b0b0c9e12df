/**
 * Where the CPU of one operation goes: a 3-node gokv cluster (bench/gokv_cluster.ts) with every
 * node under `deno run --cpu-prof`, one closed-loop run of bench/gokv_load.ts (also profiled),
 * then per process (leader, followers, client) the main thread's busy time per operation and the
 * functions with the most self time over the measured phase.
 *
 * Usage: deno run -A bench/cluster_profile.ts [--op put|get] [--c 64] [--n 30000] [--top 20]
 *        [--vsize 100] [--keys 10000] [--warmup 0] [--driver gokv|denokv] [--root <checkout>]
 *        [--out <dir>] [--json]
 *
 * `--warmup N` first runs N requests of the same load unmeasured (not profiled client, outside
 * the window): the nodes' code is optimized and their LSM workers started, as in a long run.
 *
 * `--driver denokv` drives the leader's KV Connect endpoint through the Deno runtime's own client
 * (bench/denokv_load.ts under `--unstable-kv`: put = one atomic commit, get = a strongly
 * consistent `kv.get`) instead of gokv's binary client.
 *
 * `--root` profiles another checkout (its main.ts and its generator), for a before/after
 * breakdown. The .cpuprofile files stay in `--out` (default a temporary directory, printed) and
 * open in Chrome DevTools. The profiles sample the main thread only (not the LSM's Workers); the
 * time per operation is the busy (non-idle) sample time of the measured phase divided by the
 * requests, so it is lower than the CPU time /proc reports (no GC helper threads, no kernel
 * time of other threads).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, relative, resolve } from "node:path";
import { asUsageError, EXIT_USAGE, UsageError } from "../config/cli.ts";
import { KV_TOKEN, ROOT, startGokv } from "./gokv_cluster.ts";

const USAGE =
  "Usage: deno run -A bench/cluster_profile.ts [--op put|get] [--c 64] [--n 30000] [--top 20] " +
  "[--vsize 100] [--keys 10000] [--warmup 0] [--driver gokv|denokv] [--root <checkout>] " +
  "[--out <dir>] [--json]";
let a;
try {
  a = parseArgs({
    options: {
      op: { type: "string", default: "put" },
      c: { type: "string", default: "64" },
      n: { type: "string", default: "30000" },
      top: { type: "string", default: "20" },
      vsize: { type: "string", default: "100" },
      keys: { type: "string", default: "10000" },
      warmup: { type: "string", default: "0" },
      driver: { type: "string", default: "gokv" },
      root: { type: "string" },
      out: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
} catch (e) {
  const err = asUsageError(e);
  if (!(err instanceof UsageError)) throw err;
  console.error(`${err.message}\n${USAGE}`);
  Deno.exit(EXIT_USAGE);
}
if (a.help) {
  console.log(USAGE);
  Deno.exit(0);
}
if (
  !["put", "get"].includes(a.op) || !["gokv", "denokv"].includes(a.driver) || !(Number(a.c) > 0) ||
  !(Number(a.n) > 0) ||
  !(Number(a.vsize) >= 0) || !(Number(a.keys) > 0) || !(Number(a.warmup) >= 0)
) {
  console.error(USAGE);
  Deno.exit(EXIT_USAGE);
}
const root = a.root ? resolve(a.root) : ROOT;
const out = a.out ? resolve(a.out) : await Deno.makeTempDir({ prefix: "gokv-prof-" });
const N = Number(a.n), TOP = Number(a.top);

/** One V8 .cpuprofile (the fields used here). */
interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A process's profile summarized over the window [from, to] µs before the profile's end. */
interface Summary {
  role: string;
  /** /proc CPU of the whole process over the generator's run, µs per operation, by thread. */
  procUsPerOp?: Record<string, number>;
  busyUsPerOp: number;
  top: Array<{ fn: string; where: string; selfMs: number; pct: number }>;
}

function summarize(role: string, file: string, fromEnd: number, toEnd: number): Summary {
  const p: CpuProfile = JSON.parse(Deno.readTextFileSync(file));
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const self = new Map<string, number>();
  let t = p.startTime, busy = 0;
  const lo = p.endTime - fromEnd, hi = p.endTime - toEnd;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    // A sample accounts for the interval up to the next one.
    const dt = i + 1 < p.timeDeltas.length ? p.timeDeltas[i + 1] : 0;
    if (t < lo || t > hi) continue;
    const f = byId.get(p.samples[i])!;
    if (f.functionName === "(idle)") continue;
    const url = f.url.startsWith("file://") ? relative(root, new URL(f.url).pathname) : f.url;
    const key = `${f.functionName || "(anonymous)"}\t${url ? `${url}:${f.lineNumber + 1}` : ""}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    busy += dt;
  }
  const top = [...self.entries()].sort((x, y) => y[1] - x[1]).slice(0, TOP).map(([k, us]) => {
    const [fn, where] = k.split("\t");
    return { fn, where, selfMs: us / 1000, pct: (100 * us) / Math.max(1, busy) };
  });
  return { role, busyUsPerOp: busy / N, top };
}

/** CPU seconds (utime + stime) of each thread of `pid`, summed by thread name (comm). */
function threadCpu(pid: number): Map<string, number> {
  const m = new Map<string, number>();
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
        const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
          .replace(/[0-9]+$/, "#"); // numbered pool threads together
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        m.set(name, (m.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
      } catch { /* the thread ended */ }
    }
  } catch { /* the process ended */ }
  return m;
}

/** The CPU per thread name between two {@link threadCpu} readings (threads that ended are lost). */
function cpuDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of after) d.set(k, v - (before.get(k) ?? 0));
  return d;
}

/** The newest .cpuprofile of a directory (a process writes one; Workers may add theirs). */
function profileIn(dir: string): string {
  const files = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".cpuprofile"))
    .map((e) => join(dir, e.name)).sort((x, y) => Deno.statSync(y).size - Deno.statSync(x).size);
  if (files.length === 0) throw new Error(`no profile in ${dir}`);
  return files[0]; // the main isolate's, by far the largest
}

const cluster = await startGokv({
  root,
  denoFlags: (id) => ["--cpu-prof", `--cpu-prof-dir=${join(out, `node-${id}`)}`],
});
let report;

let tEnd = 0, tExit = 0;
let procCpu: Map<string, number>[] = [];
try {
  const leader = await cluster.leader();
  // The generator and its target: gokv's binary client on every node, or Deno's KV Connect
  // client on the leader (the token in the environment, as Deno's client reads it).
  const kvUrl = a.driver === "denokv" ? await cluster.kvUrl() : "";
  if (a.driver === "denokv") Deno.env.set("DENO_KV_ACCESS_TOKEN", KV_TOKEN);
  const generator = (flags: string[]) =>
    a.driver === "denokv"
      ? [...flags, "--unstable-kv", join(root, "bench", "denokv_load.ts"), "--url", kvUrl]
      : [...flags, join(root, "bench", "gokv_load.ts"), "--endpoints", cluster.endpoints.join(",")];
  if (Number(a.warmup) > 0) {
    const warm = await new Deno.Command(Deno.execPath(), {
      args: generator(["run", "-A"])
        .concat(["--op", a.op, "--c", a.c, "--n", a.warmup, "--vsize", a.vsize, "--keys", a.keys]),
      stdout: "null",
      stderr: "inherit",
    }).output();
    if (!warm.success) throw new Error("warm-up run failed");
  }
  const cpu0 = cluster.pids.map(threadCpu);

  const gen = await new Deno.Command(Deno.execPath(), {
    args: [
      ...generator(["run", "-A", "--cpu-prof", `--cpu-prof-dir=${join(out, "client")}`]),
      "--op",
      a.op,
      "--c",
      a.c,
      "--n",
      a.n,
      "--vsize",
      a.vsize,
      "--keys",
      a.keys,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  tEnd = performance.now();
  procCpu = cluster.pids.map((pid, i) => cpuDelta(cpu0[i], threadCpu(pid)));
  const line = new TextDecoder().decode(gen.stdout).trim().split("\n").pop() ?? "";
  if (!gen.success) throw new Error(`generator failed: ${line}`);
  report = { leader, ...JSON.parse(line) };
  // Idle a moment so that the shutdown is well apart from the measured phase.
  await new Promise((r) => setTimeout(r, 500));
} finally {
  await cluster.stop();
  tExit = performance.now();
}

const secs = N / report.ops_per_s; // the generator's measured phase (after any preload)
const summaries: Summary[] = [];
for (const id of [1, 2, 3]) {
  const role = id === report.leader ? `leader (node ${id})` : `follower (node ${id})`;
  // The measured phase ended when the generator exited (≈ tEnd); the node exited at ≈ tExit.
  const toEnd = (tExit - tEnd) * 1000;
  const s = summarize(role, profileIn(join(out, `node-${id}`)), toEnd + secs * 1e6, toEnd);
  s.procUsPerOp = Object.fromEntries(
    [...procCpu[id - 1]].filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1])
      .map(([k, v]) => [k, Math.round((v * 1e6) / N)]),
  );
  summaries.push(s);
}
summaries.sort((x, y) => (x.role.startsWith("leader") ? -1 : y.role.startsWith("leader") ? 1 : 0));
summaries.push(
  summarize(
    `client (${a.driver === "denokv" ? "denokv_load.ts" : "gokv_load.ts"})`,
    profileIn(join(out, "client")),
    secs * 1e6,
    0,
  ),
);

if (a.json) {
  console.log(JSON.stringify({ op: a.op, c: Number(a.c), n: N, report, summaries }));
} else {
  console.log(
    `${a.op} c=${a.c} n=${N} vsize=${a.vsize}: ${report.ops_per_s} ops/s, p50 ${report.p50_ms} ms, p99 ${report.p99_ms} ms` +
      ` (root ${root}; profiles in ${out})`,
  );
  for (const s of summaries) {
    console.log(`\n${s.role}: main thread busy ${s.busyUsPerOp.toFixed(1)} µs/op`);
    if (s.procUsPerOp) {
      const total = Object.values(s.procUsPerOp).reduce((x, y) => x + y, 0);
      console.log(
        `  /proc CPU over the whole run ${total} µs/op: ${
          Object.entries(s.procUsPerOp).map(([k, v]) => `${k} ${v}`).join(", ")
        }`,
      );
    }
    for (const t of s.top) {
      console.log(
        `  ${t.pct.toFixed(1).padStart(5)}%  ${
          t.selfMs.toFixed(0).padStart(6)
        } ms  ${t.fn}  ${t.where}`,
      );
    }
  }
}
