import assert from "node:assert/strict";
import { Registry } from "./metrics.ts";
import { storageSamples, timedLogStore } from "./server_metrics.ts";
import { Histogram } from "./metrics.ts";
import { MemoryLogStore } from "../storage/memory_log.ts";

Deno.test("the registry renders counters, gauges and cumulative histograms in text format", () => {
  const r = new Registry();
  r.counter("c_total", "A counter.").inc(3);
  r.gauge("g", "A gauge.", () => [{ labels: { name: 'a"b' }, value: 1.5 }]);
  const h = r.histogram("h_seconds", "A histogram.", [0.1, 1]);
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  assert.equal(
    r.render(),
    [
      "# HELP c_total A counter.",
      "# TYPE c_total counter",
      "c_total 3",
      "# HELP g A gauge.",
      "# TYPE g gauge",
      'g{name="a\\"b"} 1.5',
      "# HELP h_seconds A histogram.",
      "# TYPE h_seconds histogram",
      'h_seconds_bucket{le="0.1"} 1',
      'h_seconds_bucket{le="1"} 2',
      'h_seconds_bucket{le="+Inf"} 3',
      "h_seconds_sum 5.55",
      "h_seconds_count 3",
      "",
    ].join("\n"),
  );
});

Deno.test("storage statistics flatten into named samples with per-level labels", () => {
  const s = storageSamples({
    backend: "lsm",
    keys: 10,
    lsm: {
      compactions: 2,
      levels: [{ level: 0, files: 1, bytes: 100 }, { level: 1, files: 0, bytes: 0 }],
    },
  });
  assert.deepEqual(s.find((x) => x.name === "keys"), { name: "keys", value: 10 });
  assert.deepEqual(s.find((x) => x.name === "lsm_compactions"), {
    name: "lsm_compactions",
    value: 2,
  });
  assert.deepEqual(
    s.filter((x) => x.name === "lsm_levels_bytes"),
    [
      { name: "lsm_levels_bytes", labels: { level: "0" }, value: 100 },
      { name: "lsm_levels_bytes", labels: { level: "1" }, value: 0 },
    ],
  );
});

Deno.test("a timed log store measures every sync and delegates everything else", async () => {
  const h = new Histogram("x", "x");
  const log = timedLogStore(new MemoryLogStore(), h);
  log.append([{ term: 1, index: 1, type: 0, data: new Uint8Array([1]) }]);
  await log.sync();
  await log.sync();
  assert.equal(h.total, 2);
  assert.equal(log.lastIndex(), 1);
  assert.equal(log.term(1), 1);
});
