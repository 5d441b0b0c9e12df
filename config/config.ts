/**
 * Cluster configuration: one YAML file describes the whole cluster.
 *
 * Every key has a default (see {@link describeConfig} / README "Configuration"), may be overridden
 * from the environment as `GOKV_<KEY>` or `GOKV_<SECTION>_<KEY>` (for example `GOKV_STORAGE=lsm`,
 * `GOKV_RAFT_HEARTBEAT_MS=50`), and is validated strictly: an unknown or misspelled key, a wrong
 * type, an out-of-range value or a duplicate id or address is a {@link ConfigError} naming the
 * file, the key path and the line.
 *
 * @example
 * ```ts ignore
 * import { loadConfig } from "./config.ts";
 * const config = await loadConfig("conf/config.yaml");
 * console.log(config.nodes.length);
 * ```
 *
 * @module
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, stringify } from "yaml";
import type { Node as YamlNode, Pair, YAMLMap } from "yaml";
import { NODE_LIMIT_SPECS, type NodeLimits } from "./limits.ts";

/** One cluster member as seen from the configuration file. */
export interface NodeConfig {
  /** The node id, a positive integer unique in the cluster. */
  id: number;
  /** The address other nodes dial for Raft traffic (host:port). */
  peer: string;
  /** The address clients dial for the binary client protocol (host:port). */
  client: string;
  /** The address of the HTTP/JSON API (host:port). */
  http: string;
  /** What the node binds for peer traffic (defaults to `peer`). */
  listenPeer: string;
  /** What the node binds for clients (defaults to `client`). */
  listenClient: string;
  /** What the node binds for HTTP (defaults to `http`). */
  listenHttp: string;
  /** This node's TLS settings, over the cluster-wide ones (README "Security"). */
  tls: TlsSettings;
}

/** One block of TLS settings (unset fields inherit; see {@link tlsFor}). */
export interface TlsBlock {
  /** Certificate chain (PEM path; `{id}` is replaced by the node id). */
  cert?: string;
  /** Private key (PEM path; `{id}` is replaced by the node id). */
  key?: string;
  /** The CA that signs the other side's certificates: always checked on the peer port; on the
   * client and HTTP ports only with `clientCertAuth`; also trusted by the node's own HTTPS calls
   * to other members. */
  ca?: string;
  /** Client and HTTP ports: require a client certificate signed by `ca` (mutual TLS). */
  clientCertAuth?: boolean;
}

/** The ports TLS applies to. */
export type TlsPort = "client" | "http" | "peer";

/** TLS settings: defaults for every port, and per-port overrides. */
export interface TlsSettings extends TlsBlock {
  /** Overrides for the client (binary protocol) port. */
  client?: TlsBlock;
  /** Overrides for the HTTP port. */
  http?: TlsBlock;
  /** Overrides for the peer port. */
  peer?: TlsBlock;
}

/** The TLS files of one port of one node, resolved ({@link tlsFor}). */
export interface TlsFiles {
  /** Certificate chain path. */
  cert: string;
  /** Private key path. */
  key: string;
  /** CA path ("" when none). */
  ca: string;
  /** Require client certificates (always true on the peer port). */
  clientCertAuth: boolean;
}

/** Raft timings and switches. */
export interface RaftSettings {
  /** Length of one Raft tick in milliseconds. */
  tickMs: number;
  /** Heartbeat interval in milliseconds (a multiple of tickMs). */
  heartbeatMs: number;
  /** Minimum election timeout in milliseconds; the real one is random in [T, 2T). */
  electionMs: number;
  /** Run a pre-vote round before a real election. */
  preVote: boolean;
  /** A leader that has not heard from a quorum for an election timeout steps down. */
  checkQuorum: boolean;
  /** Applied entries between two state-machine snapshots. */
  snapshotThreshold: number;
  /**
   * Applied entry bytes that also trigger a snapshot, once they exceed the last snapshot's size
   * too (0: entries only). Bounds the log on disk when entries are large batches.
   */
  snapshotBytes: number;
  /** Maximum AppendEntries messages in flight per follower. */
  maxInflightMsgs: number;
  /** Maximum bytes of entries in one AppendEntries message. */
  maxSizePerMsg: number;
  /** Maximum bytes of entries in flight (sent, not acknowledged) per follower. */
  maxInflightBytes: number;
  /** Serve linearizable reads from a leader lease (requires checkQuorum). */
  leaseRead: boolean;
}

/** LSM engine options (see lsm/). */
export interface LsmSettings {
  /** Memtable size before it is frozen and flushed. */
  memtableBytes: number;
  /** Target size of an SSTable data block. */
  blockBytes: number;
  /** Capacity of the data-block cache. */
  blockCacheBytes: number;
  /** Bloom filter bits per key. */
  bloomBitsPerKey: number;
  /** Number of L0 files that triggers a compaction. */
  l0CompactionTrigger: number;
  /** Number of L0 files at which writes wait. */
  l0StopTrigger: number;
  /** Target size of L1. */
  levelBaseBytes: number;
  /** Growth factor between levels. */
  levelMultiplier: number;
  /** Target size of one SSTable. */
  targetFileBytes: number;
}

/** Client session settings (the leader writes them into each registration). */
export interface SessionSettings {
  /** A client session expires after this many milliseconds unused. */
  idleTimeoutMs: number;
  /** Bound of the session table; registering evicts least recently used sessions above it. */
  maxSessions: number;
}

/** Logging settings. */
export interface LogSettings {
  /** The lowest level printed. */
  level: "debug" | "info" | "warn" | "error";
  /** `text` for terminals, `json` for machines. */
  format: "text" | "json";
}

/** Security settings (README "Security"); empty strings mean not configured. */
export interface SecuritySettings {
  /** Path of the cluster secret file. */
  peerSecretFile: string;
  /** Path of the tokens file (bearer tokens with roles; reloaded on SIGHUP). */
  tokensFile: string;
  /** /metrics and /healthz need a token too (with a tokens file). */
  protectMetrics: boolean;
}

/** HTTP API settings. */
export interface HttpSettings {
  /** Host names (besides IP literals, `localhost` and the members' configured addresses) the
   * HTTP API answers to: a check against DNS rebinding. */
  allowedHosts: string[];
  /** Origins allowed to call the API from a browser (CORS); none by default. */
  corsOrigins: string[];
}

/** The KV Connect server (`Deno.openKv("http://<node>/kv")`, README "Use gokv as your Deno KV"). */
export interface KvConnectSettings {
  /** The access token a client presents (`DENO_KV_ACCESS_TOKEN`); empty: KV Connect refuses
   * every metadata exchange. */
  accessToken: string;
  /** How long the data-path token and the metadata of one exchange stay valid (ms). */
  tokenTtlMs: number;
}

/** The whole validated configuration. */
export interface Config {
  /** The file it was read from ("" when built in code). */
  file: string;
  /** Node data lives under `<dataDir>/node-<id>`. */
  dataDir: string;
  /** Storage backend. */
  storage: "memory" | "simplefile" | "lsm";
  /** Peer transport. */
  transport: "tcp" | "grpc";
  /** Cluster members. */
  nodes: NodeConfig[];
  /** Raft settings. */
  raft: RaftSettings;
  /** LSM settings. */
  lsm: LsmSettings;
  /** Client session settings. */
  sessions: SessionSettings;
  /** Log settings. */
  log: LogSettings;
  /** What this node accepts from clients and peers (config/limits.ts). */
  limits: NodeLimits;
  /** Security settings. */
  security: SecuritySettings;
  /** KV Connect settings. */
  kvConnect: KvConnectSettings;
  /** Cluster-wide TLS settings (per-node ones in {@link NodeConfig.tls}). */
  tls: TlsSettings;
  /** HTTP API settings. */
  http: HttpSettings;
}

/** A configuration problem: exit code 2 in the CLI. */
export class ConfigError extends Error {
  /** The file the problem is in ("" for none). */
  readonly file: string;
  /** The key path, e.g. `raft.snapshot_threshold` or `nodes[1].peer`. */
  readonly path: string;
  /** The 1-based line, or 0 when unknown. */
  readonly line: number;
  /** Creates the error; the message names file, line and key path. */
  constructor(file: string, path: string, line: number, problem: string) {
    const where = line ? `${file || "config"}:${line}` : file || "config";
    super(`${where}: ${path ? `${path}: ` : ""}${problem}`);
    this.name = "ConfigError";
    this.file = file;
    this.path = path;
    this.line = line;
  }
}

type Kind = "int" | "bool" | "string" | "address" | "list";
interface KeySpec {
  kind: Kind;
  default: number | boolean | string | string[];
  doc: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
}

const KIB = 1024;
const MIB = 1024 * 1024;

/** Top-level scalar keys (snake_case as in the YAML file). */
const TOP: Record<string, KeySpec> = {
  data_dir: { kind: "string", default: "data", doc: "node data under <data_dir>/node-<id>" },
  storage: {
    kind: "string",
    default: "lsm",
    choices: ["memory", "simplefile", "lsm"],
    doc: "storage backend",
  },
  transport: { kind: "string", default: "tcp", choices: ["tcp", "grpc"], doc: "peer transport" },
};

/** Section keys. */
const SECTIONS: Record<string, Record<string, KeySpec>> = {
  raft: {
    tick_ms: { kind: "int", default: 10, min: 1, max: 1000, doc: "length of one Raft tick" },
    heartbeat_ms: {
      kind: "int",
      default: 50,
      min: 1,
      max: 10_000,
      doc: "leader heartbeat interval",
    },
    election_ms: {
      kind: "int",
      default: 500,
      min: 2,
      max: 60_000,
      doc: "minimum election timeout (randomized in [T, 2T))",
    },
    pre_vote: { kind: "bool", default: true, doc: "pre-vote before elections" },
    check_quorum: { kind: "bool", default: true, doc: "leader steps down without a quorum" },
    snapshot_threshold: {
      kind: "int",
      default: 100_000,
      min: 1,
      max: 100_000_000,
      doc: "applied entries between snapshots (etcd's snapshot-count default)",
    },
    snapshot_bytes: {
      kind: "int",
      default: 64 * MIB,
      min: 0,
      max: 1024 * 1024 * MIB,
      doc: "applied log bytes that also trigger a snapshot (at least the last one's size; 0: off)",
    },
    max_inflight_msgs: {
      kind: "int",
      default: 256,
      min: 1,
      max: 65_536,
      doc: "AppendEntries in flight per follower",
    },
    max_size_per_msg: {
      kind: "int",
      default: 1 * MIB,
      min: 1 * KIB,
      max: 64 * MIB,
      doc: "bytes of entries per AppendEntries",
    },
    max_inflight_bytes: {
      kind: "int",
      default: 8 * MIB,
      min: 64 * KIB,
      max: 1024 * MIB,
      doc: "bytes of entries in flight per follower",
    },
    lease_read: { kind: "bool", default: false, doc: "leader-lease reads (needs check_quorum)" },
  },
  lsm: {
    memtable_bytes: {
      kind: "int",
      default: 4 * MIB,
      min: 64 * KIB,
      max: 1024 * MIB,
      doc: "memtable size",
    },
    block_bytes: { kind: "int", default: 4 * KIB, min: 256, max: 1 * MIB, doc: "data block size" },
    block_cache_bytes: {
      kind: "int",
      default: 32 * MIB,
      min: 0,
      max: 64 * 1024 * MIB,
      doc: "block cache capacity",
    },
    bloom_bits_per_key: { kind: "int", default: 10, min: 0, max: 64, doc: "bloom filter bits" },
    l0_compaction_trigger: { kind: "int", default: 4, min: 1, max: 1000, doc: "L0 trigger" },
    l0_stop_trigger: { kind: "int", default: 12, min: 1, max: 1000, doc: "L0 write stop" },
    level_base_bytes: {
      kind: "int",
      default: 10 * MIB,
      min: 64 * KIB,
      max: 1024 * 1024 * MIB,
      doc: "L1 target size",
    },
    level_multiplier: { kind: "int", default: 10, min: 2, max: 100, doc: "level growth factor" },
    target_file_bytes: {
      kind: "int",
      default: 2 * MIB,
      min: 64 * KIB,
      max: 4096 * MIB,
      doc: "SSTable target size",
    },
  },
  sessions: {
    idle_timeout_ms: {
      kind: "int",
      default: 3_600_000,
      min: 1_000,
      max: 30 * 24 * 3_600_000,
      doc: "a client session expires after this long unused",
    },
    max_sessions: {
      kind: "int",
      default: 10_000,
      min: 1,
      max: 10_000_000,
      doc: "bound of the session table (least recently used evicted)",
    },
  },
  security: {
    peer_secret_file: {
      kind: "string",
      default: "",
      doc: "file holding the cluster secret (peers run a challenge-response on connect)",
    },
    tokens_file: {
      kind: "string",
      default: "",
      doc: "bearer tokens with roles (hashes; reloaded on SIGHUP); clients need a token",
    },
    protect_metrics: {
      kind: "bool",
      default: false,
      doc: "with a tokens file, /metrics and /healthz need a token too",
    },
  },
  http: {
    allowed_hosts: {
      kind: "list",
      default: [],
      doc: "more Host names the HTTP API answers to (DNS-rebinding check)",
    },
    cors_origins: {
      kind: "list",
      default: [],
      doc: "browser origins allowed to call the HTTP API (CORS; none by default)",
    },
  },
  kv_connect: {
    access_token: {
      kind: "string",
      default: "",
      doc: "KV Connect access token (DENO_KV_ACCESS_TOKEN of clients); empty: KV Connect refused",
    },
    token_ttl_ms: {
      kind: "int",
      default: 3_600_000,
      min: 1_000,
      max: 7 * 24 * 3_600_000,
      doc: "lifetime of a KV Connect data-path token (clients renew before it ends)",
    },
  },
  log: {
    level: {
      kind: "string",
      default: "info",
      choices: ["debug", "info", "warn", "error"],
      doc: "lowest level printed",
    },
    format: { kind: "string", default: "text", choices: ["text", "json"], doc: "log line format" },
  },
  limits: Object.fromEntries(
    NODE_LIMIT_SPECS.map((l) => [
      l.key,
      {
        kind: "int",
        default: l.default,
        min: l.min,
        max: l.max,
        doc: l.doc,
      } satisfies KeySpec,
    ]),
  ),
};

const NODE_KEYS: Record<string, KeySpec> = {
  id: { kind: "int", default: 0, min: 1, max: 2 ** 31 - 1, doc: "node id" },
  peer: { kind: "address", default: "", doc: "address peers dial" },
  client: { kind: "address", default: "", doc: "address clients dial" },
  http: { kind: "address", default: "", doc: "HTTP API address" },
  listen_peer: { kind: "address", default: "", doc: "bind address for peers (default: peer)" },
  listen_client: {
    kind: "address",
    default: "",
    doc: "bind address for clients (default: client)",
  },
  listen_http: { kind: "address", default: "", doc: "bind address for HTTP (default: http)" },
};
const REQUIRED_NODE_KEYS = ["id", "peer", "client", "http"];

function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0];
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j];
      dp[j] = Math.min(dp[j] + 1, dp[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length];
}

const ADDRESS_RE = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Splits `host:port`; throws a plain Error on a malformed address. */
export function parseAddress(addr: string): { hostname: string; port: number } {
  const m = ADDRESS_RE.exec(addr);
  if (!m) throw new Error(`"${addr}" is not a host:port address`);
  const port = Number(m[2]);
  if (port < 0 || port > 65535) throw new Error(`port ${port} is out of range`);
  return { hostname: m[1].replace(/^\[|\]$/g, ""), port };
}

class Reader {
  constructor(readonly file: string, readonly lc: LineCounter) {}
  line(node: YamlNode | Pair | null | undefined): number {
    // deno-lint-ignore no-explicit-any
    const range = (node as any)?.range ?? (node as any)?.key?.range;
    if (!range) return 0;
    return this.lc.linePos(range[0]).line;
  }
  fail(path: string, node: YamlNode | Pair | null | undefined, problem: string): never {
    throw new ConfigError(this.file, path, this.line(node), problem);
  }
}

function convert(
  r: Reader,
  path: string,
  spec: KeySpec,
  raw: unknown,
  node: YamlNode | null | undefined,
): number | boolean | string | string[] {
  switch (spec.kind) {
    case "int": {
      if (typeof raw !== "number" || !Number.isInteger(raw)) {
        r.fail(path, node, `expected an integer, got ${JSON.stringify(raw)}`);
      }
      if (spec.min !== undefined && raw < spec.min) {
        r.fail(path, node, `${raw} is below the minimum ${spec.min}`);
      }
      if (spec.max !== undefined && raw > spec.max) {
        r.fail(path, node, `${raw} is above the maximum ${spec.max}`);
      }
      return raw;
    }
    case "list": {
      const items = typeof raw === "string"
        ? raw.split(",").map((x) => x.trim()).filter((x) => x !== "")
        : raw;
      if (!Array.isArray(items) || items.some((x) => typeof x !== "string" || x === "")) {
        r.fail(path, node, `expected a list of non-empty strings, got ${JSON.stringify(raw)}`);
      }
      return items as string[];
    }
    case "bool":
      if (typeof raw !== "boolean") {
        r.fail(path, node, `expected true or false, got ${JSON.stringify(raw)}`);
      }
      return raw;
    case "string":
    case "address": {
      if (typeof raw !== "string" || raw === "") {
        r.fail(path, node, `expected a non-empty string, got ${JSON.stringify(raw)}`);
      }
      if (spec.choices && !spec.choices.includes(raw)) {
        r.fail(path, node, `"${raw}" is not one of ${spec.choices.join(", ")}`);
      }
      if (spec.kind === "address") {
        try {
          parseAddress(raw);
        } catch (e) {
          r.fail(path, node, (e as Error).message);
        }
      }
      return raw;
    }
  }
}

function envValue(spec: KeySpec, text: string): unknown {
  if (spec.kind === "int") return /^-?\d+$/.test(text.trim()) ? Number(text) : text;
  if (spec.kind === "bool") {
    if (/^(true|1|yes|on)$/i.test(text)) return true;
    if (/^(false|0|no|off)$/i.test(text)) return false;
    return text;
  }
  return text;
}

/** Reads a map's pairs, rejecting unknown keys with a suggestion. */
function pairsOf(
  r: Reader,
  path: string,
  node: YamlNode | null | undefined,
  known: string[],
): Map<string, Pair> {
  const out = new Map<string, Pair>();
  if (node === null || node === undefined) return out;
  if (!isMap(node)) r.fail(path, node, "expected a mapping");
  for (const pair of (node as YAMLMap).items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const keyPath = path ? `${path}.${key}` : key;
    if (!known.includes(key)) {
      const hint = closest(key, known);
      r.fail(
        keyPath,
        pair.key as YamlNode,
        `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ""}`,
      );
    }
    if (out.has(key)) r.fail(keyPath, pair.key as YamlNode, `duplicate key "${key}"`);
    out.set(key, pair as Pair);
  }
  return out;
}

function scalarOf(
  r: Reader,
  path: string,
  pair: Pair,
  list = false,
): { raw: unknown; node: YamlNode } {
  const v = pair.value as YamlNode | null;
  if (v === null || v === undefined) r.fail(path, pair.key as YamlNode, "missing value");
  if (list && isSeq(v)) {
    const items = (v as unknown as { items: YamlNode[] }).items;
    return { raw: items.map((i) => isScalar(i) ? i.value : i), node: v };
  }
  if (!isScalar(v)) r.fail(path, v, "expected a single value");
  return { raw: v.value, node: v };
}

const TLS_KEYS: Record<string, KeySpec> = {
  cert: { kind: "string", default: "", doc: "TLS certificate (PEM; {id} = node id)" },
  key: { kind: "string", default: "", doc: "TLS private key (PEM; {id} = node id)" },
  ca: {
    kind: "string",
    default: "",
    doc: "CA of the other side (peers always; clients with client_cert_auth)",
  },
  client_cert_auth: {
    kind: "bool",
    default: false,
    doc: "client and HTTP ports: require client certificates signed by ca",
  },
};
const TLS_PORTS: readonly TlsPort[] = ["client", "http", "peer"];

/** Reads a `tls:` mapping (cluster-wide, or a node's); `env` only for the cluster-wide one. */
function parseTls(
  r: Reader,
  path: string,
  node: YamlNode | null | undefined,
  env: Record<string, string | undefined> | undefined,
  usedEnv: Set<string>,
  lc: LineCounter,
): TlsSettings {
  const block = (
    prefix: string,
    n: YamlNode | null | undefined,
    sub: boolean,
  ): TlsSettings => {
    const known = [...Object.keys(TLS_KEYS), ...(sub ? TLS_PORTS : [])];
    const pairs = pairsOf(r, prefix, n, known);
    const out: Record<string, unknown> = {};
    for (const [key, spec] of Object.entries(TLS_KEYS)) {
      const envName = `GOKV_${prefix.replace(/\./g, "_").toUpperCase()}_${key.toUpperCase()}`;
      const fromEnv = env?.[envName];
      if (fromEnv !== undefined) {
        usedEnv.add(envName);
        out[camel(key)] = convert(
          new Reader(`environment ${envName}`, lc),
          `${prefix}.${key}`,
          spec,
          envValue(spec, fromEnv),
          null,
        );
        continue;
      }
      const pair = pairs.get(key);
      if (pair === undefined) continue;
      const { raw, node: vn } = scalarOf(r, `${prefix}.${key}`, pair);
      out[camel(key)] = convert(r, `${prefix}.${key}`, spec, raw, vn);
    }
    if (sub) {
      for (const port of TLS_PORTS) {
        const p = pairs.get(port);
        const b = block(`${prefix}.${port}`, (p?.value ?? null) as YamlNode | null, false);
        if (Object.keys(b).length > 0) out[port] = b;
      }
    }
    return out as TlsSettings;
  };
  return block(path, node, true);
}

/**
 * The TLS files of `port` on node `id`, or undefined when that port is plaintext. Each field is
 * taken from the first of: the node's `tls.<port>`, the node's `tls`, the cluster's
 * `tls.<port>`, the cluster's `tls`; `{id}` in a path becomes the node id.
 */
export function tlsFor(config: Config, id: number, port: TlsPort): TlsFiles | undefined {
  const node = config.nodes.find((n) => n.id === id);
  const layers: TlsBlock[] = [
    node?.tls?.[port] ?? {},
    node?.tls ?? {},
    config.tls?.[port] ?? {},
    config.tls ?? {},
  ];
  const pick = <K extends keyof TlsBlock>(k: K): TlsBlock[K] => {
    for (const l of layers) if (l[k] !== undefined) return l[k];
    return undefined;
  };
  const cert = pick("cert");
  const key = pick("key");
  if (cert === undefined && key === undefined) return undefined;
  const sub = (p: string | undefined) => (p ?? "").replaceAll("{id}", String(id));
  return {
    cert: sub(cert),
    key: sub(key),
    ca: sub(pick("ca")),
    clientCertAuth: port === "peer" ? true : pick("clientCertAuth") ?? false,
  };
}

/** The problem with the TLS settings of node `id` (undefined when none). */
function tlsProblem(config: Config, id: number): { port: TlsPort; problem: string } | undefined {
  for (const port of TLS_PORTS) {
    const t = tlsFor(config, id, port);
    if (t === undefined) continue;
    if (t.cert === "" || t.key === "") {
      return { port, problem: "cert and key go together" };
    }
    if (t.clientCertAuth && t.ca === "") {
      return {
        port,
        problem: port === "peer"
          ? "peer TLS is mutual: it needs ca (the CA of every member's certificate)"
          : "client_cert_auth needs ca",
      };
    }
  }
  return undefined;
}

/**
 * Parses and validates configuration text. `env` supplies `GOKV_*` overrides (pass `{}` for
 * none). Throws {@link ConfigError} on any problem.
 */
export function parseConfig(
  text: string,
  file = "",
  env: Record<string, string | undefined> = {},
): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false });
  const r = new Reader(file, lc);
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = lc.linePos(e.pos[0]).line;
    throw new ConfigError(file, "", line, `invalid YAML: ${e.message.split("\n")[0]}`);
  }
  const root = doc.contents as YamlNode | null;
  const known = [...Object.keys(TOP), ...Object.keys(SECTIONS), "nodes", "tls"];
  const top = pairsOf(r, "", root, known);

  // deno-lint-ignore no-explicit-any
  const out: any = { file };
  const usedEnv = new Set<string>();
  const scalar = (path: string, yamlKey: string, spec: KeySpec, pair: Pair | undefined) => {
    const envName = `GOKV_${path.replace(/\./g, "_").toUpperCase()}`;
    const fromEnv = env[envName];
    if (fromEnv !== undefined) {
      usedEnv.add(envName);
      return convert(
        new Reader(`environment ${envName}`, lc),
        path,
        spec,
        envValue(spec, fromEnv),
        null,
      );
    }
    if (pair === undefined) return spec.default;
    const { raw, node } = scalarOf(r, path, pair, spec.kind === "list");
    void yamlKey;
    return convert(r, path, spec, raw, node);
  };

  for (const [key, spec] of Object.entries(TOP)) {
    out[camel(key)] = scalar(key, key, spec, top.get(key));
  }
  for (const [section, keys] of Object.entries(SECTIONS)) {
    const pair = top.get(section);
    const pairs = pairsOf(r, section, (pair?.value ?? null) as YamlNode | null, Object.keys(keys));
    const sec: Record<string, unknown> = {};
    for (const [key, spec] of Object.entries(keys)) {
      sec[camel(key)] = scalar(`${section}.${key}`, key, spec, pairs.get(key));
    }
    out[camel(section)] = sec;
  }

  out.tls = parseTls(
    r,
    "tls",
    (top.get("tls")?.value ?? null) as YamlNode | null,
    env,
    usedEnv,
    lc,
  );

  // Unknown GOKV_<SECTION>_* variables are misspellings too.
  for (const name of Object.keys(env)) {
    if (usedEnv.has(name) || !name.startsWith("GOKV_")) continue;
    const rest = name.slice(5).toLowerCase();
    const section = [...Object.keys(SECTIONS), "tls"].find((s) => rest.startsWith(s + "_"));
    if (section) {
      const keys = section === "tls"
        ? ["", ...TLS_PORTS.map((p) => `${p}_`)].flatMap((p) =>
          Object.keys(TLS_KEYS).map((k) => p + k)
        )
        : Object.keys(SECTIONS[section]);
      const all = keys.map((k) => `GOKV_${section}_${k}`.toUpperCase());
      const hint = closest(name, all);
      throw new ConfigError(
        `environment ${name}`,
        `${section}.${rest.slice(section.length + 1)}`,
        0,
        `unknown setting${hint ? ` (did you mean ${hint}?)` : ""}`,
      );
    }
  }

  // Nodes.
  const nodesPair = top.get("nodes");
  const nodesNode = (nodesPair?.value ?? null) as YamlNode | null;
  if (!nodesPair || nodesNode === null) r.fail("nodes", nodesPair?.key as YamlNode, "required");
  if (!isSeq(nodesNode)) r.fail("nodes", nodesNode, "expected a list of nodes");
  const nodes: NodeConfig[] = [];
  const seenIds = new Map<number, string>();
  const seenAddr = new Map<string, string>();
  (nodesNode as unknown as { items: YamlNode[] }).items.forEach((item, i) => {
    const path = `nodes[${i}]`;
    const pairs = pairsOf(r, path, item as YamlNode, [...Object.keys(NODE_KEYS), "tls"]);
    const n: Record<string, unknown> = {};
    for (const key of REQUIRED_NODE_KEYS) {
      if (!pairs.has(key)) r.fail(`${path}.${key}`, item as YamlNode, `missing required key`);
    }
    for (const [key, spec] of Object.entries(NODE_KEYS)) {
      const pair = pairs.get(key);
      if (pair === undefined) continue;
      const { raw, node } = scalarOf(r, `${path}.${key}`, pair);
      n[camel(key)] = convert(r, `${path}.${key}`, spec, raw, node);
    }
    const node = n as unknown as NodeConfig;
    node.tls = parseTls(
      r,
      `${path}.tls`,
      (pairs.get("tls")?.value ?? null) as YamlNode | null,
      undefined,
      usedEnv,
      lc,
    );
    node.listenPeer ??= node.peer;
    node.listenClient ??= node.client;
    node.listenHttp ??= node.http;
    const idLine = pairs.get("id")!;
    if (seenIds.has(node.id)) {
      r.fail(`${path}.id`, idLine.value as YamlNode, `duplicate id ${node.id}`);
    }
    seenIds.set(node.id, path);
    for (const key of ["peer", "client", "http"] as const) {
      const addr = node[key];
      if (seenAddr.has(addr)) {
        r.fail(
          `${path}.${key}`,
          pairs.get(key)!.value as YamlNode,
          `address ${addr} is already used by ${seenAddr.get(addr)}`,
        );
      }
      seenAddr.set(addr, `${path}.${key}`);
    }
    nodes.push(node);
  });
  if (nodes.length === 0) r.fail("nodes", nodesNode, "at least one node is required");
  out.nodes = nodes;

  const raft = out.raft as RaftSettings;
  const raftPair = top.get("raft");
  const raftNode = (raftPair?.value ?? null) as YamlNode | null;
  if (raft.heartbeatMs < raft.tickMs) {
    r.fail("raft.heartbeat_ms", raftNode, `must be at least tick_ms (${raft.tickMs})`);
  }
  if (raft.electionMs < 2 * raft.heartbeatMs) {
    r.fail("raft.election_ms", raftNode, `must be at least twice heartbeat_ms`);
  }
  if (raft.leaseRead && !raft.checkQuorum) {
    r.fail("raft.lease_read", raftNode, "lease reads require check_quorum: true");
  }
  if (out.transport === "grpc" && out.security.peerSecretFile !== "") {
    r.fail(
      "transport",
      (top.get("transport")?.value ?? null) as YamlNode | null,
      "the grpc transport authenticates peers with mutual TLS only, not the cluster secret: " +
        "configure tls for the peer port, or use transport: tcp",
    );
  }
  for (const n of nodes) {
    const p = tlsProblem(out as Config, n.id);
    if (p) {
      r.fail(
        `tls.${p.port}`,
        (top.get("tls")?.value ?? null) as YamlNode | null,
        `node ${n.id}: ${p.problem}`,
      );
    }
  }
  const lsm = out.lsm as LsmSettings;
  if (lsm.l0StopTrigger < lsm.l0CompactionTrigger) {
    r.fail(
      "lsm.l0_stop_trigger",
      (top.get("lsm")?.value ?? null) as YamlNode | null,
      "must be at least l0_compaction_trigger",
    );
  }
  return out as Config;
}

/** Reads, parses and validates a configuration file (with `GOKV_*` overrides from `env`). */
export async function loadConfig(
  path: string,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message;
    throw new ConfigError(path, "", 0, reason);
  }
  return parseConfig(text, path, env);
}

/** Builds a configuration in code: defaults for everything not given. */
export function defaultConfig(
  nodes: Array<Pick<NodeConfig, "id" | "peer" | "client" | "http">>,
): Config {
  const yaml = ["nodes:"];
  for (const n of nodes) {
    yaml.push(`  - { id: ${n.id}, peer: "${n.peer}", client: "${n.client}", http: "${n.http}" }`);
  }
  return parseConfig(yaml.join("\n"), "", {});
}

/** One documented setting. */
export interface SettingDoc {
  /** YAML key path, e.g. `raft.heartbeat_ms`. */
  key: string;
  /** Environment variable overriding it. */
  env: string;
  /** The default value. */
  default: string;
  /** What it does. */
  doc: string;
}

/** Every scalar setting with its default and environment variable, for docs and `--help`. */
export function describeConfig(): SettingDoc[] {
  const out: SettingDoc[] = [];
  const add = (key: string, spec: KeySpec) =>
    out.push({
      key,
      env: `GOKV_${key.replace(/\./g, "_").toUpperCase()}`,
      default: String(spec.default),
      doc: spec.choices ? `${spec.doc} (${spec.choices.join(" | ")})` : spec.doc,
    });
  for (const [k, s] of Object.entries(TOP)) add(k, s);
  for (const [sec, keys] of Object.entries(SECTIONS)) {
    for (const [k, s] of Object.entries(keys)) add(`${sec}.${k}`, s);
  }
  for (const [k, s] of Object.entries(TLS_KEYS)) add(`tls.${k}`, s);
  for (const p of TLS_PORTS) {
    for (const [k, s] of Object.entries(TLS_KEYS)) {
      if (p === "peer" && k === "client_cert_auth") continue;
      add(`tls.${p}.${k}`, { ...s, doc: `the ${p} port's ${k} (overrides tls.${k})` });
    }
  }
  return out;
}

/**
 * Validates a configuration given as a plain object in the YAML file's shape (snake_case keys),
 * so a cluster can be described in code without a file. Throws {@link ConfigError} like a file.
 *
 * @example
 * ```ts
 * import { configFromObject } from "./config.ts";
 * const config = configFromObject({
 *   storage: "memory",
 *   nodes: [{ id: 1, peer: "127.0.0.1:7001", client: "127.0.0.1:8001", http: "127.0.0.1:9001" }],
 *   raft: { heartbeat_ms: 20, election_ms: 200 },
 * });
 * console.log(config.raft.heartbeatMs); // 20
 * ```
 */
export function configFromObject(
  obj: Record<string, unknown>,
  env: Record<string, string | undefined> = {},
): Config {
  return parseConfig(stringify(obj), "<config object>", env);
}
