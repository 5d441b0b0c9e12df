/**
 * A gokv cluster of subprocesses on loopback for the benchmarks (bench/cluster_bench.ts,
 * bench/cluster_profile.ts, bench/scale_bench.ts): 3 nodes or `nodes`, free ports, a config in a
 * temporary directory, optionally TLS on every port with a cluster secret and a write token,
 * started from this checkout or another one; a node can be added at run time (`addNode`: member
 * add, then `--join`).
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { issueCert, makeCa } from "../scripts/tls_certs.ts";
import { hashToken } from "../server/auth.ts";
import { Client } from "../client/client.ts";

/** The root of this checkout. */
export const ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The KV Connect access token of the benchmark clusters (DENO_KV_ACCESS_TOKEN of denokv). */
export const KV_TOKEN = "bench-kv-connect-token";

/** Whether the checkout at `root` serves KV Connect (server/kv_connect.ts). */
export function hasKvConnect(root: string): boolean {
  try {
    return Deno.statSync(join(root, "server", "kv_connect.ts")).isFile;
  } catch {
    return false;
  }
}

/** Distinct free ports (all listeners are held open until every port is chosen). */
export function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => l.addr.port);
  for (const l of ls) l.close();
  return ports;
}

/** SIGTERM to every process, waits for their exit, then removes `dir`. */
export async function stopAll(procs: Deno.ChildProcess[], dir: string): Promise<void> {
  for (const p of procs) {
    try {
      p.kill("SIGTERM");
    } catch { /* gone */ }
  }
  await Promise.all(procs.map((p) => p.status));
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** What a TLS + token cluster's generator needs. */
export interface Secured {
  /** The CA certificate file. */
  ca: string;
  /** A bearer token with the write role. */
  token: string;
}

/** A CA, node certificates, a cluster secret and a write token in `dir`; the config lines. */
async function secure(dir: string, ids: number[]): Promise<{ yaml: string; sec: Secured }> {
  const ca = await makeCa(dir);
  for (const id of ids) await issueCert(dir, ca, `node-${id}`);
  const token = crypto.randomUUID();
  await Deno.writeTextFile(
    join(dir, "tokens.yaml"),
    `tokens:\n  - { name: bench, role: write, hash: "${hashToken(token)}" }\n`,
  );
  await Deno.writeTextFile(join(dir, "secret"), crypto.randomUUID() + crypto.randomUUID());
  const yaml = [
    "security:",
    `  peer_secret_file: ${JSON.stringify(join(dir, "secret"))}`,
    `  tokens_file: ${JSON.stringify(join(dir, "tokens.yaml"))}`,
    "tls:",
    `  cert: ${JSON.stringify(join(dir, "node-{id}.crt"))}`,
    `  key: ${JSON.stringify(join(dir, "node-{id}.key"))}`,
    `  ca: ${JSON.stringify(ca.cert)}`,
  ].join("\n");
  return { yaml, sec: { ca: ca.cert, token } };
}

/** How to start a benchmark cluster. */
export interface ClusterOptions {
  /** TLS on every port, the cluster secret and a tokens file (default false). */
  tls?: boolean;
  /** The checkout whose main.ts runs (default this one). */
  root?: string;
  /** The storage backend (default lsm). */
  storage?: string;
  /** Config lines appended to the generated config (e.g. a `limits:` section). */
  extraConfig?: string;
  /** How many nodes (default 3). */
  nodes?: number;
  /** `raft.snapshot_threshold` (the node's default when absent). */
  snapshotThreshold?: number;
  /** The nodes' log level (default warn; their stderr is this process's). */
  logLevel?: string;
  /** Extra `deno run` flags of node `id` (e.g. `--cpu-prof`), before the script. */
  denoFlags?: (id: number) => string[];
}

/** A running benchmark cluster. */
export interface GokvCluster {
  /** The client ports, node 1 first. */
  endpoints: string[];
  /** The HTTP ports, node 1 first. */
  http: string[];
  /** The server processes' pids, node 1 first (a node added by `addNode` at the end). */
  pids: number[];
  /** The data directory (`<dataDir>/node-<id>` holds a node's files). */
  dataDir: string;
  /**
   * Adds node `id` (the next free one by default): member add at the leader, then the node is
   * started with `--join` (it catches up from the leader's log or a snapshot). Resolves once the
   * member add is committed and the process runs; `endpoints`, `http` and `pids` include it.
   */
  addNode: (id?: number) => Promise<{ id: number; client: string; http: string; pid: number }>;
  /** The id (1..3) of the node that is leader now (polled). */
  leader: () => Promise<number>;
  /** The leader's KV Connect URL (as the binary client, denokv talks to the leader). */
  kvUrl: () => Promise<string>;
  /** SIGTERM to every node, waits for their exit, removes the data. */
  stop: () => Promise<void>;
  /** What a generator needs for a TLS cluster. */
  sec?: Secured;
}

/** Starts 3 nodes and waits (30 s at most) until one of them is leader. */
export async function startGokv(opts: ClusterOptions = {}): Promise<GokvCluster> {
  const root = opts.root ?? ROOT;
  const dir = await Deno.makeTempDir({ prefix: "gokv-bench-" });
  const count = opts.nodes ?? 3;
  const ids = Array.from({ length: count }, (_, i) => i + 1);
  // Certificates for nodes added later too (addNode: up to 2 more).
  const secured = opts.tls ? await secure(dir, [...ids, count + 1, count + 2]) : undefined;
  const addrs = (id: number, ports: number[]) => ({
    id,
    peer: `127.0.0.1:${ports[0]}`,
    client: `127.0.0.1:${ports[1]}`,
    http: `127.0.0.1:${ports[2]}`,
  });
  const ports = freePorts(3 * count);
  const nodes = ids.map((id, i) => addrs(id, ports.slice(3 * i, 3 * i + 3)));
  const dataDir = join(dir, "data");
  const configText = () =>
    [
      `data_dir: ${JSON.stringify(dataDir)}`,
      `storage: ${opts.storage ?? "lsm"}`,
      "transport: tcp",
      "nodes:",
      ...nodes.map((n) =>
        `  - { id: ${n.id}, peer: ${n.peer}, client: ${n.client}, http: ${n.http} }`
      ),
      "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 500",
      opts.snapshotThreshold ? `  snapshot_threshold: ${opts.snapshotThreshold}\n` : "",
      // KV Connect (the denokv rows; a --baseline only when it has KV Connect: an older one
      // refuses the config key).
      hasKvConnect(root) ? `kv_connect:\n  access_token: ${KV_TOKEN}\n` : "",
      `log:\n  level: ${opts.logLevel ?? "warn"}\n`,
      secured?.yaml ?? "",
      opts.extraConfig ?? "",
    ].join("\n");
  const configPath = join(dir, "config.yaml");
  await Deno.writeTextFile(configPath, configText());
  const spawn = (id: number, extra: string[] = []) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...(opts.denoFlags?.(id) ?? []),
        join(root, "main.ts"),
        "server",
        "--config",
        configPath,
        "--id",
        String(id),
        ...extra,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  const procs = nodes.map((n) => spawn(n.id));
  const client = secured
    ? Deno.createHttpClient({ caCerts: [await Deno.readTextFile(secured.sec.ca)] })
    : undefined;
  /** The node that says it is leader, or 0. */
  const findLeader = async (): Promise<number> => {
    for (const n of nodes) {
      try {
        const r = await fetch(`${secured ? "https" : "http"}://${n.http}/v1/status`, {
          signal: AbortSignal.timeout(500),
          client,
          headers: secured ? { authorization: `Bearer ${secured.sec.token}` } : {},
        });
        if ((await r.json()).role === "leader") return n.id;
      } catch { /* starting */ }
    }
    return 0;
  };
  const deadline = Date.now() + 30_000;
  let up = false;
  while (!up && Date.now() < deadline) {
    up = await findLeader() > 0;
    if (!up) await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async () => {
    client?.close();
    await stopAll(procs, dir);
  };
  if (!up) {
    await stop();
    throw new Error("gokv cluster did not elect a leader");
  }
  /** Polls for 10 s at most; node 1 if none answers as leader by then. */
  const leader = async () => {
    const until = Date.now() + 10_000;
    for (;;) {
      const id = await findLeader();
      if (id > 0 || Date.now() > until) return id || 1;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const cluster: GokvCluster = {
    endpoints: nodes.map((n) => n.client),
    http: nodes.map((n) => n.http),
    pids: procs.map((p) => p.pid),
    dataDir,
    leader,
    kvUrl: async () => `http://${nodes[(await leader()) - 1].http}/kv`,
    addNode: async (id = Math.max(...nodes.map((n) => n.id)) + 1) => {
      const n = addrs(id, freePorts(3));
      nodes.push(n);
      // The new node finds its own addresses in the config; the running ones never re-read it.
      await Deno.writeTextFile(configPath, configText());
      const c = await Client.connect({
        endpoints: cluster.endpoints,
        timeoutMs: 60_000,
        tls: secured && { caCert: await Deno.readTextFile(secured.sec.ca) },
        token: secured?.sec.token,
      });
      try {
        await c.addMember({ id, peer: n.peer, client: n.client, http: n.http });
      } finally {
        await c.close();
      }
      const p = spawn(id, ["--join"]);
      procs.push(p);
      cluster.endpoints.push(n.client);
      cluster.http.push(n.http);
      cluster.pids.push(p.pid);
      return { id, client: n.client, http: n.http, pid: p.pid };
    },
    stop,
    sec: secured?.sec,
  };
  return cluster;
}
