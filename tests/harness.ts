/**
 * Multi-process test harness: real `gokv` processes (deno run main.ts) on loopback with free
 * ports, a generated config in a temporary directory, and helpers to run CLI commands, kill -9
 * and restart nodes. Every cluster started must be stopped with `stop()` (use try/finally).
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TcpProxy } from "./proxy.ts";

/** The repository root. */
export const ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "main.ts");
const TRIPWIRE = join(ROOT, "tests", "tripwire.ts");
const decoder = new TextDecoder();

/** Ports handed out by this process: the OS may offer a just-closed port again. */
const handedOut = new Set<number>();

/** Picks a free TCP port on 127.0.0.1, never one this process handed out before. */
export function freePort(): number {
  for (;;) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Result of one CLI invocation. */
export interface CliResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** Runs `gokv <args>` (deno run main.ts) and collects its output. */
export async function gokv(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: opts.cwd ?? ROOT,
    env: { NO_COLOR: "1", ...opts.env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** PUTs `value` at `key` over HTTP; true when acknowledged (false on any error). */
export async function httpPut(addr: string, key: string, value: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${addr}/v1/kv/${encodeURIComponent(key)}`, {
      method: "PUT",
      body: value,
      signal: AbortSignal.timeout(3000),
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** PUTs `key` = `value` over HTTP; the versionstamp the write got (20 hex digits), or undefined
 * when it was not acknowledged. */
export async function httpPutVersionstamp(
  addr: string,
  key: string,
  value: string,
): Promise<string | undefined> {
  try {
    const res = await fetch(`http://${addr}/v1/kv/${encodeURIComponent(key)}`, {
      method: "PUT",
      body: value,
      signal: AbortSignal.timeout(3000),
    });
    const body = await res.json();
    return res.ok && typeof body.versionstamp === "string" ? body.versionstamp : undefined;
  } catch {
    return undefined;
  }
}

/** GETs `key` over HTTP with the given consistency; the status and the value, if any. */
export async function httpGet(
  addr: string,
  key: string,
  consistency = "linearizable",
  timeoutMs = 3000,
): Promise<{ status: number; value?: string }> {
  const res = await fetch(
    `http://${addr}/v1/kv/${encodeURIComponent(key)}?consistency=${consistency}`,
    { signal: AbortSignal.timeout(timeoutMs) },
  );
  // A found value is the raw body; a missing key a JSON error.
  const text = await res.text();
  return { status: res.status, value: res.status === 200 ? text : undefined };
}

/** Polls `pred` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(
  pred: () => T | Promise<T>,
  timeoutMs: number,
  what = "condition",
  stepMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (true) {
    try {
      const v = await pred();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Addresses of one node. */
export interface NodeAddrs {
  /** Node id. */
  id: number;
  /** Peer address. */
  peer: string;
  /** Client address. */
  client: string;
  /** HTTP address. */
  http: string;
}

/** Options for {@link TestCluster.create}. */
export interface ClusterOptions {
  /** Number of nodes (default 3). */
  size?: number;
  /** Storage backend (default lsm). */
  storage?: "memory" | "simplefile" | "lsm";
  /** Transport (default tcp). */
  transport?: "tcp" | "grpc";
  /** Extra YAML appended to the config (raft: ... etc). */
  extraYaml?: string;
  /** Extra environment for the nodes. */
  env?: Record<string, string>;
  /** Start nodes through tests/tripwire.ts: an unhandled promise rejection makes a node print
   * `UNHANDLED REJECTION` and exit with code 70. */
  tripwire?: boolean;
  /** Start nodes with this many file descriptors at most (`ulimit -n`, through sh). */
  maxOpenFiles?: number;
  /** Route peer traffic through one TCP proxy per ordered pair of nodes, with a config file
   * per node, so that links can be cut with {@link TestCluster.isolate}. */
  proxied?: boolean;
  /** How {@link TestCluster.status} reaches a node's HTTP port (default: plain fetch of
   * `http://<http>/v1/status`); secured clusters pass HTTPS with a CA and a token. */
  statusFetch?: (http: string) => Promise<Response>;
}

/** A cluster of real node processes. */
export class TestCluster {
  /** Node addresses by id. */
  readonly nodes: Map<number, NodeAddrs> = new Map();
  /** Running processes by node id. */
  readonly procs: Map<number, Deno.ChildProcess> = new Map();
  /** Proxies by "from->to" when proxied. */
  readonly proxies: Map<string, TcpProxy> = new Map();
  private constructor(
    /** The temporary directory holding config, data and logs. */
    readonly dir: string,
    /** The config file path. */
    readonly configPath: string,
    private readonly opts: ClusterOptions,
  ) {}

  /** Writes a config for `size` nodes on free ports (nodes are not started). */
  static async create(opts: ClusterOptions = {}): Promise<TestCluster> {
    const dir = await Deno.makeTempDir({ prefix: "gokv-it-" });
    const c = new TestCluster(dir, join(dir, "config.yaml"), opts);
    for (let id = 1; id <= (opts.size ?? 3); id++) c.addNodeAddrs(id);
    await c.writeConfig();
    return c;
  }

  /** Allocates addresses for another node id (call writeConfig after). */
  addNodeAddrs(id: number): NodeAddrs {
    const n = {
      id,
      peer: `127.0.0.1:${freePort()}`,
      client: `127.0.0.1:${freePort()}`,
      http: `127.0.0.1:${freePort()}`,
    };
    this.nodes.set(id, n);
    return n;
  }

  /** The config file node `id` is started with. */
  configFor(id: number): string {
    return this.opts.proxied ? join(this.dir, `config-${id}.yaml`) : this.configPath;
  }

  /** (Re)writes the config file(s) from the known nodes. */
  async writeConfig(): Promise<void> {
    await Deno.writeTextFile(this.configPath, this.configText());
    if (!this.opts.proxied) return;
    for (const from of this.nodes.keys()) {
      const peerOf = (to: NodeAddrs) => {
        if (to.id === from) return to.peer;
        const key = `${from}->${to.id}`;
        let p = this.proxies.get(key);
        if (!p) this.proxies.set(key, p = new TcpProxy(to.peer));
        return p.address;
      };
      await Deno.writeTextFile(this.configFor(from), this.configText(peerOf));
    }
  }

  /** Cuts every peer link to and from node `id` (proxied clusters only). */
  isolate(id: number): void {
    for (const [key, p] of this.proxies) {
      const [a, b] = key.split("->").map(Number);
      if (a === id || b === id) p.partition();
    }
  }

  /** Restores every peer link to and from node `id`. */
  heal(id: number): void {
    for (const [key, p] of this.proxies) {
      const [a, b] = key.split("->").map(Number);
      if (a === id || b === id) p.heal();
    }
  }

  private configText(peerOf: (n: NodeAddrs) => string = (n) => n.peer): string {
    const lines = [
      `data_dir: ${JSON.stringify(join(this.dir, "data"))}`,
      `storage: ${this.opts.storage ?? "lsm"}`,
      `transport: ${this.opts.transport ?? "tcp"}`,
      "nodes:",
      ...[...this.nodes.values()].map((n) =>
        `  - { id: ${n.id}, peer: ${
          peerOf(n)
        }, client: ${n.client}, http: ${n.http}, listen_peer: ${n.peer} }`
      ),
      this.opts.extraYaml ??
        "raft:\n  tick_ms: 10\n  heartbeat_ms: 50\n  election_ms: 300\n",
      "log:\n  level: info\n",
    ];
    return lines.join("\n") + "\n";
  }

  /** Starts node `id` (extra server flags in `args`). */
  start(id: number, args: string[] = []): Deno.ChildProcess {
    const log = Deno.openSync(join(this.dir, `node-${id}.log`), {
      append: true,
      create: true,
      write: true,
    });
    const entry = this.opts.tripwire ? TRIPWIRE : MAIN;
    const deno = [Deno.execPath(), "run", "-A", entry];
    const limit = this.opts.maxOpenFiles;
    // `exec` keeps the node's pid the child's pid (for kill and /proc).
    const [cmd, ...pre] = limit
      ? ["sh", "-c", `ulimit -n ${limit} && exec "$@"`, "sh", ...deno]
      : deno;
    const proc = new Deno.Command(cmd, {
      args: [
        ...pre,
        "server",
        "--config",
        this.configFor(id),
        "--id",
        String(id),
        ...args,
      ],
      cwd: ROOT,
      env: { NO_COLOR: "1", ...this.opts.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Copy output into the node's log file so failures can be diagnosed.
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) log.writeSync(chunk);
    };
    Promise.all([pump(proc.stdout), pump(proc.stderr)]).finally(() => log.close()).catch(
      () => {},
    );
    this.procs.set(id, proc);
    return proc;
  }

  /** Starts every configured node. */
  startAll(): void {
    for (const id of this.nodes.keys()) this.start(id);
  }

  /** The status JSON of node `id` (throws when unreachable). */
  async status(id: number): Promise<Record<string, unknown>> {
    const http = this.nodes.get(id)!.http;
    const res = this.opts.statusFetch
      ? await this.opts.statusFetch(http)
      : await fetch(`http://${http}/v1/status`, { signal: AbortSignal.timeout(1000) });
    return await res.json();
  }

  /** Waits until some running node reports itself leader; returns its id. */
  async waitLeader(timeoutMs = 20_000, among?: number[]): Promise<number> {
    return await waitFor(
      async () => {
        for (const id of among ?? this.procs.keys()) {
          try {
            const s = await this.status(id);
            if (s.role === "leader") return id;
          } catch {
            // down or starting
          }
        }
        return 0;
      },
      timeoutMs,
      "a leader",
    );
  }

  /** Waits until every running node (or those of `among`) answers on its HTTP port. */
  async waitServing(timeoutMs = 20_000, among?: number[]): Promise<void> {
    for (const id of among ?? [...this.procs.keys()]) {
      await waitFor(
        async () => {
          try {
            await this.status(id);
            return true;
          } catch {
            return false; // down or starting
          }
        },
        timeoutMs,
        `node ${id} serving`,
      );
    }
  }

  /** Sends SIGKILL to node `id` and waits for it to exit. */
  async kill(id: number): Promise<void> {
    const p = this.procs.get(id);
    if (!p) return;
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
    await p.status;
    this.procs.delete(id);
  }

  /** Sends SIGTERM to node `id` and returns its exit code. */
  async terminate(id: number): Promise<number> {
    const p = this.procs.get(id);
    if (!p) return 0;
    p.kill("SIGTERM");
    const st = await p.status;
    this.procs.delete(id);
    return st.code;
  }

  /** Client endpoints, comma-separated, for `--endpoints`. */
  endpoints(ids?: number[]): string {
    return (ids ?? [...this.nodes.keys()]).map((id) => this.nodes.get(id)!.client).join(",");
  }

  /** Runs a CLI command against this cluster's config. */
  cli(args: string[]): Promise<CliResult> {
    return gokv([...args, "--config", this.configPath]);
  }

  /** The node's log so far (for failure messages). */
  async log(id: number): Promise<string> {
    return await Deno.readTextFile(join(this.dir, `node-${id}.log`)).catch(() => "");
  }

  /** Kills every node and removes the temporary directory. */
  async stop(): Promise<void> {
    for (const id of [...this.procs.keys()]) await this.kill(id);
    for (const p of this.proxies.values()) p.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
