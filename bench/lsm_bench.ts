/**
 * LSM engine benchmark: gokv lsm/ vs classic-level (LevelDB) from the same
 * runtime. Each engine runs the whole workload sequence in its own process;
 * runs alternate between engines. Usage:
 *   deno run -A bench/lsm_bench.ts [--quick] [--rounds=N]
 * (or LSM_BENCH_QUICK=1). Prints ops/s per workload and the lsm/level ratio.
 */
import { LsmDb } from "../lsm/mod.ts";
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
  if (kind === "lsm") {
    const db = await LsmDb.open(dir);
    return {
      batch: (ops) =>
        db.write(ops.map((o) => ({ type: "put" as const, key: o.key, value: o.value }))),
      put: (k, v, sync) => db.put(k, v, { sync }),
      progress: () => {
        const st = db.stats();
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
      if (Deno.env.get("LSM_BENCH_STATS")) console.error(`${name}: ${db.progress()}`);
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
    const rss = Deno.memoryUsage().rss;
    console.log(JSON.stringify({ results, rss, found }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function runChild(kind: string): Promise<{ results: Result[]; rss: number }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", import.meta.filename!, `--child=${kind}`, ...(quick ? ["--quick"] : [])],
    stdout: "piped",
    stderr: "inherit",
    env: Deno.env.get("LSM_BENCH_STATS") ? { LSM_BENCH_STATS: "1" } : {},
  });
  const out = await cmd.output();
  if (!out.success) throw new Error(`${kind} benchmark process failed`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

if (childArg) {
  await child(childArg.slice(8));
} else {
  const runs: Record<string, { results: Result[]; rss: number }[]> = { lsm: [], level: [] };
  for (let i = 0; i < rounds; i++) {
    for (const kind of i % 2 === 0 ? ["lsm", "level"] : ["level", "lsm"]) {
      console.error(`round ${i + 1}: running ${kind}...`);
      runs[kind].push(await runChild(kind));
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rate = (kind: string, i: number) =>
    median(runs[kind].map((r) => (r.results[i].ops * 1000) / r.results[i].ms));
  const names = runs.lsm[0].results.map((r) => r.name);
  console.log(`${quick ? "quick" : "full"} run, ${rounds} round(s); ops/s (median)`);
  console.log(
    "workload".padEnd(30) + "gokv lsm".padStart(14) + "classic-level".padStart(16) +
      "ratio".padStart(9),
  );
  names.forEach((n, i) => {
    const a = rate("lsm", i);
    const b = rate("level", i);
    console.log(
      n.padEnd(30) + Math.round(a).toLocaleString("en").padStart(14) +
        Math.round(b).toLocaleString("en").padStart(16) + (a / b).toFixed(2).padStart(9),
    );
  });
  const mb = (x: number) => (x / 1048576).toFixed(0) + " MiB";
  console.log(
    `peak-ish RSS at end: lsm ${mb(median(runs.lsm.map((r) => r.rss)))}, level ${
      mb(median(runs.level.map((r) => r.rss)))
    }`,
  );
}
