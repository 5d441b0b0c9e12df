/**
 * The pure half of bench/scale_bench.ts: its command line, the shape of its results, and the
 * Markdown tables and SVG line charts written from them (no I/O, no clock; tested by
 * bench/scale_report_test.ts without running the benchmark).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { asUsageError, UsageError } from "../config/cli.ts";
import type { Result } from "./load_run.ts";

/** The parts of the scaling report, in the order they run. */
export const PARTS = ["value", "cluster", "data", "disk", "catchup"] as const;
/** One part of the scaling report. */
export type Part = typeof PARTS[number];

/** The value sizes of the `value` part, bytes. */
export const VALUE_SIZES = [100, 1024, 16 * 1024, 256 * 1024];

/** What bench:scale measures and how long. */
export interface ScaleOptions {
  /** The parts to run. */
  parts: Part[];
  /** A few-minute smoke run (small sizes, one round). */
  quick: boolean;
  /** Rounds of the alternated rows (value, cluster), best of them reported. */
  rounds: number;
  /** Concurrent clients of every measured run. */
  c: number;
  /** Whether etcd runs next to gokv in the value and cluster rows. */
  etcd: boolean;
  /** Key counts loaded for the data part. */
  dataKeys: number[];
  /** Minutes of overwrites in the disk part. */
  diskMinutes: number;
  /** MiB loaded before a node joins in the catchup part. */
  catchupMiB: number;
  /** Where the results go (JSON, Markdown, SVG). */
  out: string;
  /** Requests per measured run at 100-byte values (larger values: fewer, see {@link requestsFor}). */
  n: number;
}

/** The usage text of bench:scale. */
export const USAGE = `Usage: deno task bench:scale [flags]

gokv's scaling report: puts and gets vs value size, cluster size and data size, disk use over
overwrites of a fixed key space, and the time a new node takes to catch up from a snapshot.
3-node clusters of \`deno run main.ts\` processes on loopback (lsm backend), driven by
bench/gokv_load.ts; etcd (native clientv3 generator) alternated in the value and cluster rows.
Writes <out>/scale.json, scale.md and *.svg, and the tables into bench/README.md.

  --quick              a few-minute smoke run (small sizes, 1 round, 1-minute disk part)
  --only P,P,...       run only these parts (value, cluster, data, disk, catchup); the results
                       of the other parts are kept from <out>/scale.json
  --rounds R           rounds of the value and cluster rows (default 3; --quick 1)
  --c C                concurrent clients per run (default 64)
  --n N                requests per run at 100 B values (default 20000; --quick 3000)
  --no-etcd            gokv only
  --data-keys K,K      keys loaded in the data part (default 1000000,10000000;
                       --quick 100000,300000)
  --disk-minutes M     minutes of overwrites in the disk part (default 10; --quick 1)
  --catchup-mib M      MiB loaded before the new node joins (default 1024; --quick 64)
  --out DIR            results directory (default bench/results)
  -h, --help           this text`;

/**
 * Parses bench:scale's flags; `"help"` for --help. Throws {@link UsageError} for an unknown flag
 * or a bad value.
 */
export function parseScaleArgs(args: string[], defaultOut: string): ScaleOptions | "help" {
  let v;
  try {
    v = parseArgs({
      args,
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string" },
        rounds: { type: "string" },
        c: { type: "string", default: "64" },
        n: { type: "string" },
        "no-etcd": { type: "boolean", default: false },
        "data-keys": { type: "string" },
        "disk-minutes": { type: "string" },
        "catchup-mib": { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    throw asUsageError(e);
  }
  if (v.help) return "help";
  const positive = (flag: string, s: string): number => {
    if (!/^[1-9][0-9]*$/.test(s)) {
      throw new UsageError(`--${flag} must be a positive integer, got '${s}'`);
    }
    return Number(s);
  };
  const quick = v.quick;
  let parts: Part[] = [...PARTS];
  if (v.only !== undefined) {
    parts = v.only.split(",").map((p) => {
      if (!(PARTS as readonly string[]).includes(p)) {
        throw new UsageError(`--only takes ${PARTS.join(", ")}; got '${p}'`);
      }
      return p as Part;
    });
  }
  return {
    parts,
    quick,
    rounds: positive("rounds", v.rounds ?? (quick ? "1" : "3")),
    c: positive("c", v.c),
    n: positive("n", v.n ?? (quick ? "3000" : "20000")),
    etcd: !v["no-etcd"],
    dataKeys: (v["data-keys"] ?? (quick ? "100000,300000" : "1000000,10000000")).split(",")
      .map((k) => positive("data-keys", k)),
    diskMinutes: positive("disk-minutes", v["disk-minutes"] ?? (quick ? "1" : "10")),
    catchupMiB: positive("catchup-mib", v["catchup-mib"] ?? (quick ? "64" : "1024")),
    out: v.out ?? defaultOut,
  };
}

/**
 * Requests of one run at `vsize`-byte values: `n` up to 1 KiB values, then as many as move
 * `n` KiB (at least 500), so a 256 KiB run does not write gigabytes.
 */
export function requestsFor(n: number, vsize: number): number {
  return vsize <= 1024 ? n : Math.max(500, Math.round((n * 1024) / vsize));
}

/** When and under what load a part ran. */
export interface PartMeta {
  /** ISO date of the start. */
  date: string;
  /** The commit measured (`git describe --always --dirty`). */
  commit: string;
  /** 1-minute load average at the start and at the end. */
  load: [number, number];
  /** Whether it was a --quick run. */
  quick: boolean;
  /** Seconds the part took. */
  secs: number;
}

/** One measured run with the coordinates of its row. */
export interface Row extends Result {
  /** Cluster size. */
  nodes: number;
  /** Value size, bytes. */
  vsize: number;
  /** Key space. */
  keys: number;
}

/** A batched load of the data part. */
export interface LoadRow {
  /** Keys loaded. */
  keys: number;
  /** Value size, bytes. */
  vsize: number;
  /** Seconds the load took. */
  secs: number;
  /** Keys per second. */
  keysPerSec: number;
  /** The data directory of one node after the load (and its flushes), bytes. */
  nodeBytes: number;
}

/** One sample of the disk part. */
export interface DiskSample {
  /** Seconds since the overwrites started. */
  t: number;
  /** Bytes of each node's data directory, node 1 first. */
  nodes: number[];
  /** Overwrites acknowledged so far. */
  writes: number;
}

/** The results of bench:scale, part by part (a part absent: not measured yet). */
export interface ScaleResults {
  /** Puts and gets at each value size (gokv and etcd, 3 nodes). */
  value?: { meta: PartMeta; rows: Row[] };
  /** Puts and gets on 3 and 5 nodes (gokv and etcd). */
  cluster?: { meta: PartMeta; rows: Row[] };
  /** Batched loads, then puts and gets over the loaded key space. */
  data?: { meta: PartMeta; loads: LoadRow[]; rows: Row[] };
  /** Data directory sizes during overwrites of a fixed key space. */
  disk?: {
    meta: PartMeta;
    keys: number;
    vsize: number;
    /** The live data: keys × (key + value) bytes. */
    liveBytes: number;
    samples: DiskSample[];
  };
  /** A node added to a cluster holding `loadedBytes` catches up from a snapshot. */
  catchup?: {
    meta: PartMeta;
    loadedBytes: number;
    keys: number;
    vsize: number;
    /** The leader's applied index when the node was added. */
    leaderIndex: number;
    /** Seconds from the member add until the new node's applied index reached the leader's. */
    secs: number;
    /** The new node's snapshot index once caught up (> 0: it installed a snapshot). */
    snapshotIndex: number;
    /** The new node's data directory once caught up, bytes. */
    nodeBytes: number;
    /** [seconds since the add, the new node's applied index]. */
    progress: Array<[number, number]>;
  };
}

/** The best (highest throughput) of the rows of one system, op and coordinates. */
export function bestRows(rows: Row[]): Row[] {
  const best = new Map<string, Row>();
  for (const r of rows) {
    const k = `${r.system}|${r.op}|${r.nodes}|${r.vsize}|${r.keys}|${r.c}`;
    const b = best.get(k);
    if (!b || r.opsPerSec > b.opsPerSec) best.set(k, r);
  }
  return [...best.values()];
}

/** A byte count as B, KiB, MiB or GiB. */
export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${units[u]}`;
}

/** A Markdown table (right-aligned cells except the first column). */
export function mdTable(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map((_, i) => (i === 0 ? "---" : "---:"))), ...rows.map(line)]
    .join("\n");
}

function metaLine(m: PartMeta): string {
  return `_Measured ${m.date.slice(0, 16).replace("T", " ")} UTC at ${m.commit}${
    m.quick ? " (--quick)" : ""
  }, load average ${m.load[0].toFixed(1)} at the start and ${
    m.load[1].toFixed(1)
  } at the end (2 cores, shared), ${Math.round(m.secs)} s._`;
}

/** Rows of ops/s, p50, p99 and server CPU per op; `ratio` adds gokv/etcd throughput. */
function runTable(rows: Row[], key: (r: Row) => string, keyHead: string): string {
  const best = bestRows(rows);
  const out: (string | number)[][] = [];
  const keys = [...new Set(best.map(key))];
  for (const op of ["put", "get"]) {
    for (const k of keys) {
      const of = (sys: string) => best.find((r) => r.system === sys && r.op === op && key(r) === k);
      const g = of("gokv"), e = of("etcd");
      for (const r of [g, e]) {
        if (!r) continue;
        out.push([
          k,
          op,
          r.system,
          Math.round(r.opsPerSec),
          fmtBytes(r.opsPerSec * r.vsize) + "/s",
          r.p50.toFixed(2),
          r.p99.toFixed(2),
          Math.round(r.serverUsPerOp),
          r === g && e ? `×${(g.opsPerSec / e.opsPerSec).toFixed(2)}` : "",
        ]);
      }
    }
  }
  return mdTable(
    [keyHead, "op", "system", "ops/s", "payload", "p50 ms", "p99 ms", "server µs/op", "gokv/etcd"],
    out,
  );
}

/** The Markdown report of every part measured, with links to the plots in `svgDir`. */
export function markdown(r: ScaleResults, svgDir = "."): string {
  const s: string[] = [];
  const img = (name: string, alt: string) => `![${alt}](${svgDir}/${name})`;
  if (r.value) {
    s.push(
      "### Value size\n",
      `3 nodes, c=${r.value.rows[0]?.c ?? "?"}, best of the rounds, gokv and etcd alternated; ` +
        "payload = ops/s × value size.\n",
      metaLine(r.value.meta) + "\n",
      runTable(r.value.rows, (x) => fmtBytes(x.vsize), "value") + "\n",
      img("value_size.svg", "ops/s vs value size") + "\n",
    );
  }
  if (r.cluster) {
    s.push(
      "### Cluster size\n",
      `100-byte values, c=${r.cluster.rows[0]?.c ?? "?"}, best of the rounds, alternated.\n`,
      metaLine(r.cluster.meta) + "\n",
      runTable(r.cluster.rows, (x) => `${x.nodes} nodes`, "cluster") + "\n",
      img("cluster_size.svg", "ops/s vs cluster size") + "\n",
    );
  }
  if (r.data) {
    s.push(
      "### Data size\n",
      "3 nodes. Loaded in atomic commits of 1000 keys (100-byte values); then puts and gets of " +
        "keys scattered over the whole key space.\n",
      metaLine(r.data.meta) + "\n",
      mdTable(
        ["keys", "load s", "keys/s", "MiB/s", "node data dir"],
        r.data.loads.map((l) => [
          l.keys.toLocaleString("en-US"),
          l.secs.toFixed(1),
          Math.round(l.keysPerSec),
          ((l.keysPerSec * (l.vsize + 15)) / 2 ** 20).toFixed(1),
          fmtBytes(l.nodeBytes),
        ]),
      ) + "\n",
      runTable(r.data.rows, (x) => x.keys.toLocaleString("en-US"), "keys") + "\n",
      img("data_size.svg", "ops/s vs keys loaded") + "\n",
    );
  }
  if (r.disk) {
    const d = r.disk;
    const total = (x: DiskSample) => Math.max(...x.nodes);
    const last = d.samples[d.samples.length - 1];
    const peak = d.samples.reduce((m, x) => Math.max(m, total(x)), 0);
    const half = d.samples.filter((x) => x.t >= (last?.t ?? 0) / 2);
    const peak2 = half.reduce((m, x) => Math.max(m, total(x)), 0);
    s.push(
      "### Disk size under overwrites\n",
      `3 nodes, ${d.keys.toLocaleString("en-US")} keys of ${fmtBytes(d.vsize)} overwritten for ${
        Math.round((last?.t ?? 0) / 60)
      } minutes ` +
        `(${(last?.writes ?? 0).toLocaleString("en-US")} puts, ${
          Math.round((last?.writes ?? 0) / Math.max(1, last?.t ?? 1))
        } puts/s); live data ${fmtBytes(d.liveBytes)}; ` +
        "a node's data directory (Raft log + LSM) sampled every few seconds.\n",
      metaLine(d.meta) + "\n",
      mdTable(
        ["", "largest node"],
        [
          ["peak over the run", fmtBytes(peak)],
          ["peak over the second half", fmtBytes(peak2)],
          ["at the end", last ? fmtBytes(total(last)) : "-"],
          ["peak / live data", (peak / d.liveBytes).toFixed(1)],
        ],
      ) + "\n",
      img("disk_size.svg", "data directory size over time") + "\n",
    );
  }
  if (r.catchup) {
    const c = r.catchup;
    s.push(
      "### A new node catching up from a snapshot\n",
      `A 3-node cluster loaded with ${fmtBytes(c.loadedBytes)} (${
        c.keys.toLocaleString("en-US")
      } keys of ${fmtBytes(c.vsize)}, snapshot threshold 1000 entries so the log is ` +
        "compacted); a 4th node is added (member add, then started with `--join`) and timed " +
        "until its applied index reaches the leader's.\n",
      metaLine(c.meta) + "\n",
      mdTable(
        ["loaded", "leader index", "catch-up s", "MiB/s", "snapshot index", "new node's data dir"],
        [[
          fmtBytes(c.loadedBytes),
          c.leaderIndex,
          c.secs.toFixed(1),
          (c.loadedBytes / 2 ** 20 / c.secs).toFixed(1),
          c.snapshotIndex,
          fmtBytes(c.nodeBytes),
        ]],
      ) + "\n",
      img("catchup.svg", "new node's applied index over time") + "\n",
    );
  }
  return s.join("\n");
}

/** A series of a line chart. */
export interface Series {
  /** The legend. */
  name: string;
  /** [x, y] points, in x order. */
  points: Array<[number, number]>;
  /** Dashed line (e.g. the peer system). */
  dashed?: boolean;
}

/** A line chart. */
export interface Chart {
  /** The title above the plot. */
  title: string;
  /** The x axis label. */
  xLabel: string;
  /** The y axis label. */
  yLabel: string;
  /** Logarithmic x axis (value sizes, key counts). */
  xLog?: boolean;
  /** Tick labels of x values (default: the number). */
  xTick?: (x: number) => string;
  /** The lines. */
  series: Series[];
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Round tick values covering [0, max]. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = 0; t < max + step * 0.999; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

/** Short tick label: 1200 → 1.2k, 3000000 → 3M. */
export function shortNum(n: number): string {
  const f = (x: number, u: string) => `${Number(x.toPrecision(3))}${u}`;
  if (Math.abs(n) >= 1e6) return f(n / 1e6, "M");
  if (Math.abs(n) >= 1e3) return f(n / 1e3, "k");
  return String(Number(n.toPrecision(3)));
}

/** An SVG line chart of `c` (y from 0; x linear or logarithmic over the points' range). */
export function svgChart(c: Chart, width = 640, height = 360): string {
  const m = { l: 64, r: 150, t: 36, b: 48 };
  const pw = width - m.l - m.r, ph = height - m.t - m.b;
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = c.series.flatMap((s) => s.points.map((p) => p[1]));
  const tx = (x: number) => (c.xLog ? Math.log10(x) : x);
  let x0 = Math.min(...xs.map(tx)), x1 = Math.max(...xs.map(tx));
  if (!isFinite(x0) || !isFinite(x1)) [x0, x1] = [0, 1];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  const yTicks = niceTicks(Math.max(0, ...ys));
  const yMax = yTicks[yTicks.length - 1];
  const px = (x: number) => m.l + ((tx(x) - x0) / (x1 - x0)) * pw;
  const py = (y: number) => m.t + ph - (y / yMax) * ph;
  const f = (n: number) => n.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${m.l}" y="20" font-size="14" font-weight="bold">${esc(c.title)}</text>`,
  ];
  for (const t of yTicks) {
    out.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${f(py(t))}" y2="${f(py(t))}" stroke="#ddd"/>`,
      `<text x="${m.l - 6}" y="${f(py(t) + 4)}" text-anchor="end">${shortNum(t)}</text>`,
    );
  }
  const xTickVals = c.xLog || xs.length <= 12 ? [...new Set(xs)].sort((a, b) => a - b) : niceTicks(
    Math.max(...xs),
  );
  for (const t of xTickVals) {
    out.push(
      `<line x1="${f(px(t))}" x2="${f(px(t))}" y1="${m.t + ph}" y2="${
        m.t + ph + 4
      }" stroke="#333"/>`,
      `<text x="${f(px(t))}" y="${m.t + ph + 18}" text-anchor="middle">${
        esc(c.xTick ? c.xTick(t) : shortNum(t))
      }</text>`,
    );
  }
  out.push(
    `<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" stroke="#333"/>`,
    `<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#333"/>`,
    `<text x="${m.l + pw / 2}" y="${height - 10}" text-anchor="middle">${esc(c.xLabel)}</text>`,
    `<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${
      esc(c.yLabel)
    }</text>`,
  );
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    const pts = s.points.map(([x, y]) => `${f(px(x))},${f(py(y))}`).join(" ");
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${pts}"/>`,
      ...(s.points.length <= 40
        ? s.points.map(([x, y]) =>
          `<circle cx="${f(px(x))}" cy="${f(py(y))}" r="3" fill="${color}"/>`
        )
        : []),
      `<line x1="${m.l + pw + 12}" x2="${m.l + pw + 36}" y1="${m.t + 10 + i * 18}" ` +
        `y2="${m.t + 10 + i * 18}" stroke="${color}" stroke-width="2"${dash}/>`,
      `<text x="${m.l + pw + 42}" y="${m.t + 14 + i * 18}">${esc(s.name)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** The plots of every part measured: file name → SVG text. */
export function charts(r: ScaleResults): Record<string, string> {
  const files: Record<string, string> = {};
  const runSeries = (rows: Row[], x: (r: Row) => number): Series[] => {
    const best = bestRows(rows);
    const series: Series[] = [];
    for (const sys of ["gokv", "etcd"]) {
      for (const op of ["put", "get"]) {
        const pts = best.filter((r) => r.system === sys && r.op === op)
          .map((r): [number, number] => [x(r), r.opsPerSec]).sort((a, b) => a[0] - b[0]);
        if (pts.length) series.push({ name: `${sys} ${op}`, points: pts, dashed: sys !== "gokv" });
      }
    }
    return series;
  };
  if (r.value) {
    files["value_size.svg"] = svgChart({
      title: "ops/s vs value size (3 nodes)",
      xLabel: "value size",
      yLabel: "ops/s",
      xLog: true,
      xTick: fmtBytes,
      series: runSeries(r.value.rows, (x) => x.vsize),
    });
  }
  if (r.cluster) {
    files["cluster_size.svg"] = svgChart({
      title: "ops/s vs cluster size (100 B values)",
      xLabel: "nodes",
      yLabel: "ops/s",
      series: runSeries(r.cluster.rows, (x) => x.nodes),
    });
  }
  if (r.data) {
    files["data_size.svg"] = svgChart({
      title: "ops/s vs keys loaded (3 nodes, 100 B values)",
      xLabel: "keys loaded",
      yLabel: "ops/s",
      xLog: true,
      series: runSeries(r.data.rows, (x) => x.keys),
    });
  }
  if (r.disk) {
    const d = r.disk;
    const n = d.samples[0]?.nodes.length ?? 0;
    files["disk_size.svg"] = svgChart({
      title: `data directory size under overwrites (${d.keys} keys of ${fmtBytes(d.vsize)})`,
      xLabel: "seconds of overwrites",
      yLabel: "MiB",
      series: [
        ...Array.from({ length: n }, (_, i) => ({
          name: `node ${i + 1}`,
          points: d.samples.map((x): [number, number] => [x.t, x.nodes[i] / 2 ** 20]),
        })),
        {
          name: "live data",
          dashed: true,
          points: d.samples.length
            ? [[0, d.liveBytes / 2 ** 20], [
              d.samples[d.samples.length - 1].t,
              d.liveBytes / 2 ** 20,
            ]]
            : [],
        },
      ],
    });
  }
  if (r.catchup) {
    const c = r.catchup;
    files["catchup.svg"] = svgChart({
      title: `new node catching up (${fmtBytes(c.loadedBytes)} loaded)`,
      xLabel: "seconds since member add",
      yLabel: "applied index",
      series: [
        { name: "new node", points: c.progress },
        {
          name: "leader",
          dashed: true,
          points: c.progress.length
            ? [[0, c.leaderIndex], [c.progress[c.progress.length - 1][0], c.leaderIndex]]
            : [],
        },
      ],
    });
  }
  return files;
}

/** Replaces the text between `begin` and `end` markers in `doc` (appends both when absent). */
export function spliceBetween(doc: string, begin: string, end: string, text: string): string {
  const i = doc.indexOf(begin), j = doc.indexOf(end);
  if (i < 0 || j < i) return `${doc.trimEnd()}\n\n${begin}\n\n${text.trim()}\n\n${end}\n`;
  return `${doc.slice(0, i + begin.length)}\n\n${text.trim()}\n\n${doc.slice(j)}`;
}
