/**
 * The gokv client library.
 *
 * ```ts
 * import { Client, startNode } from "../mod.ts";
 *
 * // A one-node cluster in this process, so the example runs on its own.
 * const free = () => {
 *   const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 *   const p = (l.addr as Deno.NetAddr).port;
 *   l.close();
 *   return `127.0.0.1:${p}`;
 * };
 * const n = { id: 1, peer: free(), client: free(), http: free() };
 * const node = await startNode({ config: { storage: "memory", nodes: [n] }, id: 1 });
 *
 * const kv = await Client.connect({ endpoints: [n.client] });
 * await kv.put("greeting", "hello world");
 * const v = await kv.getString("greeting"); // "hello world", or undefined if missing
 * await kv.close();
 * await node.close();
 * ```
 *
 * The client finds and caches the leader, follows "not leader" redirects, retries with backoff
 * across leader changes and unreachable nodes until the operation's deadline, and makes writes
 * exactly-once through client sessions (the Raft thesis §6.3): the client registers a session
 * with the cluster (its id is the registration's log index), every write carries (session id,
 * sequence number) and a retry reuses the same pair, so the state machine applies it at most once.
 * Sessions are pooled (one write in flight per session) and registered when first needed. A
 * session the cluster expired (unused longer than `sessions.idle_timeout_ms`) or evicted makes
 * the write fail with nothing applied; the client then registers a new session and retries by
 * itself when no earlier attempt of the write may have been applied, and otherwise throws
 * {@link SessionExpiredError}. One instance is safe for any number of concurrent callers (they
 * share multiplexed connections).
 *
 * `get` returns `undefined` for a missing key (it does NOT throw {@link NotFoundError}).
 *
 * @module
 */
import { type ClientTls, Connection, type RequestBody } from "./connection.ts";
import {
  Consistency,
  encodeRequest,
  type MemberInfo,
  Op,
  type Request,
  type Response,
  type ScanRange,
  Status,
} from "./protocol.ts";
import { checkKey, checkValue } from "../config/limits.ts";
import {
  type AtomicCheck,
  type AtomicMutation,
  compareVersionstamps,
  type KvEntry,
  parseVersionstamp,
  u64le,
  ValueEncoding,
  versionstampHex,
} from "../storage/kv_model.ts";
import {
  InternalError,
  InvalidArgumentError,
  LimitError,
  MutationTypeError,
  NotFoundError,
  PermissionDeniedError,
  SessionExpiredError,
  TimeoutError,
  UnauthenticatedError,
  UnavailableError,
  WatchCompactedError,
} from "./errors.ts";

/** Keys and values: UTF-8 strings or raw bytes. */
export type Bytes = string | Uint8Array;

/** Read consistency names. */
export type ConsistencyLevel = "linearizable" | "serializable";

/** Options of {@link Client.connect}. */
export interface ClientOptions {
  /** Client (binary protocol) addresses "host:port" of some or all nodes. */
  endpoints: string[];
  /** Overall deadline of one operation including retries (default 10 000 ms). */
  timeoutMs?: number;
  /** Deadline of one attempt against one node (default 3 000 ms). */
  requestTimeoutMs?: number;
  /** TCP connect timeout (default 1 000 ms). */
  connectTimeoutMs?: number;
  /** Connect over TLS (PEM texts; nodes with `tls` configured on their client port). */
  tls?: ClientTls;
  /** Bearer token, sent in every connection's handshake (nodes with a tokens file). */
  token?: string;
}

/** Per-call options. */
export interface CallOptions {
  /** Overrides the overall deadline of this call. */
  timeoutMs?: number;
}

/** Options of {@link Client.get}. */
export interface GetOptions extends CallOptions {
  /** "linearizable" (default) or "serializable" (may be stale, served by any node). */
  consistency?: ConsistencyLevel;
}

/** Options of {@link Client.scan}. */
export interface ScanOptions extends CallOptions {
  /** Inclusive lower bound. */
  start?: Bytes;
  /** Exclusive upper bound. */
  end?: Bytes;
  /** Only keys with this prefix. */
  prefix?: Bytes;
  /** At most this many pairs in total (default: all). */
  limit?: number;
  /** Pairs asked for per page (default: the server's page size; the server also caps a page
   * by bytes). */
  pageSize?: number;
  /** "linearizable" (default) or "serializable" (each page on its own). */
  consistency?: ConsistencyLevel;
  /** Descending key order. */
  reverse?: boolean;
}

/** One key-value pair (from {@link Client.list} and {@link Client.scan}: with its versionstamp
 * and encoding). */
export interface KeyValue {
  /** The key. */
  key: Uint8Array;
  /** The value. */
  value: Uint8Array;
  /** The versionstamp of the write that set it (20 hex digits). */
  versionstamp?: string;
  /** The value's encoding. */
  encoding?: ValueEncoding;
}

/**
 * A key as read by {@link Client.getEntry} and {@link Client.getMany}: its value, the
 * versionstamp of the write that set it (20 hex digits) and the value's encoding; a missing key
 * reads as `{ key, value: null, versionstamp: null }`.
 */
export interface Entry {
  /** The key. */
  key: Uint8Array;
  /** The value, or null when the key is missing. */
  value: Uint8Array | null;
  /** The versionstamp, or null when the key is missing. */
  versionstamp: string | null;
  /** The value's encoding (absent when missing). */
  encoding?: ValueEncoding;
  /** When the key expires (ms since the epoch), if it does. */
  expireAt?: number;
}

/** Expiry of a set: `expireIn` ms from now (by this machine's clock) or at `expireAt`. */
export interface SetOptions {
  /** Milliseconds from now. */
  expireIn?: number;
  /** Milliseconds since the epoch. */
  expireAt?: number;
  /** The value's encoding (default bytes). */
  encoding?: ValueEncoding;
}

/** A message of {@link Client.watch}: the initial state, then one per Raft entry whose commits
 * changed selected keys (in commit order; the writes of one batch entry come in one message, each
 * entry with its own versionstamp; a deleted or expired key has value null). */
export type WatchMessage =
  | {
    /** The current state when the watch started (without `after`). */
    type: "initial";
    /** The versionstamp the state reflects. */
    versionstamp: string;
    /** The selected keys: the exact keys (missing ones with value null), then every key under
     * each prefix. */
    entries: Entry[];
  }
  | {
    /** A commit. */
    type: "change";
    /** Its versionstamp: pass it as `after` to resume after it. */
    versionstamp: string;
    /** The selected keys it changed. */
    changes: Entry[];
  };

/** What {@link Client.watch} watches. */
export interface WatchSelection {
  /** Exact keys. */
  keys?: Bytes[];
  /** Key prefixes. */
  prefixes?: Bytes[];
}

/** Options of {@link Client.watch}. */
export interface WatchOptions {
  /** Resume after this versionstamp (20 hex digits): no initial state, every later change. */
  after?: string;
  /** The node to watch on (a follower, say); the others are used while it fails. */
  endpoint?: string;
  /** How long one poll waits for a change (ms, default 2000). */
  waitMs?: number;
  /** Give up after failing to reach any node for this long (ms, default the client's timeout). */
  retryForMs?: number;
  /** Ends the watch. */
  signal?: AbortSignal;
}

/** The outcome of {@link AtomicBuilder.commit}. */
export type CommitResult =
  | {
    /** Applied. */
    ok: true;
    /** The commit's versionstamp (20 hex digits). */
    versionstamp: string;
  }
  | {
    /** Not applied: these checks failed. */
    ok: false;
    /** Indexes of the failed checks, in the order they were added. */
    failedChecks: number[];
  };

/**
 * An atomic operation built with {@link Client.atomic}: checks and mutations committed all or
 * nothing in one Raft entry, exactly once (a client session carries it across retries).
 *
 * @example
 * ```ts ignore
 * const e = await kv.getEntry("counter");
 * const r = await kv.atomic().check("counter", e.versionstamp).sum("counter", 1n).commit();
 * if (!r.ok) console.log("someone else won; retry");
 * ```
 */
export class AtomicBuilder {
  readonly #checks: AtomicCheck[] = [];
  readonly #mutations: AtomicMutation[] = [];
  #committed = false;

  /** Use {@link Client.atomic}. */
  constructor(
    private readonly run: (
      checks: AtomicCheck[],
      mutations: AtomicMutation[],
      opts: CallOptions,
    ) => Promise<CommitResult>,
  ) {}

  /** The key's versionstamp must be `versionstamp` (20 hex digits or 10 bytes; null: the key
   * must be missing). */
  check(key: Bytes, versionstamp: string | Uint8Array | null): this {
    const vs = typeof versionstamp === "string" ? parseVs(versionstamp) : versionstamp;
    this.#checks.push({ key: toBytes(key), versionstamp: vs });
    return this;
  }

  /** Sets `key` (optionally expiring; see {@link SetOptions}). */
  set(key: Bytes, value: Bytes, opts: SetOptions = {}): this {
    return this.#set("set", key, value, opts);
  }

  #set(type: "set" | "setSuffixVersionstampedKey", key: Bytes, value: Bytes, o: SetOptions): this {
    const m: Extract<AtomicMutation, { type: "set" }> | {
      type: "setSuffixVersionstampedKey";
      key: Uint8Array;
      value: Uint8Array;
      encoding: ValueEncoding;
      expireAt?: number;
    } = {
      type,
      key: toBytes(key),
      value: toBytes(value),
      encoding: o.encoding ?? ValueEncoding.BYTES,
    };
    const at = expiry(o);
    if (at !== undefined) m.expireAt = at;
    this.#mutations.push(m);
    return this;
  }

  /** Sets `prefix` followed by the commit's versionstamp (a key-tuple string element: 0x02, 20
   * hex digits, 0x00) — unique, increasing keys for queues and logs. */
  setVersionstampedKey(prefix: Bytes, value: Bytes, opts: SetOptions = {}): this {
    return this.#set("setSuffixVersionstampedKey", prefix, value, opts);
  }

  /** Appends mutations as they are (the JSON form of `gokv txn`, client/txn_json.ts). */
  addMutations(mutations: AtomicMutation[]): this {
    this.#mutations.push(...mutations);
    return this;
  }

  /** Deletes `key`. */
  delete(key: Bytes): this {
    this.#mutations.push({ type: "delete", key: toBytes(key) });
    return this;
  }

  /** Adds `n` to the key's u64 (missing: `n`); wraps modulo 2^64, or with `min`/`max` clamps
   * (`clamp: true`) or fails the commit with {@link MutationTypeError}. */
  sum(key: Bytes, n: bigint, opts: { min?: bigint; max?: bigint; clamp?: boolean } = {}): this {
    const m: AtomicMutation = { type: "sum", key: toBytes(key), value: u64(n) };
    if (opts.min !== undefined) m.min = u64(opts.min);
    if (opts.max !== undefined) m.max = u64(opts.max);
    if (opts.clamp) m.clamp = true;
    this.#mutations.push(m);
    return this;
  }

  /** Keeps the smaller of the key's u64 and `n`. */
  min(key: Bytes, n: bigint): this {
    this.#mutations.push({ type: "min", key: toBytes(key), value: u64(n) });
    return this;
  }

  /** Keeps the larger of the key's u64 and `n`. */
  max(key: Bytes, n: bigint): this {
    this.#mutations.push({ type: "max", key: toBytes(key), value: u64(n) });
    return this;
  }

  /** Commits: `{ ok: true, versionstamp }`, or `{ ok: false, failedChecks }` when a check
   * failed (nothing applied). A sum/min/max on a value that is not a u64 rejects with
   * {@link MutationTypeError}. An operation commits once. */
  commit(opts: CallOptions = {}): Promise<CommitResult> {
    if (this.#committed) {
      return Promise.reject(new InvalidArgumentError("this atomic operation was committed"));
    }
    this.#committed = true;
    return this.run(this.#checks, this.#mutations, opts);
  }
}

function parseVs(hex: string): Uint8Array {
  try {
    return parseVersionstamp(hex);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function u64(n: bigint): Uint8Array {
  if (typeof n !== "bigint" || n < 0n || n >= 1n << 64n) {
    throw new InvalidArgumentError(`a u64 is a bigint in [0, 2^64): ${n}`);
  }
  return u64le(n);
}

function expiry(o: SetOptions): number | undefined {
  if (o.expireAt !== undefined) return o.expireAt;
  if (o.expireIn !== undefined) {
    if (!Number.isFinite(o.expireIn) || o.expireIn < 0) {
      throw new InvalidArgumentError(`bad expireIn ${o.expireIn}`);
    }
    return Date.now() + Math.ceil(o.expireIn);
  }
  return undefined;
}

function toEntry(key: Uint8Array, e: KvEntry | null | undefined): Entry {
  if (!e) return { key, value: null, versionstamp: null };
  const out: Entry = {
    key,
    value: e.value,
    versionstamp: versionstampHex(e.versionstamp),
    encoding: e.encoding,
  };
  if (e.expireAt !== undefined) out.expireAt = e.expireAt;
  return out;
}

/** A member of the cluster. */
export type Member = MemberInfo;

/** The status a node reports about itself (see GET /v1/status). */
export interface NodeStatus {
  /** The node id. */
  id: number;
  /** "leader", "follower", "candidate" (pre-candidates included) or "learner". */
  role: string;
  /** Current term. */
  term: number;
  /** The leader's id as this node knows it (0: none). */
  leader: number;
  /** Highest committed index. */
  commitIndex: number;
  /** Highest applied index. */
  appliedIndex: number;
  /** Index of the latest snapshot. */
  snapshotIndex: number;
  /** Entries in the log. */
  logSize: number;
  /** Storage engine statistics. */
  storage: Record<string, unknown>;
  /** Other fields. */
  [key: string]: unknown;
}

/** A node's answer (or failure) to a status request, from {@link Client.statusAll}. */
export interface EndpointStatus {
  /** The address asked. */
  endpoint: string;
  /** The status, when the node answered. */
  status?: NodeStatus;
  /** Why it did not. */
  error?: Error;
}

interface Session {
  clientId: bigint;
  seq: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Converts a key or value to bytes. */
export function toBytes(b: Bytes): Uint8Array {
  return typeof b === "string" ? enc.encode(b) : b;
}

function consistency(c: ConsistencyLevel | undefined): Consistency {
  if (c === undefined || c === "linearizable") return Consistency.Linearizable;
  if (c === "serializable") return Consistency.Serializable;
  throw new InvalidArgumentError(`unknown consistency "${c}"`);
}

const WRITE_OPS = new Set<Op>([
  Op.Put,
  Op.Delete,
  Op.Atomic,
  Op.MemberAdd,
  Op.MemberRemove,
  Op.Transfer,
  Op.RegisterSession,
]);

/** What {@link Client} learned about the attempts of one call. */
interface CallState {
  /** An attempt may have been applied although the call did not see its answer. */
  uncertain: boolean;
}

/** The most sessions {@link Client.prepareSessions} registers in one call. */
const MAX_PREPARED_SESSIONS = 65_536;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A gokv client. Create with {@link Client.connect} or {@link Client.fromConfig}. */
export class Client {
  private endpoints: string[];
  private conns = new Map<string, Promise<Connection>>();
  /** The connections of {@link conns} that are open (no await to use them). */
  private open = new Map<string, Connection>();
  private leader: string | undefined;
  private rr = 0;
  private sessions: Session[] = [];
  private closed = false;
  private readonly timeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly tls: ClientTls | undefined;
  private readonly token: string | undefined;

  private constructor(opts: ClientOptions) {
    this.tls = opts.tls;
    this.token = opts.token;
    this.endpoints = [...new Set(opts.endpoints.map((e) => e.trim()).filter((e) => e))];
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 3_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 1_000;
    this.rr = Math.floor(Math.random() * this.endpoints.length);
  }

  /** Creates a client for `opts.endpoints` and checks that at least one answers. Throws
   * {@link InvalidArgumentError} without endpoints and {@link UnavailableError} if none
   * connects. */
  static async connect(opts: ClientOptions): Promise<Client> {
    const c = new Client(opts);
    if (c.endpoints.length === 0) throw new InvalidArgumentError("no endpoints given");
    const errors: string[] = [];
    for (let i = 0; i < c.endpoints.length; i++) {
      const ep = c.endpoints[(c.rr + i) % c.endpoints.length];
      try {
        await c.connection(ep);
        c.rr = (c.rr + i) % c.endpoints.length;
        return c;
      } catch (e) {
        if (e instanceof UnauthenticatedError || e instanceof PermissionDeniedError) {
          await c.close();
          throw e;
        }
        errors.push((e as Error).message);
      }
    }
    await c.close();
    throw new UnavailableError(`no endpoint reachable: ${errors.join("; ")}`);
  }

  /** Creates a client for the client addresses of the nodes of a gokv config file. */
  static async fromConfig(
    path: string,
    opts: Omit<ClientOptions, "endpoints"> = {},
  ): Promise<Client> {
    const { loadConfig } = await import("../config/config.ts");
    const cfg = await loadConfig(path);
    return Client.connect({ ...opts, endpoints: cfg.nodes.map((n) => n.client) });
  }

  /** Writes `value` at `key`. */
  async put(key: Bytes, value: Bytes, opts: CallOptions = {}): Promise<void> {
    const k = toBytes(key);
    if (k.length === 0) throw new InvalidArgumentError("empty key");
    const v = toBytes(value);
    await this.write((s) => ({ op: Op.Put, key: k, value: v, ...s }), opts);
  }

  /** Deletes `key` (no error if it does not exist). */
  async delete(key: Bytes, opts: CallOptions = {}): Promise<void> {
    const k = toBytes(key);
    if (k.length === 0) throw new InvalidArgumentError("empty key");
    await this.write((s) => ({ op: Op.Delete, key: k, ...s }), opts);
  }

  /** Reads `key`; `undefined` when it does not exist. */
  async get(key: Bytes, opts: GetOptions = {}): Promise<Uint8Array | undefined> {
    const k = toBytes(key);
    if (k.length === 0) throw new InvalidArgumentError("empty key");
    const c = consistency(opts.consistency);
    const res = await this.call({ op: Op.Get, key: k, consistency: c }, opts);
    return res.status === Status.NotFound ? undefined : res.value;
  }

  /** Reads `key` as an {@link Entry}: value, versionstamp and encoding (a missing key has value
   * and versionstamp null). */
  async getEntry(key: Bytes, opts: GetOptions = {}): Promise<Entry> {
    return (await this.getMany([key], opts))[0];
  }

  /** Reads several keys from one consistent view of the state machine (one node, one moment). */
  async getMany(keys: Bytes[], opts: GetOptions = {}): Promise<Entry[]> {
    const ks = keys.map(toBytes);
    if (ks.some((k) => k.length === 0)) throw new InvalidArgumentError("empty key");
    const c = consistency(opts.consistency);
    const res = await this.call({ op: Op.GetMany, keys: ks, consistency: c }, opts);
    return ks.map((k, i) => toEntry(k, res.entries?.[i]));
  }

  /** Starts an {@link AtomicBuilder}: `check`, `set`, `delete`, `sum`, `min`, `max`, then
   * `commit`. */
  atomic(): AtomicBuilder {
    return new AtomicBuilder((c, m, o) => this.commitAtomic(c, m, o));
  }

  /** Sets `key` to `value`, expiring after `ttlMs` milliseconds (an atomic set). */
  async putWithTtl(key: Bytes, value: Bytes, ttlMs: number, opts: CallOptions = {}): Promise<
    string
  > {
    const r = await this.atomic().set(key, value, { expireIn: ttlMs }).commit(opts);
    if (!r.ok) throw new InternalError("a set without checks failed its checks");
    return r.versionstamp;
  }

  /** Commits an atomic operation (see {@link AtomicBuilder.commit}). */
  private async commitAtomic(
    checks: AtomicCheck[],
    mutations: AtomicMutation[],
    opts: CallOptions = {},
  ): Promise<CommitResult> {
    const res = await this.write((s) => ({ op: Op.Atomic, checks, mutations, ...s }), opts);
    if (res.versionstamp) return { ok: true, versionstamp: versionstampHex(res.versionstamp) };
    return { ok: false, failedChecks: res.failedChecks ?? [] };
  }

  /**
   * Watches keys and prefixes: yields the initial state (unless `after` is given), then every
   * commit that changes a selected key, in commit order, exactly once. Polls one node (the
   * `endpoint`, else any) with long polls; when it fails (a leader change, the node restarting)
   * the watch continues on another node after the last versionstamp it delivered, so nothing is
   * lost or repeated. Throws {@link WatchCompactedError} when no node's change history reaches
   * back to that point (read the state again and watch from there), {@link UnavailableError}
   * when no node answers for `retryForMs`.
   */
  async *watch(
    sel: WatchSelection,
    opts: WatchOptions = {},
  ): AsyncGenerator<WatchMessage, void, undefined> {
    const keys = (sel.keys ?? []).map(toBytes);
    const prefixes = (sel.prefixes ?? []).map(toBytes);
    if (keys.length + prefixes.length === 0) {
      throw new InvalidArgumentError("watch needs at least one key or prefix");
    }
    let after = opts.after === undefined ? undefined : parseVs(opts.after);
    const waitMs = opts.waitMs ?? 2_000;
    const retryForMs = opts.retryForMs ?? this.timeoutMs;
    const order = () => {
      const eps = [...this.endpoints];
      if (opts.endpoint) {
        const i = eps.indexOf(opts.endpoint);
        if (i >= 0) eps.splice(i, 1);
        eps.unshift(opts.endpoint);
      }
      return eps;
    };
    let idx = 0;
    let failingSince: number | undefined;
    let backoff = 20;
    const compacted = new Map<string, string>();
    while (!opts.signal?.aborted) {
      if (this.closed) throw new UnavailableError("client is closed");
      const eps = order();
      const ep = eps[idx % eps.length];
      let res: Response;
      try {
        const conn = await this.connection(ep);
        if (conn.closed) {
          this.forget(ep, conn);
          throw new UnavailableError(`connection to ${ep} closed`);
        }
        res = await conn.request(
          { op: Op.Watch, keys, prefixes, waitMs, ...(after ? { after } : {}) },
          waitMs + this.requestTimeoutMs,
        );
        if (res.status === Status.Unavailable || res.status === Status.Timeout) {
          throw errorFor(res);
        }
      } catch (e) {
        if (!(e instanceof UnavailableError) && !(e instanceof TimeoutError)) throw e;
        failingSince ??= Date.now();
        if (Date.now() - failingSince > retryForMs) {
          throw new UnavailableError(`watch: no node answered for ${retryForMs} ms`, { cause: e });
        }
        idx++;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 500);
        continue;
      }
      if (res.status === Status.WatchCompacted) {
        compacted.set(ep, versionstampHex(res.position!));
        if (compacted.size >= eps.length) {
          const oldest = [...compacted.values()].sort()[0];
          throw new WatchCompactedError(res.message ?? "watch history compacted", oldest);
        }
        idx++;
        continue;
      }
      if (res.status !== Status.Ok) throw errorFor(res);
      failingSince = undefined;
      backoff = 20;
      compacted.clear();
      if (res.initial) {
        after = res.initial.versionstamp;
        yield {
          type: "initial",
          versionstamp: versionstampHex(res.initial.versionstamp),
          entries: res.initial.entries.map((c) => toEntry(c.key, c.entry)),
        };
      }
      for (const ev of res.events ?? []) {
        // Another node may answer from further back than this one had reached: never repeat.
        if (after && compareVersionstamps(ev.versionstamp, after) <= 0) continue;
        after = ev.versionstamp;
        yield {
          type: "change",
          versionstamp: versionstampHex(ev.versionstamp),
          changes: ev.changes.map((c) => toEntry(c.key, c.entry)),
        };
      }
      if (res.position && (!after || compareVersionstamps(res.position, after) > 0)) {
        after = res.position;
      }
    }
  }

  /** Reads `key` as UTF-8 text; `undefined` when it does not exist. */
  async getString(key: Bytes, opts: GetOptions = {}): Promise<string | undefined> {
    const v = await this.get(key, opts);
    return v === undefined ? undefined : dec.decode(v);
  }

  /**
   * Range scan in key order, collected into an array (all pages, up to `limit` pairs). For
   * ranges of any size use {@link list}, which holds one page at a time.
   */
  async scan(opts: ScanOptions = {}): Promise<KeyValue[]> {
    const out: KeyValue[] = [];
    for await (const kv of this.list(opts)) out.push(kv);
    return out;
  }

  /**
   * Range scan in key order as an async iterator that fetches one page at a time (the server
   * bounds a page by pairs and bytes and returns a cursor for the next), so memory stays bounded
   * on the node and here whatever the size of the range. Stops after `limit` pairs. Every page
   * is read with `consistency` on its own: the scan as a whole is not one snapshot.
   */
  async *list(opts: ScanOptions = {}): AsyncGenerator<KeyValue, void, undefined> {
    const range: ScanRange = {};
    if (opts.reverse) range.reverse = true;
    if (opts.start !== undefined) range.start = toBytes(opts.start);
    if (opts.end !== undefined) range.end = toBytes(opts.end);
    if (opts.prefix !== undefined) range.prefix = toBytes(opts.prefix);
    for (const [name, v] of [["limit", opts.limit], ["pageSize", opts.pageSize]] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) {
        throw new InvalidArgumentError(`bad ${name} ${v}`);
      }
    }
    const c = consistency(opts.consistency);
    let left = opts.limit || Infinity;
    while (left > 0) {
      const page = Math.min(left, opts.pageSize || Infinity);
      if (Number.isFinite(page)) range.limit = page;
      const res = await this.call({ op: Op.Range, range: { ...range }, consistency: c }, opts);
      const entries = (res.entries ?? []) as KvEntry[];
      for (const e of entries) {
        if (left-- <= 0) return;
        yield {
          key: e.key,
          value: e.value,
          versionstamp: versionstampHex(e.versionstamp),
          encoding: e.encoding,
        };
      }
      if (!res.next || entries.length === 0) return;
      range.cursor = res.next;
    }
  }

  /** The cluster's members with their addresses, as the leader knows them. */
  async members(opts: CallOptions = {}): Promise<Member[]> {
    const res = await this.call({ op: Op.Members }, opts);
    return res.members ?? [];
  }

  /** Adds a node (as a learner, promoted to voter once caught up). Idempotent: adding a member
   * that is already there with the same addresses succeeds (so a retry after a timeout does). */
  async addMember(member: Omit<Member, "learner">, opts: CallOptions = {}): Promise<void> {
    await this.call({ op: Op.MemberAdd, member }, { timeoutMs: opts.timeoutMs ?? 30_000 });
  }

  /** Removes a node. Throws {@link NotFoundError} if it is not a member — unless an earlier
   * attempt of this call may have reached the leader (it timed out or its connection was lost):
   * then the node being gone means the removal took effect, and the call succeeds. */
  async removeMember(id: number, opts: CallOptions = {}): Promise<void> {
    const attempt = { uncertain: false };
    const res = await this.call({ op: Op.MemberRemove, nodeId: id }, opts, attempt);
    if (res.status === Status.NotFound && !attempt.uncertain) {
      throw new NotFoundError(`member ${id}`);
    }
  }

  /** Asks the leader to hand leadership to `id` (succeeds at once if `id` already leads). The
   * cached leader is forgotten afterwards: the next request finds the new one. */
  async transferLeader(id: number, opts: CallOptions = {}): Promise<void> {
    try {
      await this.call({ op: Op.Transfer, nodeId: id }, opts);
    } finally {
      this.leader = undefined;
    }
  }

  /** The status of one node: `endpoint`, or the leader (found as for any request). */
  async status(endpoint?: string, opts: CallOptions = {}): Promise<NodeStatus> {
    if (endpoint === undefined) {
      const res = await this.call({ op: Op.Status }, opts);
      return JSON.parse(res.json ?? "{}");
    }
    const conn = await this.connection(endpoint);
    const res = await conn.request({ op: Op.Status }, opts.timeoutMs ?? this.requestTimeoutMs);
    if (res.status !== Status.Ok) throw errorFor(res);
    return JSON.parse(res.json ?? "{}");
  }

  /** The status of every known endpoint (plus members' addresses the client learned). */
  async statusAll(opts: CallOptions = {}): Promise<EndpointStatus[]> {
    let endpoints = [...this.endpoints];
    try {
      const members = await this.members({ timeoutMs: opts.timeoutMs ?? 3_000 });
      for (const m of members) {
        if (m.client && !endpoints.includes(m.client)) endpoints.push(m.client);
      }
    } catch { /* report what we can reach */ }
    endpoints = [...new Set(endpoints)];
    return await Promise.all(endpoints.map(async (endpoint): Promise<EndpointStatus> => {
      try {
        return { endpoint, status: await this.status(endpoint, opts) };
      } catch (e) {
        return { endpoint, error: e as Error };
      }
    }));
  }

  /** The address of the node currently believed to lead (undefined if unknown). */
  get leaderEndpoint(): string | undefined {
    return this.leader;
  }

  /** Closes every connection; later calls fail with {@link UnavailableError}. */
  async close(): Promise<void> {
    this.closed = true;
    const conns = [...this.conns.values()];
    this.conns.clear();
    this.open.clear();
    for (const p of conns) {
      try {
        (await p).close();
      } catch { /* never connected */ }
    }
  }

  /**
   * Registers sessions ahead of the writes that need them, so that `count` writes in flight at
   * once start without a registration round trip each (a write takes a pooled session; the
   * client registers one when none is free). Registers only what the pool lacks, all at once
   * (the node batches them into few Raft entries); resolves once they are pooled. A long-running
   * writer with known concurrency calls it at start; sessions unused for longer than the
   * cluster's `sessions.idle_timeout_ms` expire and are replaced on use as usual. Throws
   * {@link InvalidArgumentError} unless `count` is an integer in [0, 65536].
   */
  async prepareSessions(count: number, opts: CallOptions = {}): Promise<void> {
    if (!Number.isInteger(count) || count < 0 || count > MAX_PREPARED_SESSIONS) {
      throw new InvalidArgumentError(
        `prepareSessions: count must be an integer in [0, ${MAX_PREPARED_SESSIONS}]: ${count}`,
      );
    }
    const missing = count - this.sessions.length;
    if (missing <= 0) return;
    const got = await Promise.allSettled(
      Array.from({ length: missing }, () => this.registerSession(opts)),
    );
    for (const r of got) if (r.status === "fulfilled") this.sessions.push(r.value);
    const failed = got.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Registers a new client session with the cluster. */
  private async registerSession(opts: CallOptions): Promise<Session> {
    const res = await this.call({ op: Op.RegisterSession }, opts);
    if (!res.sessionId) throw new InternalError("session registration returned no id");
    return { clientId: res.sessionId, seq: 0 };
  }

  /**
   * Runs a write with a pooled client session (the same sequence on every retry). A refusal for
   * an expired session is retried once under a new session when no attempt may have been applied.
   */
  private async write(
    build: (s: { clientId: bigint; seq: number }) => RequestBody,
    opts: CallOptions,
  ): Promise<Response> {
    let session: Session | undefined = this.sessions.pop();
    if (!session) {
      // Refuse what the node would refuse before registering a session for it: nothing over a
      // limit enters the log, not even a registration (the frame first, as sending would).
      const probe = build({ clientId: 1n, seq: 1 });
      encodeRequest({ ...probe, id: 0 } as Request);
      if ("key" in probe) checkKey(probe.key);
      if ("value" in probe) checkValue(probe.value);
      session = await this.registerSession(opts);
    }
    try {
      for (let renewed = false;; renewed = true) {
        session.seq++;
        const state: CallState = { uncertain: false };
        try {
          return await this.call(
            build({ clientId: session.clientId, seq: session.seq }),
            opts,
            state,
          );
        } catch (e) {
          if (!(e instanceof SessionExpiredError)) throw e;
          session = undefined;
          if (state.uncertain || renewed) {
            throw new SessionExpiredError(
              state.uncertain
                ? `${e.message}; the write was not applied by its last attempt, but an earlier ` +
                  `attempt timed out and may have applied it`
                : `${e.message}; the write was not applied`,
              state.uncertain,
            );
          }
          session = await this.registerSession(opts);
        }
      }
    } finally {
      if (session) this.sessions.push(session);
    }
  }

  /** The (shared, lazily opened) connection to endpoint `ep`. */
  private connection(ep: string): Promise<Connection> {
    if (this.closed) return Promise.reject(new UnavailableError("client is closed"));
    let p = this.conns.get(ep);
    if (p) return p;
    p = Connection.open(ep, this.connectTimeoutMs, this.tls, this.token);
    this.conns.set(ep, p);
    p.then((c) => {
      if (this.conns.get(ep) === p) this.open.set(ep, c);
    }, () => {
      if (this.conns.get(ep) === p) this.conns.delete(ep);
    });
    return p;
  }

  /** Forgets the closed connection `conn` to `ep` (the next use opens a new one). */
  private forget(ep: string, conn: Connection): void {
    // A connection is in `open` from the moment its promise resolves until it is forgotten;
    // when it is not there, a newer connection replaced it already.
    if (this.open.get(ep) !== conn) return;
    this.open.delete(ep);
    this.conns.delete(ep);
  }

  /** The endpoint to try next: the cached leader, else round robin. */
  private target(): string {
    if (this.leader) return this.leader;
    return this.endpoints[this.rr % this.endpoints.length];
  }

  /** Forgets `failed` as leader and moves round robin past it. */
  private rotate(failed: string): void {
    if (this.leader === failed) this.leader = undefined;
    const i = this.endpoints.indexOf(failed);
    this.rr = (i < 0 ? this.rr : i) + 1;
  }

  /**
   * Sends `body` to the node believed to lead (any endpoint while unknown), following redirects
   * and retrying with backoff until the deadline. Returns Ok and NotFound responses; throws typed
   * errors otherwise.
   */
  private async call(
    body: RequestBody,
    opts: CallOptions,
    attempt?: { uncertain: boolean },
  ): Promise<Response> {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    let backoff = 10;
    let lastError: Error | undefined;
    let redirects = 0;
    while (true) {
      if (this.closed) throw new UnavailableError("client is closed");
      const left = deadline - Date.now();
      if (left <= 0) break;
      const ep = this.target();
      let res: Response;
      let sent = false;
      try {
        const conn = this.open.get(ep) ?? await this.connection(ep);
        if (conn.closed) {
          this.forget(ep, conn);
          throw new UnavailableError(`connection to ${ep} closed`);
        }
        sent = true;
        res = await conn.request(body, Math.min(left, this.requestTimeoutMs));
      } catch (e) {
        lastError = e as Error;
        // The request may have been served although no answer came back.
        if (sent && attempt) attempt.uncertain = true;
        // Only connection-level failures are retried elsewhere.
        if (!(e instanceof UnavailableError) && !(e instanceof TimeoutError)) throw e;
        this.rotate(ep);
        await sleep(Math.min(backoff, Math.max(0, deadline - Date.now())));
        backoff = Math.min(backoff * 2, 500);
        continue;
      }
      switch (res.status) {
        case Status.Ok:
        case Status.NotFound:
          // Only the leader accepts writes; reads and status may come from any node.
          if (!this.leader && WRITE_OPS.has(body.op)) this.leader = ep;
          return res;
        case Status.NotLeader: {
          lastError = errorFor(res);
          const hint = res.leaderAddr;
          if (hint && hint !== ep && redirects < 8) {
            redirects++;
            if (!this.endpoints.includes(hint)) this.endpoints.push(hint);
            this.leader = hint;
            continue; // follow the redirect at once
          }
          this.rotate(ep);
          break;
        }
        case Status.Unavailable:
        case Status.Timeout:
          // A write refused as unavailable (e.g. its proposal dropped at shutdown) may still
          // have been committed: for session writes that is uncertain too.
          if (
            attempt &&
            (res.status === Status.Timeout || body.op === Op.Put || body.op === Op.Delete ||
              body.op === Op.Atomic)
          ) attempt.uncertain = true;
          lastError = errorFor(res);
          this.rotate(ep);
          break;
        default:
          throw errorFor(res);
      }
      redirects = 0;
      await sleep(
        Math.min(backoff * (0.5 + Math.random()), Math.max(0, deadline - Date.now())),
      );
      backoff = Math.min(backoff * 2, 500);
    }
    if (lastError instanceof UnavailableError) {
      throw new UnavailableError(`operation failed within ${timeoutMs} ms: ${lastError.message}`, {
        cause: lastError,
      });
    }
    throw new TimeoutError(
      `operation timed out after ${timeoutMs} ms${lastError ? `: ${lastError.message}` : ""}`,
      timeoutMs,
      { cause: lastError },
    );
  }
}

/** Maps an error response to a typed error. */
export function errorFor(res: Response): Error {
  const msg = res.message || Status[res.status];
  switch (res.status) {
    case Status.NotFound:
      return new NotFoundError(msg);
    case Status.NotLeader:
      return new UnavailableError(
        `not the leader${res.leaderAddr ? ` (leader ${res.leaderId} at ${res.leaderAddr})` : ""}`,
      );
    case Status.Timeout:
      return new TimeoutError(msg, 0);
    case Status.Unavailable:
      return new UnavailableError(msg);
    case Status.InvalidArgument:
      return new InvalidArgumentError(msg);
    case Status.LimitExceeded:
      return new LimitError(res.limit ?? "", res.max ?? 0, undefined, msg);
    case Status.SessionExpired:
      return new SessionExpiredError(msg);
    case Status.Unauthenticated:
      return new UnauthenticatedError(msg);
    case Status.PermissionDenied:
      return new PermissionDeniedError(msg);
    case Status.MutationType:
      return new MutationTypeError(msg);
    case Status.WatchCompacted:
      return new WatchCompactedError(
        msg,
        res.position ? versionstampHex(res.position) : "00000000000000000000",
      );
    default:
      return new InternalError(msg);
  }
}
