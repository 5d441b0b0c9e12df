/** bench:scale's pure half (bench/scale_report.ts) and its command line; nothing is measured. */
import assert from "node:assert/strict";
import { UsageError } from "../config/cli.ts";
import {
  bestRows,
  charts,
  fmtBytes,
  markdown,
  niceTicks,
  parseScaleArgs,
  PARTS,
  requestsFor,
  type Row,
  type ScaleResults,
  spliceBetween,
  svgChart,
} from "./scale_report.ts";

const meta = {
  date: "2026-12-02T05:00:00.000Z",
  commit: "abc1234",
  load: [2.5, 3.25] as [number, number],
  quick: false,
  secs: 61,
};

function row(system: string, op: string, over: Partial<Row> = {}): Row {
  return {
    system,
    op,
    c: 64,
    opsPerSec: 1000,
    p50: 1,
    p99: 5,
    errors: 0,
    serverUsPerOp: 100,
    nodes: 3,
    vsize: 100,
    keys: 10_000,
    ...over,
  };
}

Deno.test("parseScaleArgs: defaults, --quick, --only and explicit values", () => {
  const full = parseScaleArgs([], "/out");
  assert.notEqual(full, "help");
  if (full === "help") return;
  assert.deepEqual(full.parts, [...PARTS]);
  assert.equal(full.rounds, 3);
  assert.deepEqual(full.dataKeys, [1_000_000, 10_000_000]);
  assert.equal(full.diskMinutes, 10);
  assert.equal(full.catchupMiB, 1024);
  assert.equal(full.out, "/out");
  assert.equal(full.etcd, true);

  const quick = parseScaleArgs(["--quick", "--only", "disk,catchup", "--no-etcd"], "/out");
  if (quick === "help") throw new Error("help");
  assert.deepEqual(quick.parts, ["disk", "catchup"]);
  assert.equal(quick.rounds, 1);
  assert.equal(quick.diskMinutes, 1);
  assert.ok(quick.catchupMiB < full.catchupMiB);
  assert.equal(quick.etcd, false);

  const set = parseScaleArgs(
    ["--quick", "--rounds", "2", "--data-keys", "5,7", "--out", "x"],
    "/o",
  );
  if (set === "help") throw new Error("help");
  assert.equal(set.rounds, 2); // an explicit value wins over --quick's
  assert.deepEqual(set.dataKeys, [5, 7]);
  assert.equal(set.out, "x");

  assert.equal(parseScaleArgs(["--help"], "/out"), "help");
  assert.equal(parseScaleArgs(["-h"], "/out"), "help");
});

Deno.test("parseScaleArgs: an unknown flag or a bad value is a UsageError naming it", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--bogus"], /Unknown option '--bogus'/],
    [["--only", "value,speed"], /--only takes value, cluster, data, disk, catchup; got 'speed'/],
    [["--rounds", "0"], /--rounds must be a positive integer, got '0'/],
    [["--data-keys", "1000,x"], /--data-keys must be a positive integer, got 'x'/],
    [["--disk-minutes", "1.5"], /--disk-minutes must be a positive integer, got '1.5'/],
    [["--quick=yes"], /quick/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseScaleArgs(args, "/out"), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${args.join(" ")}: ${e}`);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("bench:scale --help exits 0 and a bad flag exits 2 with a message, starting nothing", async () => {
  const script = new URL("./scale_bench.ts", import.meta.url).pathname;
  const dec = new TextDecoder();
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--help"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(help.code, 0, dec.decode(help.stderr));
  assert.match(dec.decode(help.stdout), /Usage: deno task bench:scale/);
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--only", "nope"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(bad.code, 2);
  assert.match(dec.decode(bad.stderr), /bench:scale: --only takes .*got 'nope'/);
  assert.doesNotMatch(dec.decode(bad.stderr), /TypeError|at file:/);
});

Deno.test("requestsFor keeps n up to 1 KiB values and bounds the bytes moved above", () => {
  assert.equal(requestsFor(20_000, 100), 20_000);
  assert.equal(requestsFor(20_000, 1024), 20_000);
  assert.equal(requestsFor(20_000, 16 * 1024), 1250);
  assert.equal(requestsFor(20_000, 256 * 1024), 500); // the floor
});

Deno.test("bestRows keeps the fastest round of each system, op and coordinates", () => {
  const rows = [
    row("gokv", "put", { opsPerSec: 10 }),
    row("gokv", "put", { opsPerSec: 30 }),
    row("gokv", "put", { opsPerSec: 20 }),
    row("gokv", "put", { opsPerSec: 5, vsize: 1024 }),
    row("etcd", "put", { opsPerSec: 7 }),
  ];
  const best = bestRows(rows);
  assert.equal(best.length, 3);
  assert.equal(best.find((r) => r.system === "gokv" && r.vsize === 100)!.opsPerSec, 30);
});

Deno.test("fmtBytes and niceTicks", () => {
  assert.equal(fmtBytes(100), "100 B");
  assert.equal(fmtBytes(1024), "1.0 KiB");
  assert.equal(fmtBytes(256 * 1024), "256 KiB");
  assert.equal(fmtBytes(1.5 * 2 ** 30), "1.5 GiB");
  assert.deepEqual(niceTicks(100), [0, 20, 40, 60, 80, 100]);
  const t = niceTicks(12_345);
  assert.ok(t[t.length - 1] >= 12_345 && t[0] === 0, String(t));
});

Deno.test("markdown: a table per part measured with its date, commit, load and gokv/etcd ratio", () => {
  const r: ScaleResults = {
    value: {
      meta,
      rows: [
        row("gokv", "put", { opsPerSec: 3000 }),
        row("etcd", "put", { opsPerSec: 1500 }),
        row("gokv", "get", { opsPerSec: 9000, vsize: 1024 }),
      ],
    },
  };
  const md = markdown(r, "results");
  assert.match(md, /### Value size/);
  assert.match(md, /2026-12-02 05:00 UTC at abc1234, load average 2\.5 at the start and 3\.3/);
  assert.match(md, /\| 100 B \| put \| gokv \| 3000 \| .* \| ×2\.00 \|/);
  assert.match(md, /\| 1\.0 KiB \| get \| gokv \| 9000 \|/);
  assert.match(md, /!\[ops\/s vs value size\]\(results\/value_size\.svg\)/);
  assert.doesNotMatch(md, /### Cluster size|### Disk/); // parts not measured are absent
});

Deno.test("markdown: the disk part reports peaks against the live data", () => {
  const mib = 2 ** 20;
  const r: ScaleResults = {
    disk: {
      meta,
      keys: 1000,
      vsize: 1024,
      liveBytes: 10 * mib,
      samples: [
        { t: 0, nodes: [0, 0, 0], writes: 0 },
        { t: 100, nodes: [40 * mib, 35 * mib, 30 * mib], writes: 5000 },
        { t: 200, nodes: [25 * mib, 20 * mib, 30 * mib], writes: 10000 },
      ],
    },
  };
  const md = markdown(r);
  assert.match(md, /\| peak over the run \| 40\.0 MiB \|/);
  assert.match(md, /\| peak over the second half \| 40\.0 MiB \|/);
  assert.match(md, /\| at the end \| 30\.0 MiB \|/);
  assert.match(md, /\| peak \/ live data \| 4\.0 \|/);
  assert.match(md, /10,000 puts, 50 puts\/s/);
});

Deno.test("svgChart: well-formed SVG with one polyline per series, points mapped into the plot", () => {
  const svg = svgChart(
    {
      title: "t <&>",
      xLabel: "x",
      yLabel: "y",
      xLog: true,
      series: [
        { name: "a", points: [[100, 0], [10_000, 50]] },
        { name: "b", points: [[100, 100], [10_000, 25]], dashed: true },
      ],
    },
    640,
    360,
  );
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.match(svg, /t &lt;&amp;&gt;/);
  const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(lines.length, 2);
  // Plot area: x 64..490, y 36..312 (margins l 64, r 150, t 36, b 48); y axis 0..100.
  assert.equal(lines[0], "64.0,312.0 490.0,174.0");
  assert.equal(lines[1], "64.0,36.0 490.0,243.0");
  assert.equal((svg.match(/stroke-dasharray/g) ?? []).length, 2); // line + legend of "b"
  // Every opened element is closed (a cheap well-formedness check).
  assert.equal((svg.match(/<svg/g) ?? []).length, 1);
  assert.ok(!svg.includes("NaN"), svg);
});

Deno.test("charts: one SVG per part measured, none for an empty result", () => {
  assert.deepEqual(Object.keys(charts({})), []);
  const files = charts({
    cluster: { meta, rows: [row("gokv", "put"), row("gokv", "put", { nodes: 5 })] },
    catchup: {
      meta,
      loadedBytes: 2 ** 30,
      keys: 1,
      vsize: 1,
      leaderIndex: 100,
      secs: 10,
      snapshotIndex: 90,
      nodeBytes: 1,
      progress: [[0, 0], [5, 50], [10, 100]],
    },
  });
  assert.deepEqual(Object.keys(files).sort(), ["catchup.svg", "cluster_size.svg"]);
  for (const svg of Object.values(files)) assert.ok(!svg.includes("NaN"), svg);
});

Deno.test("spliceBetween replaces the marked section, or appends it once", () => {
  const doc = "# T\n\nintro\n";
  const once = spliceBetween(doc, "<!-- b -->", "<!-- e -->", "one");
  assert.equal(once, "# T\n\nintro\n\n<!-- b -->\n\none\n\n<!-- e -->\n");
  const twice = spliceBetween(once + "after\n", "<!-- b -->", "<!-- e -->", "two\n");
  assert.equal(twice, "# T\n\nintro\n\n<!-- b -->\n\ntwo\n\n<!-- e -->\nafter\n");
});
