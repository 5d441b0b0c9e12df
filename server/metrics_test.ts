import assert from "node:assert/strict";
import { MemoryLogStore } from "../storage/memory_log.ts";
import { MemoryStateMachine } from "../storage/memory_sm.ts";
import type { Transport } from "../raft/transport.ts";
import { type Message, MessageType } from "../raft/types.ts";
import { Histogram, LATENCY_BUCKETS, LatencyHistogram, Registry } from "./metrics.ts";
import {
  countingStateMachine,
  countingTransport,
  createServerMetrics,
  httpRoute,
  timedLogStore,
} from "./server_metrics.ts";

interface Family {
  type: string;
  help: boolean;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

/** Parses Prometheus text format 0.0.4 strictly enough to check its rules. */
function parseExposition(text: string): Map<string, Family> {
  const fams = new Map<string, Family>();
  let current: string | undefined;
  assert.ok(text.endsWith("\n"), "ends with a newline");
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) {
      assert.ok(!fams.has(m[1]), `one HELP for ${m[1]}`);
      fams.set(m[1], { type: "", help: true, samples: [] });
      current = m[1];
      continue;
    }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      assert.equal(m[1], current, `TYPE ${m[1]} follows its HELP`);
      fams.get(m[1])!.type = m[2];
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `sample line: ${JSON.stringify(line)}`);
    const name = m[1];
    assert.ok(
      current && (name === current || name.startsWith(current + "_")),
      `${name} belongs to the family above it (${current})`,
    );
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)",?/y;
      let pos = 0;
      while (pos < m[3].length) {
        re.lastIndex = pos;
        const l = re.exec(m[3]);
        assert.ok(l, `label syntax in ${line}`);
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
        pos = re.lastIndex;
      }
    }
    const value = m[4] === "+Inf" ? Infinity : Number(m[4]);
    assert.ok(!Number.isNaN(value), `value of ${line}`);
    fams.get(current!)!.samples.push({ name, labels, value });
  }
  return fams;
}

/** Checks the type rules: counters end in _total, histograms have cumulative buckets ending
 * with le="+Inf" equal to _count, and a _sum. */
function checkRules(fams: Map<string, Family>): void {
  for (const [name, f] of fams) {
    assert.ok(f.help && f.type, `${name} has HELP and TYPE`);
    if (f.type === "counter") assert.match(name, /_total$/, `counter ${name} is named _total`);
    if (name.endsWith("_total")) assert.equal(f.type, "counter", `${name} is a counter`);
    if (f.type !== "histogram") continue;
    const series = new Map<string, typeof f.samples>();
    for (const s of f.samples) {
      const { le: _, ...rest } = s.labels;
      const k = JSON.stringify(Object.entries(rest).sort());
      if (!series.has(k)) series.set(k, []);
      series.get(k)!.push(s);
    }
    for (const [k, ss] of series) {
      const buckets = ss.filter((s) => s.name === `${name}_bucket`);
      assert.ok(buckets.length >= 2, `${name}${k} has buckets`);
      let prevLe = -Infinity;
      let prev = 0;
      for (const b of buckets) {
        const le = b.labels.le === "+Inf" ? Infinity : Number(b.labels.le);
        assert.ok(le > prevLe, `${name} buckets ascend`);
        assert.ok(b.value >= prev, `${name} buckets are cumulative`);
        prevLe = le;
        prev = b.value;
      }
      assert.equal(buckets.at(-1)!.labels.le, "+Inf", `${name} ends with le="+Inf"`);
      const count = ss.find((s) => s.name === `${name}_count`);
      assert.ok(ss.some((s) => s.name === `${name}_sum`), `${name}_sum`);
      assert.equal(count?.value, buckets.at(-1)!.value, `${name}: +Inf bucket equals _count`);
    }
  }
}

function lsmStats() {
  return {
    backend: "lsm",
    sessions: 4,
    lsm: {
      levels: [{ level: 0, files: 2, bytes: 700 }, { level: 1, files: 1, bytes: 9000 }],
      compactions: 3,
      flushes: 5,
      cacheHits: 10,
      cacheMisses: 2,
      memtableBytes: 1234,
      writeStallMs: 1500,
    },
  };
}

Deno.test("the node's metrics follow the text format's rules and types", async () => {
  const m = createServerMetrics({
    raft: () => ({ term: 3, commit: 10, applied: 9, isLeader: true, logSize: 7, snapshotIndex: 2 }),
    storage: lsmStats,
  });
  m.proposals.inc();
  m.requestSeconds.observe({ op: "put" }, 0.002);
  m.requestSeconds.observe({ op: "put" }, 3);
  m.requestErrors.inc({ op: "get", status: "timeout" });
  m.fsyncSeconds.observe(0.001);
  m.observeHttp("PUT", "/v1/kv/some/key", 200, 0.004);
  m.observeHttp("GET", "/v1/kv/x", 404, 0.001);
  m.observeHttp("BREW", '/nope"\n', 404, 0.001);
  m.raftMessagesSent.inc({ type: "App" });
  m.snapshotSeconds.observe({ kind: "create" }, 0.3);
  m.lsmBackgroundSeconds.observe({ kind: "compaction" }, 1.2);
  const text = await m.scrape();
  const fams = parseExposition(text);
  checkRules(fams);
  assert.equal(fams.has("gokv_storage_stat"), false, "no catch-all storage gauge");
  const v = (name: string, labels: Record<string, string> = {}) =>
    [...fams.values()].flatMap((f) => f.samples).find((s) =>
      s.name === name && Object.entries(labels).every(([k, x]) => s.labels[k] === x)
    )?.value;
  assert.equal(v("gokv_raft_term"), 3);
  assert.equal(v("gokv_raft_snapshot_index"), 2);
  assert.equal(v("gokv_sm_sessions"), 4);
  assert.equal(v("gokv_lsm_level_bytes", { level: "1" }), 9000);
  assert.equal(v("gokv_lsm_level_files", { level: "0" }), 2);
  assert.equal(v("gokv_lsm_compactions_total"), 3);
  assert.equal(v("gokv_lsm_flushes_total"), 5);
  assert.equal(v("gokv_lsm_write_stall_seconds_total"), 1.5);
  assert.equal(v("gokv_lsm_memtable_bytes"), 1234);
  assert.equal(v("gokv_request_seconds_count", { op: "put" }), 2);
  assert.equal(v("gokv_request_seconds_bucket", { op: "put", le: "0.0025" }), 1);
  assert.equal(
    v("gokv_http_requests_total", { method: "PUT", route: "/v1/kv/{key}", status: "200" }),
    1,
  );
  assert.equal(
    v("gokv_http_request_seconds_count", { method: "GET", route: "/v1/kv/{key}", status: "404" }),
    1,
  );
  assert.equal(
    v("gokv_http_requests_total", { method: "other", route: "other", status: "404" }),
    1,
  );
  assert.equal(v("gokv_raft_messages_sent_total", { type: "App" }), 1);
  assert.equal(v("gokv_raft_snapshot_seconds_count", { kind: "create" }), 1);
  assert.equal(v("gokv_lsm_background_seconds_count", { kind: "compaction" }), 1);
  // A second scrape mirrors the LSM counters again, it does not add them up.
  const again = parseExposition(await m.scrape());
  assert.equal(
    again.get("gokv_lsm_compactions_total")!.samples[0].value,
    3,
    "mirrored, not accumulated",
  );
});

Deno.test("label values are escaped as the text format requires", async () => {
  const r = new Registry();
  const h = new Histogram({
    name: "x_seconds",
    help: "Help with a \\ backslash\nand a newline.",
    labelNames: ["v"],
    buckets: [1],
    registers: [r],
  });
  h.observe({ v: 'a"b\\c\nd' }, 0.5);
  const text = await r.metrics();
  assert.match(text, /^# HELP x_seconds Help with a \\\\ backslash\\nand a newline\.$/m);
  assert.match(text, /^x_seconds_bucket\{le="1",v="a\\"b\\\\c\\nd"\} 1$/m);
  const fams = parseExposition(text);
  checkRules(fams);
  assert.equal(fams.get("x_seconds")!.samples[0].labels.v, 'a"b\\c\nd');
});

Deno.test("HTTP route labels are templates: no client-chosen label values", () => {
  assert.equal(httpRoute("/v1/kv/user%2F1"), "/v1/kv/{key}");
  assert.equal(httpRoute("/v1/kv"), "/v1/kv");
  assert.equal(httpRoute("/v1/members/3"), "/v1/members/{id}");
  assert.equal(httpRoute("/v1/status"), "/v1/status");
  assert.equal(httpRoute("/metrics"), "/metrics");
  assert.equal(httpRoute("/ui/app.js"), "/ui");
  assert.equal(httpRoute("/random/" + "x".repeat(100)), "other");
  assert.equal(httpRoute('/v1/"x'), "other");
});

Deno.test("a timed log store measures every sync and delegates everything else", async () => {
  const h = new Histogram({ name: "x", help: "x", registers: [] });
  const log = timedLogStore(new MemoryLogStore(), h);
  log.append([{ term: 1, index: 1, type: 0, data: new Uint8Array([1]) }]);
  await log.sync();
  await log.sync();
  assert.equal((await h.get()).values.find((x) => x.metricName === "x_count")?.value, 2);
  assert.equal(log.lastIndex(), 1);
  assert.equal(log.term(1), 1);
});

Deno.test("the transport and state machine wrappers count messages by type and time snapshots", async () => {
  const m = createServerMetrics({
    raft: () => ({ term: 0, commit: 0, applied: 0, isLeader: false, logSize: 0 }),
    storage: () => ({}),
  });
  // A loopback fake: what one side sends arrives at the other's handler.
  let deliver: (m: Message) => void = () => {};
  const sentRaw: Message[] = [];
  const fake: Transport = {
    start: (h) => {
      deliver = h;
      return Promise.resolve();
    },
    send: (msgs) => sentRaw.push(...msgs),
    addPeer: () => {},
    removePeer: () => {},
    close: () => Promise.resolve(),
  };
  const got: Message[] = [];
  const t = countingTransport(fake, m);
  await t.start((msg) => got.push(msg));
  const msg = (type: MessageType) => ({ type, from: 1, to: 2 }) as unknown as Message;
  t.send([msg(MessageType.App), msg(MessageType.App), msg(MessageType.Heartbeat)]);
  assert.equal(sentRaw.length, 3, "delegated");
  for (const x of sentRaw.slice(0, 2)) deliver(x);
  assert.equal(got.length, 2, "delivered to the handler");
  const text = await m.scrape();
  assert.match(text, /^gokv_raft_messages_sent_total\{type="App"\} 2$/m);
  assert.match(text, /^gokv_raft_messages_sent_total\{type="Heartbeat"\} 1$/m);
  assert.match(text, /^gokv_raft_messages_received_total\{type="App"\} 2$/m);

  const sm = countingStateMachine(new MemoryStateMachine(), m);
  const data = await sm.snapshot();
  await sm.restore(data, 0);
  const t2 = await m.scrape();
  assert.match(t2, /^gokv_raft_snapshot_seconds_count\{kind="create"\} 1$/m);
  assert.match(t2, /^gokv_raft_snapshot_seconds_count\{kind="restore"\} 1$/m);
});

Deno.test("README documents every metric and the Grafana dashboard uses only real ones", async () => {
  const m = createServerMetrics({
    raft: () => ({ term: 1, commit: 1, applied: 1, isLeader: true, logSize: 1 }),
    storage: lsmStats,
  });
  const families = new Set(
    [...(await m.scrape()).matchAll(/^# HELP (\S+) /gm)].map((x) => x[1]),
  );
  const root = new URL("../", import.meta.url);
  const readme = await Deno.readTextFile(new URL("README.md", root));
  for (const f of families) {
    assert.ok(new RegExp(`^\\| \`${f}\` +\\|`, "m").test(readme), `README documents ${f}`);
  }
  const dash = JSON.parse(await Deno.readTextFile(new URL("conf/grafana-dashboard.json", root)));
  const used = new Set<string>();
  for (const p of dash.panels) {
    assert.ok(p.targets.length > 0, `panel ${p.title} has queries`);
    for (const t of p.targets) {
      for (const [name] of t.expr.matchAll(/gokv_[a-z_]+/g)) {
        const fam = name.replace(/_(bucket|sum|count)$/, "");
        assert.ok(families.has(fam), `dashboard panel "${p.title}" uses unknown ${name}`);
        if (name !== fam) {
          const metric = m.registry.getSingleMetric(fam) as { type?: string } | undefined;
          assert.equal(metric?.type, "histogram", `${name} is a histogram's series`);
        }
        used.add(fam);
      }
    }
  }
  for (const f of ["gokv_request_seconds", "gokv_fsync_seconds", "gokv_http_request_seconds"]) {
    assert.ok(used.has(f), `the dashboard graphs ${f}`);
  }
});

Deno.test("the hot-path histogram renders exactly what prom-client's Histogram renders", async () => {
  const values = [0, 0.00005, 0.00007, 0.001, 0.0011, 0.3, 2.5, 11, 1e9, NaN, 0.02];
  for (const labelled of [true, false]) {
    const a = new Registry(), b = new Registry();
    const opts = { name: "h_seconds", help: "Help.", buckets: LATENCY_BUCKETS };
    const theirs = labelled
      ? new Histogram({ ...opts, labelNames: ["op"] as const, registers: [a] })
      : new Histogram({ ...opts, registers: [a] });
    const ours = labelled
      ? new LatencyHistogram({ ...opts, labelNames: ["op"] as const, registers: [b] })
      : new LatencyHistogram({ ...opts, registers: [b] });
    if (!labelled) assert.equal(await b.metrics(), await a.metrics(), "before any observation");
    values.forEach((v, i) => {
      if (Number.isNaN(v)) return; // prom-client throws; ours ignores it (checked below)
      const op = i % 3 === 0 ? "get" : "put";
      if (labelled) {
        (theirs as Histogram<"op">).observe({ op }, v);
        (ours as LatencyHistogram<"op">).series({ op }).observe(v);
      } else {
        (theirs as Histogram).observe(v);
        (ours as LatencyHistogram).observe(v);
      }
    });
    const text = await b.metrics();
    assert.equal(text, await a.metrics());
    (labelled ? (ours as LatencyHistogram<"op">).series({ op: "get" }) : ours as LatencyHistogram)
      .observe(NaN);
    assert.equal(await b.metrics(), text, "a non-finite observation is ignored");
    checkRules(parseExposition(text));
  }
  assert.throws(
    () => new LatencyHistogram({ name: "x", help: "x", buckets: [2, 1] }),
    RangeError,
  );
});
