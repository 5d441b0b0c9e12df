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
import { closedLoop } from "./closed_loop.ts";

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

const report = await closedLoop(N, C, async (i) => {
  if (a.op === "put") return (await kv.atomic().set(keys[i % KEYS], value).commit()).ok;
  await kv.get(keys[i % KEYS]);
});
kv.close();
console.log(JSON.stringify({ driver: "deno-openkv", op: a.op, n: N, c: C, ...report }));
Deno.exit(0);
