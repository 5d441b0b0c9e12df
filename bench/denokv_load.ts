/**
 * The KV Connect load generator: the workload of bench/gokv_load.ts (closed loop, C workers with
 * one request in flight each, keys "key" + 12 digits of i % --keys, --vsize byte values) through
 * the Deno runtime's own client, `Deno.openKv(url)`. `--op put` commits one atomic write per
 * request (`kv.atomic().set(key, value).commit()`, what `kv.set` sends); `--op get` reads
 * strongly consistent (`kv.get`) after preloading the key space. Prints the same JSON line as
 * gokv_load.ts.
 *
 * Usage: DENO_KV_ACCESS_TOKEN=... deno run -A --unstable-kv bench/denokv_load.ts
 *          --url http://127.0.0.1:9001/kv --op put|get --n 20000 --c 64
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";

const { values: a } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:9001/kv" },
    op: { type: "string", default: "put" },
    n: { type: "string", default: "20000" },
    c: { type: "string", default: "64" },
    keys: { type: "string", default: "10000" },
    vsize: { type: "string", default: "100" },
  },
});
const N = Number(a.n), C = Number(a.c), KEYS = Number(a.keys);
if (a.op !== "put" && a.op !== "get") {
  console.error(`unknown --op ${a.op}`);
  Deno.exit(2);
}
// The value is bytes, as gokv_load.ts writes (stored as VE_BYTES, no V8 serialization).
const value = new TextEncoder().encode("v".repeat(Number(a.vsize)));
const keys = Array.from({ length: KEYS }, (_, i) => ["key" + String(i).padStart(12, "0")]);
const kv = await Deno.openKv(a.url);

if (a.op === "get") {
  let next = 0;
  const lim = Math.min(KEYS, N);
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < lim) await kv.set(keys[next++], value);
  }));
}

const lat = new Float64Array(N);
let next = 0;
let errors = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, async () => {
  for (let i = next++; i < N; i = next++) {
    const s = performance.now();
    try {
      if (a.op === "put") {
        const r = await kv.atomic().set(keys[i % KEYS], value).commit();
        if (!r.ok) errors++;
      } else {
        await kv.get(keys[i % KEYS]);
      }
    } catch {
      errors++;
    }
    lat[i] = performance.now() - s;
  }
}));
const secs = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
lat.sort();
const q = (p: number) => lat[Math.min(N - 1, Math.floor(p * N))].toFixed(2);
kv.close();
console.log(JSON.stringify({
  driver: "deno-openkv",
  op: a.op,
  n: N,
  c: C,
  ops_per_s: Math.round(N / secs),
  p50_ms: q(0.5),
  p99_ms: q(0.99),
  errors,
  gen_cpu_pct: Math.round((100 * (cpu.user + cpu.system) / 1e6) / secs),
}));
Deno.exit(0);
