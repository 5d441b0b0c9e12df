/**
 * Cluster benchmark: a 3-node gokv cluster (subprocesses, lsm storage, loopback) against a
 * 3-member etcd cluster on the same machine, the same workload, each system driven by its own
 * native client in a separate generator process, runs alternated (the order swaps every round),
 * best of `--rounds` (default 3).
 *
 * Workload (mirrors ../shared/anchors/kvload.ts and etcdload): closed loop, C concurrent clients
 * each with one request in flight, keys "key" + 12 digits over a 10 000-key space, 100-byte
 * values; C = 16, 64, 256; puts and linearizable gets.
 *
 * Generators: gokv through its own client (bench/gokv_load.ts); etcd through the native Go
 * clientv3 generator ../shared/anchors/etcdload, built once into bench/.tools/ (ignored by git) by
 * its build.sh from Debian's golang-go + golang-etcd-server-dev. `--etcd-client etcd3` drives etcd
 * with npm:etcd3 (grpc-js under Deno, ../shared/anchors/kvload.ts) instead: that generator costs
 * ~150-200 µs of CPU per request and makes etcd look slower than it is.
 *
 * TLS: a second gokv cluster with TLS on every port, the cluster secret and tokens (`gokv-tls`,
 * the generator over TLS with a write token) runs at `--tls-clients` (default 64; `none` skips
 * it), alternated with the others, and its ratios to plaintext gokv are printed.
 *
 * Reported per run: ops/s, p50, p99, server CPU µs per operation (utime + stime of the three
 * server processes from /proc over the measured phase) and the generator's own CPU (% of one
 * core), so a client bottleneck is visible.
 *
 * gokv-only rows (etcd's generator has no such operation), each round next to gokv's puts at the
 * same concurrency: `cas` (compare-and-set commits/s at c=64: check the versionstamp of the
 * worker's previous commit, set) and `watch` (change events/s delivered to 100 watchers spread over
 * the nodes while 64 writers put; p50/p99 are the delivery latency).
 *
 * KV Connect rows (`denokv`): the same workload through the Deno runtime's own client,
 * `Deno.openKv("http://<leader>/kv")` (bench/denokv_load.ts under `--unstable-kv`) against the
 * plaintext cluster: put = one atomic commit (`kv.atomic().set(k, v).commit()`), get = a
 * strongly consistent `kv.get`; the ratios denokv/gokv compare them with gokv's binary protocol
 * in the same run (`--no-deno-kv` skips them). With `--baseline` (a checkout with KV Connect) the
 * baseline's KV Connect runs too (`denokv-base`): denokv/denokv-base is a before/after of it.
 *
 * Usage: deno task bench:cluster [--n 20000] [--clients 16,64,256] [--rounds 3] [--no-etcd]
 *        [--ops put,get] [--gokv-ops cas,watch] [--storage lsm] [--etcd-client go|etcd3]
 *        [--tls-clients 64|none] [--baseline <checkout>] [--help]
 *
 * `--baseline <dir>` also runs a gokv cluster from another checkout of the project (e.g. `git
 * archive` of the commit before a change), driven by that checkout's generator, as system "base"
 * in the same alternation at --clients, and prints gokv/base ratios: a before/after measurement
 * under the same machine load instead of two runs compared.
 *
 * etcd: `apt-get install -y etcd-server etcd-client`; started by bench/etcd_cluster.ts as
 * ../shared/anchors/etcd-cluster.sh does, on free ports (skipped with a note when unavailable).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { asUsageError, EXIT_OK, EXIT_USAGE, UsageError } from "../config/cli.ts";
import { type GokvCluster, hasKvConnect, KV_TOKEN, ROOT, startGokv } from "./gokv_cluster.ts";
import { ANCHORS, etcdAvailable, type EtcdCluster, etcdload, startEtcd } from "./etcd_cluster.ts";
import { fmtRow, type Result, run, type System } from "./load_run.ts";

const USAGE = `Usage: deno task bench:cluster [flags]

A 3-node gokv cluster against a 3-member etcd cluster (and the other gokv variants), the same
closed-loop workload, runs alternated, best of --rounds.

  --n N                 requests per run (default 20000)
  --clients C,C,...     concurrencies (default 16,64,256)
  --rounds R            rounds, best of them reported (default 3)
  --ops put,get         operations measured against etcd (default put,get)
  --gokv-ops cas,watch  gokv-only rows at c=64 ("" for none; default cas,watch)
  --storage lsm         the gokv storage backend (default lsm)
  --no-etcd             gokv only
  --no-deno-kv          no KV Connect (Deno.openKv) rows
  --etcd-client go      etcd's generator: go (native clientv3, default) or etcd3 (npm:etcd3)
  --keys K              key space (default 10000)
  --vsize B             value size in bytes (default 100)
  --tls-clients C|none  concurrencies of the TLS + tokens cluster (default 64)
  --baseline <dir>      also run a gokv cluster from another checkout as system "base"
  -h, --help            this text`;

/** The parsed flags; a bad flag or value prints a message and exits 2, --help exits 0. */
function parseFlags() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        n: { type: "string", default: "20000" },
        clients: { type: "string", default: "16,64,256" },
        rounds: { type: "string", default: "3" },
        ops: { type: "string", default: "put,get" },
        "gokv-ops": { type: "string", default: "cas,watch" },
        storage: { type: "string", default: "lsm" },
        "no-etcd": { type: "boolean", default: false },
        "no-deno-kv": { type: "boolean", default: false },
        "etcd-client": { type: "string", default: "go" },
        keys: { type: "string", default: "10000" },
        vsize: { type: "string", default: "100" },
        "tls-clients": { type: "string", default: "64" },
        baseline: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    const err = asUsageError(e);
    if (!(err instanceof UsageError)) throw err;
    console.error(`bench:cluster: ${err.message}\n\n${USAGE}`);
    Deno.exit(EXIT_USAGE);
  }
  if (parsed.help) {
    console.log(USAGE);
    Deno.exit(EXIT_OK);
  }
  const bad = (msg: string): never => {
    console.error(`bench:cluster: ${msg}\n\n${USAGE}`);
    Deno.exit(EXIT_USAGE);
  };
  const positive = (flag: string, v: string) => {
    if (!/^[1-9][0-9]*$/.test(v)) bad(`--${flag} must be a positive integer, got '${v}'`);
  };
  for (const f of ["n", "rounds", "keys", "vsize"] as const) positive(f, parsed[f]);
  for (const c of parsed.clients.split(",")) positive("clients", c);
  if (parsed["tls-clients"] !== "none") {
    for (const c of parsed["tls-clients"].split(",")) positive("tls-clients", c);
  }
  for (const op of parsed.ops.split(",")) {
    if (op !== "put" && op !== "get") bad(`--ops takes put and get, got '${op}'`);
  }
  for (const op of parsed["gokv-ops"].split(",").filter((o) => o)) {
    if (op !== "cas" && op !== "watch") bad(`--gokv-ops takes cas and watch, got '${op}'`);
  }
  if (!["go", "etcd3"].includes(parsed["etcd-client"])) {
    bad(`--etcd-client is go or etcd3, got '${parsed["etcd-client"]}'`);
  }
  return parsed;
}
const a = parseFlags();
const BASE_ROOT = a.baseline ? resolve(a.baseline) : undefined;
const N = Number(a.n);
const CLIENTS = a.clients.split(",").map(Number);
const OPS = a.ops.split(",") as ("put" | "get")[];
const GOKV_OPS = a["gokv-ops"].split(",").filter((o) => o) as ("cas" | "watch")[];
/** The concurrency of the gokv-only rows. */
const GOKV_OPS_C = 64;
const ROUNDS = Number(a.rounds);
const TLS_CLIENTS = a["tls-clients"] === "none" ? [] : a["tls-clients"].split(",").map(Number);
/** The load arguments every generator (gokv_load.ts, etcdload, kvload.ts) takes. */
function loadArgs(endpoints: string[], op: string, c: number): string[] {
  return [
    "--endpoints",
    endpoints.join(","),
    "--op",
    op,
    "--c",
    String(c),
    "--n",
    String(N),
    "--keys",
    a.keys,
    "--vsize",
    a.vsize,
  ];
}
let etcdSystem: System | undefined;
let etcd: EtcdCluster | undefined;
if (!a["no-etcd"]) {
  if (!await etcdAvailable()) {
    console.error("etcd not installed (apt-get install -y etcd-server etcd-client): gokv only");
  } else {
    // The generator command without its load arguments (the same for every generator).
    const base = a["etcd-client"] === "etcd3"
      ? [Deno.execPath(), "run", "-A", join(ANCHORS, "kvload.ts"), "--driver", "etcd"]
      : await etcdload().then((bin) => bin ? [bin] : undefined);
    if (base) {
      etcdSystem = {
        name: "etcd",
        pids: () => Promise.resolve(etcd!.pids),
        generator: (op, c) => [...base, ...loadArgs(etcd!.endpoints, op, c)],
      };
    }
  }
}

const gokv = await startGokv({ storage: a.storage });
const gokvTls = TLS_CLIENTS.length > 0
  ? await startGokv({ tls: true, storage: a.storage })
  : undefined;
const base = BASE_ROOT ? await startGokv({ root: BASE_ROOT, storage: a.storage }) : undefined;
const results: Result[] = [];
try {
  /** A gokv cluster driven by bench/gokv_load.ts (over TLS with a token when secured). */
  const gokvOf = (
    name: string,
    g: GokvCluster,
    root = ROOT,
  ): System => ({
    name,
    pids: () => Promise.resolve(g.pids),
    generator: (op, c) => [
      Deno.execPath(),
      "run",
      "-A",
      join(root, "bench", "gokv_load.ts"),
      ...loadArgs(g.endpoints, op, c),
      ...(g.sec ? ["--cacert", g.sec.ca, "--token", g.sec.token] : []),
    ],
  });
  const gokvSystem = gokvOf("gokv", gokv);
  const tlsSystem = gokvTls && gokvOf("gokv-tls", gokvTls);
  const kvUrl = await gokv.kvUrl();
  // The generator reads its token from the environment, as Deno's client does.
  Deno.env.set("DENO_KV_ACCESS_TOKEN", KV_TOKEN);
  /** KV Connect through Deno.openKv (this checkout's generator) against cluster `g`. */
  const denoKvOf = (name: string, g: typeof gokv, url: string): System => ({
    name,
    pids: () => Promise.resolve(g.pids),
    generator: (op, c) => [
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-kv",
      join(ROOT, "bench", "denokv_load.ts"),
      "--url",
      url,
      ...loadArgs([], op, c).slice(2),
    ],
  });
  const denoKvSystem = a["no-deno-kv"] ? undefined : denoKvOf("denokv", gokv, kvUrl);
  const baseSystem = base && gokvOf("base", base, BASE_ROOT);
  // The baseline's KV Connect too (when it has it): a before/after of the denokv rows.
  const denoKvBaseSystem = base && denoKvSystem && hasKvConnect(BASE_ROOT!)
    ? denoKvOf("denokv-base", base, await base.kvUrl())
    : undefined;

  if (etcdSystem) etcd = await startEtcd();
  // gokv-only rows, each next to gokv's puts at the same concurrency in the same round
  // (alternated), so the ratio holds on a loaded machine too.
  for (let round = 0; round < ROUNDS && GOKV_OPS.length > 0; round++) {
    for (const op of GOKV_OPS) {
      const pair = round % 2 === 0 ? ["put", op] : [op, "put"];
      for (const o of pair) {
        const r = await run(gokvSystem, o, GOKV_OPS_C, N);
        results.push({ ...r, op: o === "put" ? `put/${op}` : o });
        console.log(fmtRow(results[results.length - 1]));
      }
    }
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const op of OPS) {
      for (const c of [...new Set([...CLIENTS, ...TLS_CLIENTS])].sort((x, y) => x - y)) {
        const order = [
          ...(CLIENTS.includes(c) ? [gokvSystem] : []),
          ...(denoKvSystem && CLIENTS.includes(c) ? [denoKvSystem] : []),
          ...(baseSystem && CLIENTS.includes(c) ? [baseSystem] : []),
          ...(denoKvBaseSystem && CLIENTS.includes(c) ? [denoKvBaseSystem] : []),
          ...(tlsSystem && TLS_CLIENTS.includes(c) ? [tlsSystem, gokvSystem] : []),
          ...(etcdSystem && CLIENTS.includes(c) ? [etcdSystem] : []),
        ].filter((s, i, all) => all.indexOf(s) === i);
        if (round % 2 === 1) order.reverse();
        for (const sys of order) {
          const r = await run(sys, op, c, N);
          results.push(r);
          console.log(fmtRow(r));
        }
      }
    }
  }
} finally {
  await gokv.stop();
  await gokvTls?.stop();
  await base?.stop();
  await etcd?.stop();
}

/** The best round (highest throughput) of one system, operation and concurrency. */
function best(sys: string, op: string, c: number): Result | undefined {
  return results.filter((r) => r.system === sys && r.op === op && r.c === c)
    .sort((x, y) => y.opsPerSec - x.opsPerSec)[0];
}

console.log(`\nbest of ${ROUNDS} round(s):`);
for (const op of OPS) {
  for (const c of [...new Set([...CLIENTS, ...TLS_CLIENTS])].sort((x, y) => x - y)) {
    for (const sys of ["gokv", "base", "denokv", "denokv-base", "gokv-tls", "etcd"]) {
      const r = best(sys, op, c);
      if (r) console.log(fmtRow(r));
    }
  }
}
for (const op of GOKV_OPS) {
  const x = best("gokv", op, GOKV_OPS_C);
  const p = best("gokv", `put/${op}`, GOKV_OPS_C);
  if (x && p) {
    console.log(fmtRow(x));
    console.log(
      `${op} c=${GOKV_OPS_C}: ${Math.round(x.opsPerSec)} ${
        op === "watch" ? "events/s delivered to 100 watchers" : "commits/s"
      } = x${(x.opsPerSec / p.opsPerSec).toFixed(2)} of plain puts (${
        Math.round(p.opsPerSec)
      } puts/s, same rounds)`,
    );
  }
}
/**
 * Ratios of system `x` to system `y` at each op and concurrency of `clients`, best rounds:
 * throughput x/y; p99 and server CPU per op y/x (> 1: x's is lower), or x/y with `cost`.
 */
function printRatios(title: string, x: string, y: string, clients: number[], cost = false): void {
  console.log(`\n${title}`);
  for (const op of OPS) {
    for (const c of clients) {
      const rx = best(x, op, c), ry = best(y, op, c);
      if (!rx || !ry) continue;
      const inv = (p: number, q: number) => (cost ? p / q : q / p);
      console.log(
        `${op.padEnd(4)} c=${String(c).padEnd(4)} throughput x${
          (rx.opsPerSec / ry.opsPerSec).toFixed(2)
        }  p99 x${inv(rx.p99, ry.p99).toFixed(2)}  server cpu/op x${
          inv(rx.serverUsPerOp, ry.serverUsPerOp).toFixed(2)
        }`,
      );
    }
  }
}
if (base) {
  printRatios(
    "ratios gokv/base (this checkout against --baseline), best rounds (p99 and server CPU per " +
      "op: base/gokv, > 1 means gokv's is lower):",
    "gokv",
    "base",
    CLIENTS,
  );
}
if (base && results.some((r) => r.system === "denokv-base")) {
  printRatios(
    "ratios denokv/denokv-base (KV Connect of this checkout against --baseline's), best rounds " +
      "(p99 and server CPU per op: base/this, > 1 means this checkout's is lower):",
    "denokv",
    "denokv-base",
    CLIENTS,
  );
  printRatios(
    "ratios denokv-base/base (the baseline's KV Connect vs its binary protocol), best rounds:",
    "denokv-base",
    "base",
    CLIENTS,
  );
}
if (etcdSystem) {
  printRatios(
    "ratios gokv/etcd, best rounds (throughput; p99 and server CPU per op: etcd/gokv, > 1 " +
      "means gokv's is lower):",
    "gokv",
    "etcd",
    CLIENTS,
  );
}
if (gokvTls) {
  printRatios(
    "ratios gokv-tls/gokv (TLS on every port + tokens vs plaintext), best rounds (throughput; " +
      "p99 and server CPU per op: tls/plain, > 1 means TLS costs that much more):",
    "gokv-tls",
    "gokv",
    TLS_CLIENTS,
    true,
  );
}
if (!a["no-deno-kv"]) {
  printRatios(
    "ratios denokv/gokv, best rounds (KV Connect through Deno.openKv vs gokv's binary " +
      "protocol; put = atomic commit, get = strong read; throughput, p99 and server CPU per op " +
      "gokv/denokv):",
    "denokv",
    "gokv",
    CLIENTS,
  );
}
console.log(JSON.stringify({ results }));
Deno.exit(0);
