/**
 * Ad-hoc profiling helper for the LSM engine (not part of CI): fills a
 * database with random keys, waits for compaction to settle, then times
 * random gets and a full scan. Usage: deno run -A bench/lsm_profile.ts [n]
 */
import { LsmDb } from "../lsm/mod.ts";
import process from "node:process";

const N = Number(Deno.args[0] ?? 1_000_000);
const dir = await Deno.makeTempDir({ prefix: "lsm_profile_" });
try {
  const db = await LsmDb.open(dir, JSON.parse(Deno.env.get("LSM_OPTS") ?? "{}"));
  const v = new Uint8Array(100).fill(7);
  const key = (i: number) => String(i).padStart(16, "0");
  let t = performance.now();
  for (let b = 0; b < N; b += 1000) {
    const ops = [];
    for (let i = 0; i < 1000; i++) {
      ops.push({ type: "put" as const, key: key(Math.floor(Math.random() * N)), value: v });
    }
    await db.write(ops);
  }
  console.log("fill/s", Math.round(N / (performance.now() - t) * 1000));
  const m0 = Deno.memoryUsage();
  console.log(
    "after fill MiB rss/heapTotal/heapUsed/external",
    [m0.rss, m0.heapTotal, m0.heapUsed, m0.external].map((x) => Math.round(x / 1048576)).join("/"),
  );
  t = performance.now();
  await db.flush();
  while (!db.stats().levels.every((l, i) => i === 6 || l.score < 1)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log("settle ms", Math.round(performance.now() - t));
  console.log(JSON.stringify(db.stats().levels.map((l) => [l.files, Math.round(l.bytes / 1e6)])));
  const te = new TextEncoder();
  const keys: Uint8Array[] = [];
  for (let i = 0; i < 100000; i++) keys.push(te.encode(key(Math.floor(Math.random() * N))));
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < keys.length; i++) await db.get(keys[i]);
    const c1 = process.cpuUsage(c0);
    const st = db.stats();
    console.log(
      "cpu us/get",
      ((c1.user + c1.system) / keys.length).toFixed(2),
      "get/s",
      Math.round(keys.length / (performance.now() - t) * 1000),
      st.cacheHits,
      st.cacheMisses,
    );
  }
  t = performance.now();
  let n = 0;
  for await (const _ of db.scan()) n++;
  console.log("scan/s", Math.round(n / (performance.now() - t) * 1000));
  const mu = Deno.memoryUsage();
  console.log(
    "MiB rss/heapTotal/heapUsed/external",
    [mu.rss, mu.heapTotal, mu.heapUsed, mu.external].map((x) => Math.round(x / 1048576)).join("/"),
  );
  await db.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}
