/** Ad-hoc write-path profile (not CI): pre-generated batches, big memtable (no background work). */
import { LsmDb } from "../lsm/mod.ts";
import { Memtable } from "../lsm/memtable.ts";
const N = 500_000;
const te = new TextEncoder();
const v = new Uint8Array(100).fill(7);
const keys = Array.from(
  { length: N },
  () => te.encode(String(Math.floor(Math.random() * 1e6)).padStart(16, "0")),
);
const batches: { type: "put"; key: Uint8Array; value: Uint8Array }[][] = [];
for (let b = 0; b < N; b += 1000) {
  batches.push(keys.slice(b, b + 1000).map((key) => ({ type: "put", key, value: v })));
}
const dir = await Deno.makeTempDir({ prefix: "lsm_wp_" });
try {
  const db = await LsmDb.open(dir, { memtableBytes: 256 << 20 });
  const small = keys.length > 65000 ? 65000 : keys.length;
  const m0 = new Memtable(64 * 1024, 8 << 20);
  let t0 = performance.now();
  for (let i = 0; i < small; i++) m0.add(i + 1, 1, keys[i], v);
  console.log(
    "memtable.add (65k entries, ~8 MiB) us/entry",
    ((performance.now() - t0) * 1000 / small).toFixed(2),
  );
  const db2 = await LsmDb.open(dir + "/b", { memtableBytes: 256 << 20 });
  t0 = performance.now();
  for (let b = 0; b < 65; b++) await db2.write(batches[b]);
  console.log(
    "db.write (first 65k entries) us/entry",
    ((performance.now() - t0) * 1000 / 65000).toFixed(2),
  );
  await db2.close();
  let t = performance.now();
  for (const b of batches) await db.write(b);
  console.log("db.write us/entry", ((performance.now() - t) * 1000 / N).toFixed(2));
  await db.close();
  const m = new Memtable(64 * 1024, 256 << 20);
  t = performance.now();
  for (let i = 0; i < N; i++) m.add(i + 1, 1, keys[i], v);
  console.log("memtable.add us/entry", ((performance.now() - t) * 1000 / N).toFixed(2));
  t = performance.now();
  for (let i = 0; i < N; i++) te.encode(String(Math.floor(Math.random() * 1e6)).padStart(16, "0"));
  console.log("bench key generation us/entry", ((performance.now() - t) * 1000 / N).toFixed(2));
} finally {
  await Deno.remove(dir, { recursive: true });
}
