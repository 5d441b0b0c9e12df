/**
 * `gokv snapshot save|restore|status` — backups as etcd's `etcdctl snapshot save`,
 * `etcdutl snapshot restore` and `etcdutl snapshot status`:
 *
 * - `save <file>` streams `GET /v1/snapshot` from the leader into `<file>.part`, verifies it
 *   (checksum, counts, key order), fsyncs it and renames it to `<file>`; a failure leaves no
 *   `<file>`.
 * - `restore <file> --config FILE --id N` seeds `<data_dir>/node-N` of a NEW cluster: it builds
 *   the state machine from the file and a Raft log holding a snapshot at the file's index and
 *   term whose configuration is every node of the config (not the old cluster's members), in a
 *   temporary directory renamed into place only after the file's checksum verified. Run it for
 *   every node of the new config, then start the nodes (without `--join`).
 * - `status <file> [-w table|json]` verifies the file and prints its metadata.
 *
 * Exit codes: 0 success, 1 failed (unreachable cluster, corrupt or truncated file, existing data
 * directory), 2 usage or configuration error.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { asUsageError, EXIT_FAILED, EXIT_OK, UsageError } from "../config/cli.ts";
import { type Config, ConfigError, loadConfig } from "../config/config.ts";
import { Client, type ClientOptions } from "../client/client.ts";
import { connectionSecurity, SECURITY_HELP, SECURITY_OPTIONS } from "../client/cli.ts";
import { openStorage } from "../storage/mod.ts";
import { fsyncDir } from "../storage/fsutil.ts";
import {
  BackupFormatError,
  type BackupSummary,
  openBackup,
  verifyBackup,
} from "./backup_format.ts";

/** The snapshot command's usage text. */
export const SNAPSHOT_USAGE = `Usage:
  gokv snapshot save <file> [-c FILE | -e A,B,C] [--timeout-ms N]
  gokv snapshot restore <file> --config FILE --id N [--data-dir DIR]
  gokv snapshot status <file> [-w table|json]

save      streams a consistent snapshot from the leader into <file> (written as <file>.part,
          verified, then renamed) while the cluster keeps serving
restore   seeds node N's data directory of a NEW cluster from <file>; its members are the nodes
          of the config. Run it once per node, then start every node with \`gokv server\`
status    verifies <file> (checksum, counts) and prints its index, term, versionstamp, keys, size

Options:
  -c, --config FILE       config file (default conf/config.yaml)
  -e, --endpoints A,B,C   save: client addresses host:port (instead of --config); the
                          nodes' HTTP addresses are asked of them
      --timeout-ms N      save: deadline for finding the leader and its first byte (default 10000)
      --id N              restore: the node to seed
      --data-dir DIR      restore: instead of the config's data_dir
  -w, --write-out F       status: table (default) or json
  -h, --help              show this help
${SECURITY_HELP} (save: HTTPS to the nodes; a token needs role admin)`;

/** Where the command writes (tests capture it). */
export interface SnapshotIO {
  /** A line to stdout. */
  out(line: string): void;
  /** A line to stderr. */
  err(line: string): void;
}

const stdio: SnapshotIO = {
  out: (l) => console.log(l),
  err: (l) => console.error(l),
};

/** A snapshot operation failed (exit 1). */
export class SnapshotError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "SnapshotError";
  }
}

function isAddr(a: string): boolean {
  return /^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(a);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Finds the leader among `https` (HTTP addresses) and returns its snapshot response. A node
 * that is not the leader answers 503 with `leaderHttp`, which is tried next.
 */
async function fetchFromLeader(
  addrs: string[],
  deadline: number,
  security: Pick<ClientOptions, "tls" | "token">,
): Promise<{ res: Response; addr: string }> {
  const scheme = security.tls ? "https" : "http";
  const client = security.tls
    ? Deno.createHttpClient({
      caCerts: security.tls.caCert ? [security.tls.caCert] : undefined,
      cert: security.tls.cert,
      key: security.tls.key,
    })
    : undefined;
  const headers: Record<string, string> = security.token
    ? { authorization: `Bearer ${security.token}` }
    : {};
  const errors: string[] = [];
  const queue = [...addrs];
  const tried = new Set<string>();
  while (Date.now() < deadline) {
    const addr = queue.shift();
    if (addr === undefined) {
      // Every node said "not leader" or failed (an election may be in progress): retry.
      await new Promise((r) => setTimeout(r, 200));
      queue.push(...addrs);
      tried.clear();
      continue;
    }
    if (tried.has(addr)) continue;
    tried.add(addr);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), Math.max(1, deadline - Date.now()));
    try {
      const res = await fetch(`${scheme}://${addr}/v1/snapshot`, {
        signal: ctl.signal,
        headers,
        client,
      });
      clearTimeout(timer);
      if (res.status === 200) return { res, addr };
      const body = await res.json().catch(() => ({})) as { error?: string; leaderHttp?: string };
      if (body.error === "not_leader") {
        if (body.leaderHttp && !tried.has(body.leaderHttp)) queue.unshift(body.leaderHttp);
        errors.push(`${addr}: not the leader`);
        continue;
      }
      throw new SnapshotError(
        `${addr} refused the snapshot: ${res.status} ${JSON.stringify(body)}`,
      );
    } catch (e) {
      clearTimeout(timer);
      if (e instanceof SnapshotError) throw e;
      errors.push(`${addr}: ${(e as Error).message}`);
    }
  }
  throw new SnapshotError(
    `no leader answered before the deadline (${errors.slice(-addrs.length).join("; ")})`,
  );
}

/** `gokv snapshot save`: returns the verified summary. */
export async function saveSnapshot(
  file: string,
  httpAddrs: string[],
  timeoutMs = 10_000,
  security: Pick<ClientOptions, "tls" | "token"> = {},
): Promise<BackupSummary & { from: string }> {
  const part = `${file}.part`;
  const { res, addr } = await fetchFromLeader(httpAddrs, Date.now() + timeoutMs, security);
  const out = await Deno.open(part, { write: true, create: true, truncate: true });
  let ok = false;
  try {
    try {
      // Chunk by chunk: the reader pulls from the leader only as fast as the disk takes it.
      for await (const chunk of res.body!) {
        for (let off = 0; off < chunk.length;) off += await out.write(chunk.subarray(off));
      }
      await out.sync();
    } catch (e) {
      throw new SnapshotError(`the snapshot stream from ${addr} broke: ${(e as Error).message}`);
    } finally {
      out.close();
    }
    const summary = await verifyBackup(part);
    await Deno.rename(part, file);
    fsyncDir(dirname(resolve(file)));
    ok = true;
    return { ...summary, from: addr };
  } finally {
    if (!ok) await Deno.remove(part).catch(() => {});
  }
}

/** `gokv snapshot restore`: seeds `<dataDir>/node-<id>` from `file`; returns the summary. */
export async function restoreSnapshot(
  file: string,
  config: Config,
  id: number,
  dataDir = config.dataDir,
): Promise<BackupSummary & { dir: string }> {
  if (!config.nodes.some((n) => n.id === id)) {
    throw new UsageError(
      `node id ${id} is not in the config (nodes: ${config.nodes.map((n) => n.id).join(", ")})`,
    );
  }
  if (config.storage === "memory") {
    throw new UsageError(
      "storage is memory, which keeps nothing on disk: restore into simplefile or lsm",
    );
  }
  const target = join(dataDir, `node-${id}`);
  if (await exists(target)) {
    let empty = true;
    for await (const _ of Deno.readDir(target)) {
      empty = false;
      break;
    }
    if (!empty) {
      throw new SnapshotError(
        `data directory ${target} already exists and is not empty: restore seeds a new ` +
          `member; remove it or choose another --data-dir`,
      );
    }
    await Deno.remove(target);
  }
  await Deno.mkdir(dataDir, { recursive: true });
  const tmp = join(dataDir, `.${basename(target)}.restore-${Deno.pid}`);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  const backup = await openBackup(file);
  let done = false;
  try {
    const h = backup.header;
    if (h.index < 1) throw new BackupFormatError(file, "index 0: the snapshot holds no log");
    const { log, sm } = await openStorage(config.storage, tmp, { lsm: config.lsm });
    try {
      // The keys stream into the state machine; the file's checksum is verified at their end
      // (entries() throws otherwise) and only then is the directory renamed into place.
      await sm.importState({
        appliedIndex: h.index,
        meta: backup.meta,
        entries: backup.entries(),
      });
      // The Raft log starts with a snapshot at the file's index whose configuration is the new
      // cluster's: every node of the config, as voters. Its data is the state machine's own
      // snapshot (what the leader sends a member that needs one).
      const data = await sm.snapshot();
      log.applySnapshot({
        meta: {
          index: h.index,
          term: h.term,
          conf: {
            voters: config.nodes.map((n) => n.id).sort((a, b) => a - b),
            votersOutgoing: [],
            learners: [],
            learnersNext: [],
          },
        },
        data,
      });
      log.setHardState({ term: h.term, vote: 0, commit: h.index });
      await log.sync();
    } finally {
      await log.close().catch(() => {});
      await sm.close().catch(() => {});
    }
    const summary = backup.summary();
    await Deno.rename(tmp, target);
    fsyncDir(dataDir);
    done = true;
    return { ...summary, dir: target };
  } finally {
    backup.close();
    if (!done) await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

function sizeText(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${(n / (1 << 30)).toFixed(2)} GB`;
}

/** The status table (etcd's layout: one header row, one value row). */
export function formatSummaryTable(s: BackupSummary): string {
  const cols: [string, string][] = [
    ["HASH", s.sha256.slice(0, 16)],
    ["INDEX", String(s.header.index)],
    ["TERM", String(s.header.term)],
    ["VERSIONSTAMP", s.header.versionstamp ?? "-"],
    ["TOTAL KEYS", String(s.keys)],
    ["SESSIONS", String(s.sessions)],
    ["TOTAL SIZE", sizeText(s.bytes)],
    ["CREATED", s.header.createdAt],
    ["NODE", String(s.header.nodeId)],
  ];
  const w = cols.map(([h, v]) => Math.max(h.length, v.length));
  const line = "+" + w.map((n) => "-".repeat(n + 2)).join("+") + "+";
  const row = (xs: string[]) => "|" + xs.map((x, i) => ` ${x.padEnd(w[i])} `).join("|") + "|";
  return [line, row(cols.map((c) => c[0])), line, row(cols.map((c) => c[1])), line].join("\n");
}

/** The summary as `-w json` prints it. */
export function summaryJson(s: BackupSummary): Record<string, unknown> {
  return {
    sha256: s.sha256,
    index: s.header.index,
    term: s.header.term,
    versionstamp: s.header.versionstamp,
    keys: s.keys,
    sessions: s.sessions,
    bytes: s.bytes,
    createdAt: s.header.createdAt,
    nodeId: s.header.nodeId,
    gokvVersion: s.header.gokvVersion,
    format: s.header.format,
  };
}

/** The HTTP addresses of the nodes: from the config, or asked of the client endpoints. */
async function httpAddrsOf(
  values: { config?: string; endpoints?: string },
  timeoutMs: number,
  security: Pick<ClientOptions, "tls" | "token">,
): Promise<string[]> {
  if (values.endpoints !== undefined) {
    const eps = values.endpoints.split(",").map((s) => s.trim()).filter((s) => s);
    if (eps.length === 0) throw new UsageError("--endpoints is empty");
    for (const e of eps) if (!isAddr(e)) throw new UsageError(`endpoint "${e}" is not host:port`);
    const c = await Client.connect({ endpoints: eps, timeoutMs, ...security });
    try {
      const https = (await c.members()).map((m) => m.http).filter((h) => h);
      if (https.length === 0) throw new SnapshotError("the cluster reported no HTTP addresses");
      return https;
    } finally {
      await c.close();
    }
  }
  const cfg = await loadConfig(values.config ?? "conf/config.yaml");
  return cfg.nodes.map((n) => n.http);
}

/** Runs `gokv snapshot <sub> ...`; returns the exit code. */
export async function snapshotCommand(argv: string[], io: SnapshotIO = stdio): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        config: { type: "string", short: "c" },
        endpoints: { type: "string", short: "e" },
        "timeout-ms": { type: "string" },
        id: { type: "string" },
        "data-dir": { type: "string" },
        "write-out": { type: "string", short: "w" },
        help: { type: "boolean", short: "h" },
        ...SECURITY_OPTIONS,
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw asUsageError(e);
  }
  const v = parsed.values;
  if (v.help) {
    io.out(SNAPSHOT_USAGE);
    return EXIT_OK;
  }
  const [sub, file, ...extra] = parsed.positionals;
  if (sub !== "save" && sub !== "restore" && sub !== "status") {
    throw new UsageError(
      sub === undefined
        ? "a subcommand is required: save, restore or status"
        : `unknown subcommand "${sub}"`,
    );
  }
  if (file === undefined || file === "") throw new UsageError(`snapshot ${sub} needs a <file>`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const only = (allowed: string[]) => {
    for (const k of Object.keys(v)) {
      if (k !== "help" && v[k as keyof typeof v] !== undefined && !allowed.includes(k)) {
        throw new UsageError(`--${k} does not apply to snapshot ${sub}`);
      }
    }
  };
  try {
    if (sub === "save") {
      only(["config", "endpoints", "timeout-ms", "cacert", "cert", "key", "token"]);
      const t = v["timeout-ms"] === undefined ? 10_000 : Number(v["timeout-ms"]);
      if (!Number.isInteger(t) || t < 1) {
        throw new UsageError("--timeout-ms must be an integer >= 1");
      }
      const security = await connectionSecurity(v);
      const addrs = await httpAddrsOf(v, t, security);
      const s = await saveSnapshot(file, addrs, t, security);
      io.out(
        `Snapshot saved at ${file} (index ${s.header.index}, term ${s.header.term}, ` +
          `${s.keys} keys, ${sizeText(s.bytes)}, sha256 ${s.sha256.slice(0, 16)}, from ${s.from})`,
      );
      return EXIT_OK;
    }
    if (sub === "status") {
      only(["write-out"]);
      const w = v["write-out"] ?? "table";
      if (w !== "table" && w !== "json") throw new UsageError("--write-out must be table or json");
      const s = await verifyBackup(file);
      io.out(w === "json" ? JSON.stringify(summaryJson(s)) : formatSummaryTable(s));
      return EXIT_OK;
    }
    only(["config", "id", "data-dir"]);
    if (v.id === undefined) throw new UsageError("--id is required");
    const id = Number(v.id);
    if (!Number.isInteger(id) || id < 1) throw new UsageError("--id must be a positive integer");
    const config = await loadConfig(v.config ?? "conf/config.yaml");
    const s = await restoreSnapshot(file, config, id, v["data-dir"] ?? config.dataDir);
    io.out(
      `Restored node ${id} into ${s.dir} (index ${s.header.index}, term ${s.header.term}, ` +
        `${s.keys} keys, members ${config.nodes.map((n) => n.id).join(",")})`,
    );
    return EXIT_OK;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) throw e;
    if (e instanceof BackupFormatError || e instanceof SnapshotError) {
      io.err(`gokv snapshot ${sub}: ${e.message}`);
      return EXIT_FAILED;
    }
    io.err(`gokv snapshot ${sub}: ${(e as Error)?.message ?? String(e)}`);
    return EXIT_FAILED;
  }
}
