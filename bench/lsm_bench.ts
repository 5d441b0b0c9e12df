/**
 * LSM engine benchmark: gokv lsm/ vs classic-level (LevelDB) from the same
 * runtime. Each engine runs the whole workload sequence in its own process;
 * runs alternate between engines. Usage:
 *   deno run -A bench/lsm_bench.ts [--quick] [--rounds=N] [--baseline=<checkout>]
 * (or LSM_BENCH_QUICK=1). Prints the best ops/s of the rounds per workload and
 * the lsm/level ratio. `--baseline=<dir>` also runs the engine of another
 * checkout of the project (`<dir>/lsm/mod.ts`, e.g. from `git worktree add` or
 * `git archive` of an older commit) in the same alternation, as system "base",
 * with lsm/base ratios (before/after under the same machine load).
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { getHeapSpaceStatistics } from "node:v8";
import { mulberry32 } from "../lsm/prng.ts";

interface Result {
  name: string;
  ops: number;
  ms: number;
}

const args = Deno.args;
const quick = args.includes("--quick") || Deno.env.get("LSM_BENCH_QUICK") === "1";
const childArg = args.find((a) => a.startsWith("--child="));
const roundsArg = args.find((a) => a.startsWith("--rounds="));
const rounds = roundsArg ? Number(roundsArg.slice(9)) : 1;
const baselineArg = args.find((a) => a.startsWith("--baseline="));
const baseline = baselineArg ? resolve(baselineArg.slice(11)) : undefined;
const lsmModArg = args.find((a) => a.startsWith("--lsm-mod="));

const SIZES = quick
  ? { fill: 200_000, puts: 20_000, gets: 40_000, syncs: 2_000 }
  : { fill: 1_000_000, puts: 100_000, gets: 200_000, syncs: 10_000 };

function keyOf(i: number): Uint8Array {
  const s = String(i).padStart(16, "0");
  const k = new Uint8Array(16);
  for (let j = 0; j < 16; j++) k[j] = s.charCodeAt(j);
  return k;
}

interface Engine {
  progress(): string;
  batch(ops: { key: Uint8Array; value: Uint8Array }[]): Promise<void>;
  put(k: Uint8Array, v: Uint8Array, sync: boolean): Promise<void>;
  get(k: Uint8Array): Promise<Uint8Array | undefined>;
  scan(): Promise<number>;
  close(): Promise<void>;
}

async function openEngine(kind: string, dir: string): Promise<Engine> {
  if (kind === "lsm" || kind === "base") {
    const mod = lsmModArg ? lsmModArg.slice(10) : new URL("../lsm/mod.ts", import.meta.url).href;
    const { LsmDb } = await import(mod);
    // LSM_BENCH_OPTS: JSON LsmOptions for experiments (the reported runs use the defaults).
    const db = await LsmDb.open(dir, JSON.parse(Deno.env.get("LSM_BENCH_OPTS") ?? "{}"));
    return {
      batch: (ops) =>
        db.write(ops.map((o) => ({ type: "put" as const, key: o.key, value: o.value }))),
      put: (k, v, sync) => db.put(k, v, { sync }),
      progress: () => {
        const st = db.stats() as {
          compactions: number;
          levels: { files: number }[];
          compactionBytesRead: number;
        };
        return `compactions=${st.compactions} L=${st.levels.map((l) => l.files).join(",")} read=${
          Math.round(st.compactionBytesRead / 1e6)
        }MB`;
      },
      get: (k) => db.get(k),
      scan: async () => {
        let n = 0;
        for await (const _ of db.scan()) n++;
        return n;
      },
      close: async () => {
        if (Deno.env.get("LSM_BENCH_STATS")) console.error(JSON.stringify(db.stats()));
        await db.close();
      },
    };
  }
  const { ClassicLevel } = await import("classic-level");
  const db = new ClassicLevel<Uint8Array, Uint8Array>(dir, {
    keyEncoding: "view",
    valueEncoding: "view",
  });
  await db.open();
  return {
    batch: (ops) =>
      db.batch(ops.map((o) => ({ type: "put" as const, key: o.key, value: o.value }))),
    put: (k, v, sync) => db.put(k, v, { sync } as Record<string, unknown>),
    progress: () => "",
    get: (k) => db.get(k),
    scan: async () => {
      let n = 0;
      for await (const _ of db.iterator()) n++;
      return n;
    },
    close: () => db.close(),
  };
}

async function child(kind: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: `lsm_bench_${kind}_` });
  const results: Result[] = [];
  try {
    const db = await openEngine(kind, dir);
    const r = mulberry32(42);
    const value = new Uint8Array(100);
    for (let i = 0; i < 100; i++) value[i] = Math.floor(r() * 256);
    const N = SIZES.fill;
    const time = async (name: string, ops: number, f: () => Promise<void>) => {
      const t = performance.now();
      await f();
      results.push({ name, ops, ms: performance.now() - t });
      // For --cpu-prof windows (bench/lsm_prof_top.ts): the phase's span since process start.
      if (Deno.env.get("LSM_BENCH_TIMES")) {
        console.error(`${name}: ${t.toFixed(0)}..${performance.now().toFixed(0)} ms`);
      }
      if (Deno.env.get("LSM_BENCH_STATS")) {
        console.error(`${name}: ${db.progress()}`);
        memoryReport(Deno.memoryUsage());
      }
    };
    await time("fillrandom (batch 1000)", N, async () => {
      for (let b = 0; b < N; b += 1000) {
        const ops = [];
        for (let i = 0; i < 1000; i++) ops.push({ key: keyOf(Math.floor(r() * N)), value });
        await db.batch(ops);
      }
    });
    await time("single awaited puts", SIZES.puts, async () => {
      for (let i = 0; i < SIZES.puts; i++) await db.put(keyOf(Math.floor(r() * N)), value, false);
    });
    let found = 0;
    await time("awaited random gets", SIZES.gets, async () => {
      for (let i = 0; i < SIZES.gets; i++) if (await db.get(keyOf(Math.floor(r() * N)))) found++;
    });
    await time("random gets, 100 in flight", SIZES.gets, async () => {
      let next = 0;
      const worker = async () => {
        while (next < SIZES.gets) {
          next++;
          if (await db.get(keyOf(Math.floor(r() * N)))) found++;
        }
      };
      await Promise.all(Array.from({ length: 100 }, worker));
    });
    let scanned = 0;
    const t = performance.now();
    scanned = await db.scan();
    results.push({ name: "full ordered scan", ops: scanned, ms: performance.now() - t });
    await time("sync puts, 64 writers", SIZES.syncs, async () => {
      let next = 0;
      const worker = async () => {
        while (next < SIZES.syncs) {
          next++;
          await db.put(keyOf(Math.floor(r() * N)), value, true);
        }
      };
      await Promise.all(Array.from({ length: 64 }, worker));
    });
    await db.close();
    const mem = Deno.memoryUsage();
    const rss = mem.rss;
    if (Deno.env.get("LSM_BENCH_STATS")) {
      memoryReport(mem);
      await new Promise((r) => setTimeout(r, 1000));
      console.error("1 s after close:");
      memoryReport(Deno.memoryUsage());
    }
    console.log(JSON.stringify({ results, rss, found }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Where the resident memory is (LSM_BENCH_STATS): V8's figures and /proc/self/smaps by kind. */
function memoryReport(mem: Deno.MemoryUsage): void {
  const mib = (kb: number) => (kb / 1024).toFixed(0);
  const kinds = new Map<string, number>();
  let name = "";
  let size = 0;
  for (const line of Deno.readTextFileSync("/proc/self/smaps").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      size = (parseInt(m[2], 16) - parseInt(m[1], 16)) / 1048576;
      // Anonymous mappings of V8's heap pages are small; malloc's arenas and large buffers are not.
      name = m[3] ||
        (size < 1 ? "anon < 1 MiB (V8 pages)" : size < 63 ? "anon 1-63 MiB" : "anon >= 63 MiB");
    } else if (line.startsWith("Rss:")) {
      kinds.set(name, (kinds.get(name) ?? 0) + Number(line.split(/\s+/)[1]));
    }
  }
  const top = [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 7);
  console.error(
    `memory at end MiB: rss ${mib(mem.rss / 1024)} heapTotal ${mib(mem.heapTotal / 1024)} ` +
      `heapUsed ${mib(mem.heapUsed / 1024)} external ${mib(mem.external / 1024)}; ` +
      top.map(([k, v]) => `${k} ${mib(v)}`).join(", ") + "; V8 spaces " +
      getHeapSpaceStatistics().filter((sp) => sp.space_size >= 1 << 20)
        .map((sp) => `${sp.space_name} ${mib(sp.space_size / 1024)}`).join(", "),
  );
}

async function runChild(kind: string): Promise<{ results: Result[]; rss: number }> {
  const extra = kind === "base"
    ? [`--lsm-mod=${pathToFileURL(`${baseline}/lsm/mod.ts`).href}`]
    : [];
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      import.meta.filename!,
      `--child=${kind}`,
      ...extra,
      ...(quick ? ["--quick"] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
    env: Object.fromEntries(
      ["LSM_BENCH_STATS", "LSM_BENCH_OPTS", "LSM_BENCH_TIMES"].flatMap((k) => {
        const v = Deno.env.get(k);
        return v === undefined ? [] : [[k, v]];
      }),
    ),
  });
  const out = await cmd.output();
  if (!out.success) throw new Error(`${kind} benchmark process failed`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

if (childArg) {
  await child(childArg.slice(8));
} else {
  const kinds = baseline ? ["lsm", "level", "base"] : ["lsm", "level"];
  const runs: Record<string, { results: Result[]; rss: number }[]> = {};
  for (const k of kinds) runs[k] = [];
  const load = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
  const loads: string[] = [load()];
  for (let i = 0; i < rounds; i++) {
    // Rotate the order every round so no system always runs first (or right after another).
    const order = kinds.map((_, j) => kinds[(i + j) % kinds.length]);
    for (const kind of i % 2 === 0 ? order : order.reverse()) {
      console.error(`round ${i + 1}: running ${kind}... (load ${load()})`);
      runs[kind].push(await runChild(kind));
    }
    loads.push(load());
  }
  // Best of the rounds: the run least disturbed by the other jobs on the machine.
  const best = (kind: string, i: number) =>
    Math.max(...runs[kind].map((r) => (r.results[i].ops * 1000) / r.results[i].ms));
  const names = runs.lsm[0].results.map((r) => r.name);
  console.log(
    `${quick ? "quick" : "full"} run, ${rounds} round(s); ops/s (best of rounds); ` +
      `load average at round ends: ${loads.join(" | ")}`,
  );
  console.log(
    "workload".padEnd(30) + "gokv lsm".padStart(14) + "classic-level".padStart(16) +
      "ratio".padStart(9) + (baseline ? "base".padStart(14) + "lsm/base".padStart(10) : ""),
  );
  names.forEach((n, i) => {
    const a = best("lsm", i);
    const b = best("level", i);
    let line = n.padEnd(30) + Math.round(a).toLocaleString("en").padStart(14) +
      Math.round(b).toLocaleString("en").padStart(16) + (a / b).toFixed(2).padStart(9);
    if (baseline) {
      const c = best("base", i);
      line += Math.round(c).toLocaleString("en").padStart(14) + (a / c).toFixed(2).padStart(10);
    }
    console.log(line);
  });
  const mb = (x: number) => (x / 1048576).toFixed(0) + " MiB";
  const rss = (kind: string) => Math.min(...runs[kind].map((r) => r.rss));
  console.log(
    `RSS at end (lowest of rounds): lsm ${mb(rss("lsm"))}, level ${mb(rss("level"))}` +
      (baseline ? `, base ${mb(rss("base"))}` : "") +
      `; lsm/level ${(rss("lsm") / rss("level")).toFixed(2)}`,
  );
}
