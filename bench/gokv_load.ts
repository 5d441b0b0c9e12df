/**
 * gokv's closed-loop load generator, the counterpart of ../shared/anchors/etcdload (Go clientv3):
 * the same workload and the same output, run as its own process so that its CPU is not counted as
 * the servers' and a client bottleneck shows in `gen_cpu_pct`.
 *
 * C workers each keep one request in flight over `--conns` clients (default 1); keys
 * "key" + 12 digits of i % --keys, --vsize byte values; gets are linearizable after preloading the
 * key space. Prints one JSON line: ops_per_s, p50_ms, p99_ms, errors, gen_cpu_pct (the generator's
 * own CPU over the measured phase, % of one core). Puts and compare-and-sets register the C client
 * sessions they need before the measured phase (`Client.prepareSessions`).
 *
 * `--op cas`: each worker compare-and-sets its own key (check the versionstamp of its previous
 * commit, set): N commits, no contention. `--op watch`: `--watchers` W watches of one prefix
 * spread over the endpoints, C writers put N keys under it; ops_per_s is change events delivered
 * per second over all watchers (N × W events), p50/p99 the delivery latency (write issued → event
 * received).
 *
 * `--op load`: loads the whole key space, `--batch` keys per atomic commit (at most 1000), C commits
 * in flight; N is ignored, ops_per_s counts commits (keys/s = ops_per_s × batch) and the output
 * adds `keys_per_s`. `--no-preload` measures gets on a key space loaded before (bench:scale);
 * `--spread` visits the key space in a scattered order (request i reads key (i × 2654435761) mod
 * keys) instead of 0, 1, 2, ... (keys then cover more of a large key space than its first N).
 *
 * Usage: deno run -A bench/gokv_load.ts --endpoints 127.0.0.1:8001,... --op put|get|cas|watch|load --n 20000 --c 64
 *        [--keys 10000] [--vsize 100] [--batch 1000] [--no-preload] [--spread]
 *        [--cacert ca.crt] [--token T]   (a TLS / token cluster: the `gokv-tls` rows of bench:cluster)
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { Client } from "../client/client.ts";
import { closedLoop } from "./closed_loop.ts";

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
    watchers: { type: "string", default: "100" },
    batch: { type: "string", default: "1000" },
    "no-preload": { type: "boolean", default: false },
    spread: { type: "boolean", default: false },
  },
});
const N = Number(a.n), C = Number(a.c), KEYS = Number(a.keys), CONNS = Number(a.conns);
if (!["put", "get", "cas", "watch", "load"].includes(a.op!)) {
  console.error(`unknown --op ${a.op}`);
  Deno.exit(2);
}
const enc = new TextEncoder();
const value = enc.encode("v".repeat(Number(a.vsize)));
const keyOf = (i: number) => enc.encode("key" + String(i).padStart(12, "0"));
// Encoded once for a small key space, on use for a large one (10M keys would be ~1 GB here).
const cached = KEYS <= 100_000 ? Array.from({ length: KEYS }, (_, i) => keyOf(i)) : undefined;
const SPREAD = 2654435761; // Knuth's multiplicative hash constant: (i × SPREAD) mod keys
/** The key of request `i`. */
const key = (i: number) => {
  const k = a.spread ? (i * SPREAD) % KEYS : i % KEYS;
  return cached ? cached[k] : keyOf(k);
};
const endpoints = a.endpoints!.split(",");
const tls = a.cacert ? { caCert: await Deno.readTextFile(a.cacert) } : undefined;
const clients = await Promise.all(
  Array.from(
    { length: CONNS },
    () => Client.connect({ endpoints, timeoutMs: 30_000, tls, token: a.token }),
  ),
);

if (a.op === "get" && !a["no-preload"]) { // preload the key space, 256 in flight, as etcdload does
  let next = 0;
  const lim = Math.min(KEYS, N);
  await Promise.all(Array.from({ length: 256 }, async (_, w) => {
    const c = clients[w % CONNS];
    while (next < lim) await c.put(keyOf(next++), value);
  }));
}

if (a.op === "watch") await watchLoad();
if (a.op === "load") await load();

/** Loads keys 0..KEYS-1 in atomic commits of --batch keys; prints its line and exits. */
async function load(): Promise<never> {
  const batch = Math.min(1000, Number(a.batch));
  const commits = Math.ceil(KEYS / batch);
  const report = await closedLoop(commits, C, async (i, w) => {
    const op = clients[w % CONNS].atomic();
    for (let k = i * batch; k < Math.min(KEYS, (i + 1) * batch); k++) op.set(keyOf(k), value);
    return (await op.commit()).ok;
  });
  const secs = commits / report.ops_per_s;
  console.log(JSON.stringify({
    driver: "gokv-client",
    op: "load",
    n: commits,
    c: C,
    batch,
    keys: KEYS,
    keys_per_s: Math.round(KEYS / secs),
    ...report,
  }));
  Deno.exit(0);
}

/** The watch fan-out load (see the module documentation); prints its line and exits. */
async function watchLoad(): Promise<never> {
  const W = Number(a.watchers);
  // A fresh prefix per run: the initial state is empty, whatever earlier runs wrote.
  const prefix = `watch/${crypto.randomUUID().slice(0, 8)}/`;
  const sent = new Float64Array(N);
  const lat = new Float64Array(N * W);
  let got = 0;
  let errors = 0;
  const ac = new AbortController();
  let ready = 0;
  let allDone!: () => void;
  const done = new Promise<void>((r) => allDone = r);
  const watchers = Array.from({ length: W }, async (_, w) => {
    const c = clients[w % CONNS];
    let seen = 0;
    try {
      for await (
        const m of c.watch({ prefixes: [prefix] }, {
          endpoint: endpoints[w % endpoints.length],
          signal: ac.signal,
          waitMs: 1000,
        })
      ) {
        if (m.type === "initial") {
          ready++;
          continue;
        }
        const now = performance.now();
        for (const ch of m.changes) {
          const i = Number(new TextDecoder().decode(ch.key).slice(prefix.length));
          lat[got++] = now - sent[i];
          seen++;
        }
        if (seen >= N) break;
      }
    } catch {
      errors++;
      ready++; // a watcher that failed to start is not waited for
    }
    if (got >= N * W) allDone();
  });
  const readyBy = Date.now() + 60_000;
  while (ready < W && Date.now() < readyBy) await new Promise((r) => setTimeout(r, 10));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: C }, async (_, w) => {
    const c = clients[w % CONNS];
    for (let i = next++; i < N; i = next++) {
      sent[i] = performance.now();
      try {
        await c.put(enc.encode(`${prefix}${i}`), value);
      } catch {
        errors++;
      }
    }
  }));
  await Promise.race([done, new Promise((r) => setTimeout(r, 60_000))]);
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  ac.abort();
  const d = lat.subarray(0, got).sort();
  const q = (p: number) =>
    (d.length ? d[Math.min(d.length - 1, Math.floor(p * d.length))] : 0)
      .toFixed(2);
  console.log(JSON.stringify({
    driver: "gokv-client",
    op: "watch",
    n: N,
    c: C,
    watchers: W,
    delivered: got,
    ops_per_s: Math.round(got / secs),
    p50_ms: q(0.5),
    p99_ms: q(0.99),
    errors: errors + (N * W - got),
    gen_cpu_pct: Math.round((100 * (cpu.user + cpu.system) / 1e6) / secs),
  }));
  void watchers;
  Deno.exit(0);
}

/** Each worker's key and the versionstamp of its last commit (the cas op). */
const casState: { key: Uint8Array; vs: string | null }[] = [];
if (a.op === "cas") {
  for (let w = 0; w < C; w++) {
    const key = enc.encode("cas" + String(w).padStart(12, "0"));
    casState.push({ key, vs: (await clients[w % CONNS].getEntry(key)).versionstamp });
  }
}

if (a.op === "put" || a.op === "cas") {
  // The sessions the writers will hold, registered before the measured phase (as the Go
  // generator opens its connections before its clock starts): what is measured is the writes.
  await Promise.all(clients.map((c, j) => c.prepareSessions(Math.ceil((C - j) / CONNS))));
}

const report = await closedLoop(N, C, async (i, w) => {
  const c = clients[w % CONNS];
  if (a.op === "put") await c.put(key(i), value);
  else if (a.op === "cas") {
    const st = casState[w];
    const r = await c.atomic().check(st.key, st.vs).set(st.key, value).commit();
    if (r.ok) st.vs = r.versionstamp;
    else {
      st.vs = (await c.getEntry(st.key)).versionstamp;
      return false;
    }
  } else await c.get(key(i));
});
for (const c of clients) await c.close();
console.log(JSON.stringify({
  driver: "gokv-client",
  op: a.op,
  n: N,
  c: C,
  conns: CONNS,
  ...report,
}));
Deno.exit(0);
