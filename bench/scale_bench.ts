/**
 * gokv's scaling report (`deno task bench:scale`): clusters of real `deno run main.ts` processes on
 * loopback (lsm backend, bench/gokv_cluster.ts), driven by gokv's own client in a separate
 * generator process (bench/gokv_load.ts, the closed loop of bench/closed_loop.ts), server CPU from
 * /proc (bench/load_run.ts). Parts (`--only` picks some; the others' results are kept):
 *
 * - `value`: puts and gets at 100 B, 1 KiB, 16 KiB and 256 KiB values, 3 nodes, against etcd
 *   (native clientv3 generator, bench/etcd_cluster.ts) alternated, best of `--rounds`.
 * - `cluster`: puts and gets on 3 and 5 nodes, gokv and etcd, alternated.
 * - `data`: a fresh cluster per size loads 1M and 10M keys in atomic commits of 1000 keys (the
 *   load rate is reported), then puts and gets scattered over the whole key space.
 * - `disk`: a fixed key space overwritten for 10 minutes; every node's data directory (Raft log
 *   and LSM) sampled every 5 s: bounded when log compaction and LSM compaction keep up.
 * - `catchup`: a cluster holding ~1 GiB (log compacted behind a snapshot), a 4th node added
 *   (member add, `--join`), timed until its applied index reaches the leader's.
 *
 * Writes bench/results/scale.json (every part with its date, commit and load average),
 * scale.md and one SVG plot per part, and splices the tables into bench/README.md. The pure half
 * (flags, tables, plots) is bench/scale_report.ts.
 *
 * Usage: deno task bench:scale [--quick] [--only value,cluster,data,disk,catchup] [--help] ...
 *
 * @module
 */
import { join, relative, resolve } from "node:path";
import { EXIT_OK, EXIT_USAGE, UsageError } from "../config/cli.ts";
import { Client } from "../client/client.ts";
import { type GokvCluster, ROOT, startGokv } from "./gokv_cluster.ts";
import { etcdAvailable, type EtcdCluster, etcdload, startEtcd } from "./etcd_cluster.ts";
import { fmtRow, run, type System } from "./load_run.ts";
import {
  charts,
  type DiskSample,
  fmtBytes,
  type LoadRow,
  markdown,
  parseScaleArgs,
  type Part,
  type PartMeta,
  requestsFor,
  type Row,
  type ScaleOptions,
  type ScaleResults,
  spliceBetween,
  USAGE,
  VALUE_SIZES,
} from "./scale_report.ts";

let opts: ScaleOptions;
try {
  const parsed = parseScaleArgs(Deno.args, join(ROOT, "bench", "results"));
  if (parsed === "help") {
    console.log(USAGE);
    Deno.exit(EXIT_OK);
  }
  opts = parsed;
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  console.error(`bench:scale: ${e.message}\n\n${USAGE}`);
  Deno.exit(EXIT_USAGE);
}
const OUT = resolve(opts.out);
const RESULTS = join(OUT, "scale.json");
const README = join(ROOT, "bench", "README.md");
const GENERATOR = join(ROOT, "bench", "gokv_load.ts");
const KEY_BYTES = 15; // "key" + 12 digits (bench/gokv_load.ts)

/** The 1-minute load average. */
function loadavg(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

/** The commit measured (at the start: the results written later make the tree dirty). */
const COMMIT = commit();
function commit(): string {
  const out = new Deno.Command("git", {
    args: ["describe", "--always", "--dirty"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  return new TextDecoder().decode(out.stdout).trim() || "unknown";
}

/** Bytes of the files under `dir` (files removed while walking are skipped). */
async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  try {
    for await (const e of Deno.readDir(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) total += await dirBytes(p);
      else if (e.isFile) total += await Deno.stat(p).then((s) => s.size, () => 0);
    }
  } catch { /* removed meanwhile */ }
  return total;
}

const nodeDir = (g: GokvCluster, id: number) => join(g.dataDir, `node-${id}`);

/** gokv driven by bench/gokv_load.ts with these workload flags. */
function gokvSystem(g: GokvCluster, flags: string[]): System {
  return {
    name: "gokv",
    pids: () => Promise.resolve(g.pids),
    generator: (op, c) => [
      Deno.execPath(),
      "run",
      "-A",
      GENERATOR,
      "--endpoints",
      g.endpoints.join(","),
      "--op",
      op,
      "--c",
      String(c),
      ...flags,
    ],
  };
}

/** The etcd generator binary, or undefined (etcd skipped, with a note). */
async function etcdGenerator(): Promise<string | undefined> {
  if (!opts.etcd) return undefined;
  if (!await etcdAvailable()) {
    console.error("etcd not installed (apt-get install -y etcd-server etcd-client): gokv only");
    return undefined;
  }
  return await etcdload();
}

/** etcd driven by its native generator with these workload flags. */
function etcdSystem(bin: string, e: EtcdCluster, flags: string[]): System {
  return {
    name: "etcd",
    pids: () => Promise.resolve(e.pids),
    generator: (op, c) => [
      bin,
      "--endpoints",
      e.endpoints.join(","),
      "--op",
      op,
      "--c",
      String(c),
      ...flags,
    ],
  };
}

/** etcd for the value rows: 256 KiB values overwritten for rounds need more than its 2 GiB. */
const ETCD_OPTS = { quotaBytes: 8 * 2 ** 30, compactRevisions: 1000 };

const workload = (n: number, keys: number, vsize: number) => [
  "--n",
  String(n),
  "--keys",
  String(keys),
  "--vsize",
  String(vsize),
];

/** Runs one measured generator run and labels it with its row's coordinates. */
async function measure(
  sys: System,
  op: string,
  n: number,
  at: { nodes: number; vsize: number; keys: number },
): Promise<Row> {
  const r = await run(sys, op, opts.c, n);
  console.log(`${fmtRow(r)}  [${at.nodes} nodes, ${fmtBytes(at.vsize)}, ${at.keys} keys]`);
  return { ...r, ...at };
}

async function valuePart(): Promise<Row[]> {
  const bin = await etcdGenerator();
  const gokv = await startGokv();
  const etcd = bin ? await startEtcd(ETCD_OPTS) : undefined;
  const rows: Row[] = [];
  try {
    for (let round = 0; round < opts.rounds; round++) {
      for (const vsize of VALUE_SIZES) {
        const n = requestsFor(opts.n, vsize);
        const keys = Math.min(10_000, n);
        const flags = workload(n, keys, vsize);
        const systems = [gokvSystem(gokv, flags), ...(etcd ? [etcdSystem(bin!, etcd, flags)] : [])];
        if (round % 2 === 1) systems.reverse();
        for (const op of ["put", "get"]) {
          for (const sys of systems) {
            rows.push(await measure(sys, op, n, { nodes: 3, vsize, keys }));
          }
        }
      }
    }
  } finally {
    await gokv.stop();
    await etcd?.stop();
  }
  return rows;
}

async function clusterPart(): Promise<Row[]> {
  const bin = await etcdGenerator();
  const sizes = [3, 5];
  const gokvs = new Map<number, GokvCluster>();
  const etcds = new Map<number, EtcdCluster>();
  const rows: Row[] = [];
  try {
    for (const s of sizes) {
      gokvs.set(s, await startGokv({ nodes: s }));
      if (bin) etcds.set(s, await startEtcd({ ...ETCD_OPTS, members: s }));
    }
    const keys = 10_000, vsize = 100;
    const flags = workload(opts.n, keys, vsize);
    for (let round = 0; round < opts.rounds; round++) {
      const order: Array<[number, System]> = sizes.flatMap((s) => [
        [s, gokvSystem(gokvs.get(s)!, flags)] as [number, System],
        ...(etcds.has(s) ? [[s, etcdSystem(bin!, etcds.get(s)!, flags)] as [number, System]] : []),
      ]);
      if (round % 2 === 1) order.reverse();
      for (const op of ["put", "get"]) {
        for (const [nodes, sys] of order) {
          rows.push(await measure(sys, op, opts.n, { nodes, vsize, keys }));
        }
      }
    }
  } finally {
    for (const g of gokvs.values()) await g.stop();
    for (const e of etcds.values()) await e.stop();
  }
  return rows;
}

/** Runs bench/gokv_load.ts once (no CPU sampling) and returns its JSON line. */
async function generate(g: GokvCluster, args: string[]): Promise<Record<string, number>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", GENERATOR, "--endpoints", g.endpoints.join(","), ...args],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success) throw new Error(`generator failed: ${text}`);
  return JSON.parse(text);
}

async function dataPart(): Promise<{ loads: LoadRow[]; rows: Row[] }> {
  const loads: LoadRow[] = [], rows: Row[] = [];
  const vsize = 100;
  for (const keys of opts.dataKeys) {
    const g = await startGokv();
    try {
      console.log(`loading ${keys} keys ...`);
      const t0 = performance.now();
      const r = await generate(g, ["--op", "load", "--c", "8", ...workload(1, keys, vsize)]);
      const secs = (performance.now() - t0) / 1000;
      const load: LoadRow = {
        keys,
        vsize,
        secs,
        keysPerSec: r.keys_per_s,
        nodeBytes: await dirBytes(nodeDir(g, 1)),
      };
      console.log(
        `loaded ${keys} keys in ${
          secs.toFixed(1)
        } s (${r.keys_per_s} keys/s, generator ${r.gen_cpu_pct}% cpu, ` +
          `errors ${r.errors}); node 1 holds ${fmtBytes(load.nodeBytes)}`,
      );
      loads.push(load);
      const sys = gokvSystem(g, [...workload(opts.n, keys, vsize), "--no-preload", "--spread"]);
      for (let round = 0; round < opts.rounds; round++) {
        for (const op of round % 2 === 0 ? ["get", "put"] : ["put", "get"]) {
          rows.push(await measure(sys, op, opts.n, { nodes: 3, vsize, keys }));
        }
      }
    } finally {
      await g.stop();
    }
  }
  return { loads, rows };
}

async function diskPart(): Promise<Omit<NonNullable<ScaleResults["disk"]>, "meta">> {
  const keys = opts.quick ? 10_000 : 100_000, vsize = 1024;
  const g = await startGokv();
  const samples: DiskSample[] = [];
  let writes = 0;
  const t0 = performance.now();
  const sample = async () => {
    const nodes = await Promise.all(g.pids.map((_, i) => dirBytes(nodeDir(g, i + 1))));
    samples.push({ t: (performance.now() - t0) / 1000, nodes, writes });
  };
  let sampling = Promise.resolve();
  const timer = setInterval(() => sampling = sampling.then(sample), 5_000);
  try {
    await sample();
    // Each run overwrites the whole key space once, in key order.
    while (performance.now() - t0 < opts.diskMinutes * 60_000) {
      const r = await generate(g, [
        "--op",
        "put",
        "--c",
        String(opts.c),
        ...workload(keys, keys, vsize),
      ]);
      writes += keys - r.errors;
      console.log(
        `disk: ${
          Math.round((performance.now() - t0) / 1000)
        } s, ${writes} puts (${r.ops_per_s}/s), ` +
          `node data dirs ${samples[samples.length - 1].nodes.map(fmtBytes).join(", ")}`,
      );
    }
    clearInterval(timer);
    await sampling;
    await sample();
  } finally {
    clearInterval(timer);
    await g.stop();
  }
  return { keys, vsize, liveBytes: keys * (KEY_BYTES + vsize), samples };
}

async function catchupPart(): Promise<Omit<NonNullable<ScaleResults["catchup"]>, "meta">> {
  const vsize = 16 * 1024;
  const batch = 48; // 48 × 16 KiB fits an atomic commit (800 KiB)
  const keys = Math.ceil((opts.catchupMiB * 2 ** 20) / vsize);
  const threshold = 1000;
  const g = await startGokv({ snapshotThreshold: threshold });
  const client = await Client.connect({ endpoints: g.endpoints, timeoutMs: 60_000 });
  try {
    console.log(`catchup: loading ${keys} keys of ${fmtBytes(vsize)} ...`);
    const r = await generate(g, [
      "--op",
      "load",
      "--c",
      "4",
      "--batch",
      String(batch),
      ...workload(1, keys, vsize),
    ]);
    console.log(`loaded in ${(Math.ceil(keys / batch) / r.ops_per_s).toFixed(1)} s`);
    // Small writes until the leader's latest snapshot covers everything loaded, so the new node
    // gets the whole data set as a snapshot (and only small entries through the log).
    const loadedIndex = (await client.status()).appliedIndex;
    const small = new Uint8Array(8);
    for (let i = 0;; i++) {
      const st = await client.status();
      if (st.snapshotIndex >= loadedIndex) break;
      await Promise.all(
        Array.from(
          { length: 64 },
          (_, w) => client.put(new TextEncoder().encode(`tick${w}`), small),
        ),
      );
      if (i % 50 === 0) {
        console.log(`catchup: snapshot index ${st.snapshotIndex} of ${loadedIndex}`);
      }
    }
    const t0 = performance.now();
    const added = await g.addNode();
    const leaderIndex = (await client.status()).appliedIndex;
    console.log(`catchup: node ${added.id} added; leader applied index ${leaderIndex}`);
    const progress: Array<[number, number]> = [];
    let snapshotIndex = 0;
    const deadline = t0 + (opts.quick ? 5 : 30) * 60_000;
    for (;;) {
      const t = (performance.now() - t0) / 1000;
      try {
        const st = await client.status(added.client, { timeoutMs: 2_000 });
        progress.push([t, st.appliedIndex]);
        snapshotIndex = st.snapshotIndex;
        if (st.appliedIndex >= leaderIndex) break;
      } catch { /* starting or busy installing */ }
      if (performance.now() > deadline) throw new Error("the new node did not catch up in time");
      await new Promise((res) => setTimeout(res, 100));
    }
    const secs = (performance.now() - t0) / 1000;
    console.log(`catchup: caught up in ${secs.toFixed(1)} s (snapshot index ${snapshotIndex})`);
    return {
      loadedBytes: keys * (KEY_BYTES + vsize),
      keys,
      vsize,
      leaderIndex,
      secs,
      snapshotIndex,
      nodeBytes: await dirBytes(nodeDir(g, added.id)),
      progress,
    };
  } finally {
    await client.close();
    await g.stop();
  }
}

/** Writes the JSON, the Markdown, the plots and the README tables. */
async function save(results: ScaleResults): Promise<void> {
  await Deno.mkdir(OUT, { recursive: true });
  await Deno.writeTextFile(RESULTS, JSON.stringify(results, null, 2) + "\n");
  const md = markdown(results, ".");
  await Deno.writeTextFile(join(OUT, "scale.md"), `# bench:scale results\n\n${md}`);
  for (const [name, svg] of Object.entries(charts(results))) {
    await Deno.writeTextFile(join(OUT, name), svg);
  }
  // The README embeds the tables (plots linked relative to bench/) when the results are the
  // committed ones.
  const rel = relative(join(ROOT, "bench"), OUT);
  if (!rel.startsWith("..")) {
    const doc = await Deno.readTextFile(README).catch(() => "");
    await Deno.writeTextFile(
      README,
      spliceBetween(doc, "<!-- scale:begin -->", "<!-- scale:end -->", markdown(results, rel)),
    );
  }
  // Committed files stay `deno fmt --check` clean (it aligns the tables, wraps the SVG).
  await new Deno.Command(Deno.execPath(), {
    args: [
      "fmt",
      "--quiet",
      RESULTS,
      join(OUT, "scale.md"),
      ...Object.keys(charts(results)).map((name) => join(OUT, name)),
      ...(rel.startsWith("..") ? [] : [README]),
    ],
    cwd: ROOT,
  }).output();
}

let results: ScaleResults = {};
try {
  results = JSON.parse(await Deno.readTextFile(RESULTS));
} catch { /* first run */ }
const runners = {
  value: async () => ({ rows: await valuePart() }),
  cluster: async () => ({ rows: await clusterPart() }),
  data: dataPart,
  disk: diskPart,
  catchup: catchupPart,
} satisfies { [P in Part]: () => Promise<Omit<NonNullable<ScaleResults[P]>, "meta">> };
for (const part of opts.parts) {
  const started = performance.now();
  const meta: PartMeta = {
    date: new Date().toISOString(),
    commit: COMMIT,
    load: [loadavg(), 0],
    quick: opts.quick,
    secs: 0,
  };
  console.log(`== ${part} (load average ${meta.load[0]}) ==`);
  const data = await runners[part]();
  meta.load[1] = loadavg();
  meta.secs = (performance.now() - started) / 1000;
  (results as Record<Part, unknown>)[part] = { ...data, meta };
  await save(results);
}
console.log(`\n${markdown(results, relative(Deno.cwd(), OUT) || ".")}`);
Deno.exit(0);
