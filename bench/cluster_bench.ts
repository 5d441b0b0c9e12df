/**
 * Cluster benchmark: a 3-node gokv cluster (subprocesses, lsm storage, loopback) against a
 * 3-member etcd cluster on the same machine, same workload, runs alternated (gokv, etcd, gokv,
 * etcd...) so both see the same machine conditions.
 *
 * Workload (mirrors ../shared/anchors/kvload.ts): closed loop, C concurrent clients each with
 * one request in flight, keys "key" + 12 digits over a 10 000-key space, 100-byte values;
 * C = 16, 64, 256; puts and linearizable gets.
 *
 * Usage: deno task bench:cluster [--n 20000] [--clients 16,64,256] [--rounds 1] [--no-etcd]
 *        [--ops put,get] [--storage lsm]
 *
 * etcd: `apt-get install -y etcd-server etcd-client`; started with
 * ../shared/anchors/etcd-cluster.sh (skipped with a note when unavailable).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "../client/client.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ETCD_SCRIPT = resolve(ROOT, "../shared/anchors/etcd-cluster.sh");

const { values: a } = parseArgs({
  options: {
    n: { type: "string", default: "20000" },
    clients: { type: "string", default: "16,64,256" },
    rounds: { type: "string", default: "1" },
    ops: { type: "string", default: "put,get" },
    storage: { type: "string", default: "lsm" },
    "no-etcd": { type: "boolean", default: false },
    keys: { type: "string", default: "10000" },
    vsize: { type: "string", default: "100" },
  },
});
const N = Number(a.n);
const KEYS = Number(a.keys);
const VSIZE = Number(a.vsize);
const CLIENTS = a.clients!.split(",").map(Number);
const OPS = a.ops!.split(",") as ("put" | "get")[];
const ROUNDS = Number(a.rounds);

const key = (i: number) => "key" + String(i % KEYS).padStart(12, "0");
const valueStr = "v".repeat(VSIZE);

interface Driver {
  name: string;
  put(k: string, v: string): Promise<void>;
  get(k: string): Promise<unknown>;
  close(): Promise<void>;
}

interface Result {
  system: string;
  op: string;
  c: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
}

/** The closed loop (same code for both systems). */
async function load(d: Driver, op: "put" | "get", n: number, c: number): Promise<Result> {
  const lat = new Float64Array(n);
  let next = 0;
  let done = 0;
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < n) {
      const i = next++;
      const s = performance.now();
      try {
        if (op === "put") await d.put(key(i), valueStr);
        else await d.get(key(i));
      } catch {
        errors++;
      }
      lat[done++] = performance.now() - s;
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  const sorted = lat.subarray(0, done).sort();
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
  return { system: d.name, op, c, opsPerSec: n / secs, p50: q(0.5), p99: q(0.99), errors };
}

async function preload(d: Driver): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < KEYS) await d.put(key(next++), valueStr);
  }));
}

/** Distinct free ports (all listeners are held open until every port is chosen). */
function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => l.addr.port);
  for (const l of ls) l.close();
  return ports;
}

async function startGokv(): Promise<{ endpoints: string[]; stop: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "gokv-bench-" });
  const ports = freePorts(9);
  const nodes = [1, 2, 3].map((id, i) => ({
    id,
    peer: `127.0.0.1:${ports[3 * i]}`,
    client: `127.0.0.1:${ports[3 * i + 1]}`,
    http: `127.0.0.1:${ports[3 * i + 2]}`,
  }));
  const config = [
    `data_dir: ${JSON.stringify(join(dir, "data"))}`,
    `storage: ${a.storage}`,
    "transport: tcp",
    "nodes:",
    ...nodes.map((n) =>
      `  - { id: ${n.id}, peer: ${n.peer}, client: ${n.client}, http: ${n.http} }`
    ),
    "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 500\n",
    "log:\n  level: warn\n",
  ].join("\n");
  const configPath = join(dir, "config.yaml");
  await Deno.writeTextFile(configPath, config);
  const procs = nodes.map((n) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(ROOT, "main.ts"),
        "server",
        "--config",
        configPath,
        "--id",
        String(n.id),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn()
  );
  const deadline = Date.now() + 30_000;
  let up = false;
  while (!up && Date.now() < deadline) {
    for (const n of nodes) {
      try {
        const r = await fetch(`http://${n.http}/v1/status`, { signal: AbortSignal.timeout(500) });
        if ((await r.json()).role === "leader") up = true;
      } catch { /* starting */ }
    }
    if (!up) await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    for (const p of procs) {
      try {
        p.kill("SIGTERM");
      } catch { /* gone */ }
    }
    await Promise.all(procs.map((p) => p.status));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  if (!up) {
    await stop();
    throw new Error("gokv cluster did not elect a leader");
  }
  return { endpoints: nodes.map((n) => n.client), stop };
}

async function gokvDriver(endpoints: string[]): Promise<Driver> {
  const kv = await Client.connect({ endpoints, timeoutMs: 30_000 });
  return {
    name: "gokv",
    put: (k, v) => kv.put(k, v),
    get: (k) => kv.get(k),
    close: () => kv.close(),
  };
}

async function etcdAvailable(): Promise<boolean> {
  try {
    const out = await new Deno.Command("etcd", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

async function etcdCluster(cmd: "start" | "stop"): Promise<void> {
  const out = await new Deno.Command("bash", {
    args: [ETCD_SCRIPT, cmd],
    stdout: "inherit",
    stderr: "inherit",
  })
    .output();
  if (!out.success) throw new Error(`etcd-cluster.sh ${cmd} failed`);
}

async function etcdDriver(): Promise<Driver> {
  const { Etcd3 } = await import("etcd3");
  const c = new Etcd3({
    hosts: ["http://127.0.0.1:23791", "http://127.0.0.1:23792", "http://127.0.0.1:23793"],
  });
  return {
    name: "etcd",
    put: async (k, v) => {
      await c.put(k).value(v);
    },
    get: (k) => c.get(k).string(),
    close: () => Promise.resolve(c.close()),
  };
}

function fmtRow(r: Result): string {
  return `${r.system.padEnd(5)} ${r.op.padEnd(4)} c=${String(r.c).padEnd(4)} ${
    String(Math.round(r.opsPerSec)).padStart(7)
  } ops/s  p50 ${r.p50.toFixed(2).padStart(7)} ms  p99 ${r.p99.toFixed(2).padStart(7)} ms${
    r.errors ? `  errors ${r.errors}` : ""
  }`;
}

const withEtcd = !a["no-etcd"] && await etcdAvailable();
if (!a["no-etcd"] && !withEtcd) {
  console.error("etcd not installed (apt-get install -y etcd-server etcd-client): gokv only");
}

const gokv = await startGokv();
let etcdStarted = false;
const results: Result[] = [];
try {
  const g = await gokvDriver(gokv.endpoints);
  let e: Driver | undefined;
  if (withEtcd) {
    await etcdCluster("start");
    etcdStarted = true;
    e = await etcdDriver();
  }
  if (OPS.includes("get")) {
    await preload(g);
    if (e) await preload(e);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const op of OPS) {
      for (const c of CLIENTS) {
        for (const d of e ? [g, e] : [g]) {
          const r = await load(d, op, N, c);
          results.push(r);
          console.log(fmtRow(r));
        }
      }
    }
  }
  await g.close();
  await e?.close();
} finally {
  await gokv.stop();
  if (etcdStarted) await etcdCluster("stop");
}

if (withEtcd) {
  console.log("\nratios gokv/etcd (throughput; p99 etcd/gokv > 1 means gokv's p99 is lower):");
  for (const op of OPS) {
    for (const c of CLIENTS) {
      const avg = (sys: string, f: (r: Result) => number) => {
        const rs = results.filter((r) => r.system === sys && r.op === op && r.c === c);
        return rs.reduce((s, r) => s + f(r), 0) / rs.length;
      };
      const tput = avg("gokv", (r) => r.opsPerSec) / avg("etcd", (r) => r.opsPerSec);
      const p99 = avg("etcd", (r) => r.p99) / avg("gokv", (r) => r.p99);
      console.log(
        `${op.padEnd(4)} c=${String(c).padEnd(4)} throughput x${tput.toFixed(2)}  p99 x${
          p99.toFixed(2)
        }`,
      );
    }
  }
}
console.log(JSON.stringify({ results }));
Deno.exit(0);
