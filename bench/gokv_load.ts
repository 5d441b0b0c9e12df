/**
 * gokv's closed-loop load generator, the counterpart of ../shared/anchors/etcdload (Go clientv3):
 * the same workload and the same output, run as its own process so that its CPU is not counted as
 * the servers' and a client bottleneck shows in `gen_cpu_pct`.
 *
 * C workers each keep one request in flight over `--conns` clients (default 1); keys
 * "key" + 12 digits of i % --keys, --vsize byte values; gets are linearizable after preloading the
 * key space. Prints one JSON line: ops_per_s, p50_ms, p99_ms, errors, gen_cpu_pct (the generator's
 * own CPU over the measured phase, % of one core).
 *
 * Usage: deno run -A bench/gokv_load.ts --endpoints 127.0.0.1:8001,... --op put|get --n 20000 --c 64
 *        [--cacert ca.crt] [--token T]   (a TLS / token cluster: the `gokv-tls` rows of bench:cluster)
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { Client } from "../client/client.ts";

const { values: a } = parseArgs({
  options: {
    endpoints: { type: "string", default: "127.0.0.1:8001" },
    op: { type: "string", default: "put" },
    n: { type: "string", default: "20000" },
    c: { type: "string", default: "64" },
    keys: { type: "string", default: "10000" },
    vsize: { type: "string", default: "100" },
    conns: { type: "string", default: "1" },
    cacert: { type: "string" },
    token: { type: "string" },
  },
});
const N = Number(a.n), C = Number(a.c), KEYS = Number(a.keys), CONNS = Number(a.conns);
if (a.op !== "put" && a.op !== "get") {
  console.error(`unknown --op ${a.op}`);
  Deno.exit(2);
}
const enc = new TextEncoder();
const value = enc.encode("v".repeat(Number(a.vsize)));
const keys = Array.from(
  { length: KEYS },
  (_, i) => enc.encode("key" + String(i).padStart(12, "0")),
);
const endpoints = a.endpoints!.split(",");
const tls = a.cacert ? { caCert: await Deno.readTextFile(a.cacert) } : undefined;
const clients = await Promise.all(
  Array.from(
    { length: CONNS },
    () => Client.connect({ endpoints, timeoutMs: 30_000, tls, token: a.token }),
  ),
);

if (a.op === "get") { // preload the key space, 256 in flight, as etcdload does
  let next = 0;
  const lim = Math.min(KEYS, N);
  await Promise.all(Array.from({ length: 256 }, async (_, w) => {
    const c = clients[w % CONNS];
    while (next < lim) await c.put(keys[next++], value);
  }));
}

const lat = new Float64Array(N);
let next = 0;
let errors = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, async (_, w) => {
  const c = clients[w % CONNS];
  for (let i = next++; i < N; i = next++) {
    const s = performance.now();
    try {
      if (a.op === "put") await c.put(keys[i % KEYS], value);
      else await c.get(keys[i % KEYS]);
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
for (const c of clients) await c.close();
console.log(JSON.stringify({
  driver: "gokv-client",
  op: a.op,
  n: N,
  c: C,
  conns: CONNS,
  ops_per_s: Math.round(N / secs),
  p50_ms: q(0.5),
  p99_ms: q(0.99),
  errors,
  gen_cpu_pct: Math.round((100 * (cpu.user + cpu.system) / 1e6) / secs),
}));
Deno.exit(0);
