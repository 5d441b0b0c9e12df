/**
 * The KV Connect server: the protocol of `Deno.openKv("http://<node>/kv")` (Deno's own client,
 * `DENO_KV_ACCESS_TOKEN`) on the node's HTTP port, from the facts of the KV Connect
 * specification.
 *
 * | Method and path                                   | Meaning                                    |
 * |---------------------------------------------------|--------------------------------------------|
 * | `POST /kv` (also `/kv/` and `/`)                  | metadata exchange (JSON), versions 1-3     |
 * | `POST /kv/v{1,2,3}/snapshot_read`                 | strong endpoint: linearizable reads        |
 * | `POST /kv/v{1,2,3}/atomic_write`                  | strong endpoint: writes (a follower forwards them to the leader) |
 * | `POST /kv/v3/watch`                               | watch stream                               |
 * | `POST /kv/eventual/v{1,2,3}/snapshot_read`, `…/v3/watch` | eventual endpoint: this node's serializable view |
 *
 * The metadata exchange checks the access token ({@link AccessCheck}), picks the highest
 * protocol version both sides speak, and answers the database id (the cluster's id, kept in
 * the replicated state), the endpoints (the strong one first: Deno's client uses only that) and a
 * data-path token bound to the database id with an expiry (server/kv_connect_auth.ts). The data
 * path is ProtoBuf (client/kv_connect.proto). Errors are plain text with the status Deno's
 * client acts on: 4xx is final (bad request, limits, type errors: 400; bad token: 401; a
 * read-only token writing: 403), 5xx is retried (no leader, timeouts: 503).
 *
 * @module
 */
import {
  type AtomicWrite,
  AtomicWriteStatus,
  decodeAtomicWrite,
  decodeSnapshotRead,
  decodeWatch,
  encodeAtomicWriteOutput,
  encodeSnapshotReadOutput,
  encodeWatchOutput,
  KvConnectDecodeError,
  type KvEntryMsg,
  MutationType,
  type ReadRange,
  SnapshotReadStatus,
  ValueEncoding,
  watchFrame,
  type WatchKeyOutput,
} from "../client/kv_connect_codec.ts";
import {
  InvalidArgumentError,
  NotLeaderError,
  TimeoutError,
  UnavailableError,
} from "../client/errors.ts";
import { LimitError, type NodeLimits } from "../config/limits.ts";
import {
  type AtomicCheck,
  type AtomicMutation,
  type AtomicResult,
  type KvEntry,
  v8SumParameterProblem,
} from "../storage/kv_model.ts";
import type { Consistency, KvService } from "./service.ts";
import { MutationTypeError } from "../client/errors.ts";
import { toHex as hex } from "../storage/bytes.ts";
import { WatchStreams } from "./watch_stream.ts";
import {
  type AccessCheck,
  type DataPathTokens,
  type KvSubject,
  TokenError,
} from "./kv_connect_auth.ts";

/** One stored entry as the store returns it. */
export type StoreEntry = KvEntry;
/** One check of an atomic operation (`versionstamp` null: the key must be absent). */
export type StoreCheck = AtomicCheck;
/** One mutation of an atomic operation. */
export type StoreMutation = AtomicMutation;
/** The outcome of an atomic operation. */
export type StoreAtomicResult = AtomicResult;
export type { Consistency };

/** What the KV Connect server needs of the node (the data model of server/service.ts). */
export interface KvConnectStore {
  /** The database id: the cluster's UUID. */
  databaseId(): Promise<string>;
  /** Point reads from one snapshot (null: absent). */
  getMany(
    keys: Uint8Array[],
    opts: { consistency: Consistency },
  ): Promise<{ entries: (StoreEntry | null)[]; consistency: Consistency }>;
  /** At most `limit` entries of `[start, end)`, in key order or reversed, from one snapshot. */
  range(r: {
    start: Uint8Array;
    end: Uint8Array;
    limit: number;
    reverse: boolean;
    consistency: Consistency;
  }): Promise<{ entries: StoreEntry[]; consistency: Consistency }>;
  /** Applies checks and mutations atomically through Raft (throws NotLeaderError on a
   * follower, LimitError, a TypeError for sum/min/max on a value of another type, or a V8 sum out of
   * its bounds). */
  atomic(op: { checks: StoreCheck[]; mutations: StoreMutation[] }): Promise<StoreAtomicResult>;
  /**
   * Waits (up to a few seconds, or until `signal`) for a commit that changes one of `keys` after
   * position `after` of this node's change history (undefined: answers the current position at
   * once); resolves with the position through which it looked. Without it, watches poll.
   */
  changesAfter?(
    keys: Uint8Array[],
    after: Uint8Array | undefined,
    signal: AbortSignal,
  ): Promise<Uint8Array>;
}

/** Options of {@link createKvConnectHandler}. */
export interface KvConnectOptions {
  /** The node's data. */
  store: KvConnectStore;
  /** Checks the metadata exchange's access token. */
  access: AccessCheck;
  /** Issues and verifies data-path tokens. */
  tokens: DataPathTokens;
  /** The node's limits (the `kv_connect_*` ones). */
  limits: NodeLimits;
  /**
   * Authorizes one data-path request of `subject` (server/auth.ts `authorize`): throws to refuse
   * (a `PermissionDeniedError` is a 403, an `UnauthenticatedError` a 401). Default: a `read`
   * subject may not atomic_write; everything else is allowed.
   */
  authorize?: (subject: KvSubject, op: KvConnectOp, scope: KvScope[]) => void;
  /** Aborted when the node shuts down: ends every watch stream. */
  closing?: AbortSignal;
  /** How often a watch re-reads its keys when the store cannot wait for changes (ms; default
   * 50). */
  watchPollMs?: number;
  /** How often a watch stream sends a keep-alive frame (ms; default 5 000). */
  watchKeepAliveMs?: number;
  /** The node's watch streams (bounded queues, server/watch_stream.ts; default: streams of
   * their own, bounded by `limits`). */
  watchStreams?: WatchStreams;
}

/** The data-path operations, named as server/auth.ts `AuthOp` names them. */
export type KvConnectOp = "snapshot_read" | "atomic_write" | "watch";
/** What a request touches: one key or a key range `[start, end)`. */
export type KvScope = Uint8Array | { start: Uint8Array; end: Uint8Array };

/** How long one wait for a watched change lasts before the watch looks again (ms). */
const WATCH_WAIT_MS = 5_000;

/** The path prefix of KV Connect on the HTTP port. */
export const KV_CONNECT_PATH = "/kv";
const VERSIONS = [1, 2, 3];

/** A refusal with its HTTP status and plain-text message. */
export class KvConnectError extends Error {
  /** Creates the error. */
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "KvConnectError";
  }
}

function text(status: number, message: string): Response {
  return new Response(message, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

function protobuf(bytes: Uint8Array): Response {
  return new Response(bytes as Uint8Array<ArrayBuffer>, {
    status: 200,
    headers: { "content-type": "application/x-protobuf" },
  });
}

function bearer(req: Request): string {
  const h = req.headers.get("authorization");
  const m = h ? /^\s*bearer\s+(\S+)\s*$/i.exec(h) : null;
  if (!m) throw new KvConnectError(401, "Malformed authorization header.");
  return m[1];
}

/** The protocol version of a metadata exchange request body (empty: version 1 only). */
export function negotiateVersion(body: Uint8Array | undefined): number {
  if (!body || body.length === 0) return 1;
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new KvConnectError(400, "The metadata exchange request body is not valid JSON.");
  }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) {
    throw new KvConnectError(400, "The metadata exchange request body must be a JSON object.");
  }
  const extra = Object.keys(obj).filter((k) => k !== "supportedVersions");
  if (extra.length > 0) {
    throw new KvConnectError(
      400,
      `Unknown field(s) in the metadata exchange request: ${extra.join(", ")}.`,
    );
  }
  const versions = (obj as { supportedVersions?: unknown }).supportedVersions;
  if (!Array.isArray(versions) || versions.some((v) => typeof v !== "number")) {
    throw new KvConnectError(400, "supportedVersions must be an array of numbers.");
  }
  const common = VERSIONS.filter((v) => versions.includes(v));
  if (common.length === 0) {
    throw new KvConnectError(
      400,
      `The server could not negotiate a protocol version: it speaks ${VERSIONS.join(", ")}, ` +
        `the client ${versions.join(", ") || "none"}.`,
    );
  }
  return Math.max(...common);
}

interface DataPath {
  version: number;
  eventual: boolean;
  method: string;
}

/** `/kv/v3/snapshot_read` → version 3, strong, snapshot_read (undefined: not a data path). */
function parseDataPath(path: string): DataPath | undefined {
  const m = /^\/kv\/(eventual\/)?v(\d+)\/([a-z_]+)$/.exec(path);
  if (!m) return undefined;
  return { version: Number(m[2]), eventual: m[1] !== undefined, method: m[3] };
}

/** How one node answers KV Connect requests; `undefined` for paths that are not KV Connect's. */
export function createKvConnectHandler(
  o: KvConnectOptions,
): (req: Request, url: URL, body: Uint8Array | undefined) => Promise<Response> | undefined {
  const l = o.limits;
  const pollMs = o.watchPollMs ?? 50;
  const keepAliveMs = o.watchKeepAliveMs ?? 5_000;
  const streams = o.watchStreams ?? new WatchStreams(l);

  const metadata = async (req: Request, url: URL, body: Uint8Array | undefined) => {
    const version = negotiateVersion(body);
    let subject: KvSubject | undefined;
    try {
      subject = o.access(bearer(req));
    } catch (e) {
      if (e instanceof KvConnectError) throw e;
      subject = undefined; // an unknown token of the tokens file
    }
    if (!subject) throw new KvConnectError(401, "Invalid access token.");
    if (!o.tokens.ready) {
      throw new KvConnectError(
        401,
        "KV Connect is not set up on this node: set kv_connect.access_token (or a cluster " +
          "secret or tokens file).",
      );
    }
    const databaseId = await o.store.databaseId();
    const { token, expiresAt } = o.tokens.issue(databaseId, subject);
    // Version 1 clients take endpoint URLs as they are: absolute; later versions resolve them
    // against the URL they posted to.
    const base = version === 1 ? url.origin : "";
    return Response.json({
      version,
      databaseId,
      endpoints: [
        { url: `${base}${KV_CONNECT_PATH}/v${version}`, consistency: "strong" },
        { url: `${base}${KV_CONNECT_PATH}/eventual/v${version}`, consistency: "eventual" },
      ],
      token,
      expiresAt: new Date(expiresAt).toISOString(),
    });
  };

  /** Checks a data-path request's token, database id and version headers; its subject. */
  const admit = async (req: Request, dp: DataPath): Promise<KvSubject> => {
    if (!VERSIONS.includes(dp.version)) {
      throw new KvConnectError(404, `No KV Connect protocol version ${dp.version} here.`);
    }
    const token = bearer(req);
    const databaseId = await o.store.databaseId();
    const idHeader = dp.version === 1 ? "x-transaction-domain-id" : "x-denokv-database-id";
    if (req.headers.get(idHeader) !== databaseId) {
      throw new KvConnectError(400, `Invalid database id (${idHeader}).`);
    }
    if (dp.version >= 2 && req.headers.get("x-denokv-version") !== String(dp.version)) {
      throw new KvConnectError(
        400,
        `Invalid protocol version: x-denokv-version must be ${dp.version} on this endpoint.`,
      );
    }
    try {
      return o.tokens.verify(token, databaseId).subject;
    } catch (e) {
      if (e instanceof TokenError) throw new KvConnectError(401, e.message);
      throw e;
    }
  };

  const checkReadKey = (k: Uint8Array) => {
    if (k.length > l.kvConnectReadKeyBytes) {
      throw new KvConnectError(400, "A key exceeds the key size limit.");
    }
  };

  const allow = (subject: KvSubject, op: KvConnectOp, scope: KvScope[]) => {
    if (op === "atomic_write" && subject.role === "read") {
      throw new KvConnectError(403, "This access token may only read (snapshot_read, watch).");
    }
    try {
      o.authorize?.(subject, op, scope);
    } catch (e) {
      const name = (e as Error)?.name;
      if (name === "PermissionDeniedError") throw new KvConnectError(403, (e as Error).message);
      if (name === "UnauthenticatedError") throw new KvConnectError(401, (e as Error).message);
      throw e;
    }
  };

  const snapshotRead = async (body: Uint8Array, dp: DataPath, subject: KvSubject) => {
    const read = decodeSnapshotRead(body);
    if (read.ranges.length > l.kvConnectReadRanges) {
      throw new KvConnectError(400, "Too many read ranges requested in one read request.");
    }
    let total = 0;
    for (const r of read.ranges) {
      checkReadKey(r.start);
      checkReadKey(r.end);
      if (r.limit <= 0) {
        throw new KvConnectError(
          400,
          "The read range limit of the snapshot read request is invalid.",
        );
      }
      total += r.limit;
    }
    if (total > l.kvConnectReadEntries) {
      throw new KvConnectError(
        400,
        "The total number of entries requested across read ranges in the read request is too large.",
      );
    }
    allow(subject, "snapshot_read", read.ranges.map((r) => ({ start: r.start, end: r.end })));
    const consistency: Consistency = dp.eventual ? "eventual" : "strong";
    const { ranges, strong } = await readRanges(read.ranges, consistency);
    return protobuf(encodeSnapshotReadOutput({
      ranges: ranges.map((values) => ({ values })),
      readDisabled: false,
      readIsStronglyConsistent: strong,
      status: SnapshotReadStatus.Success,
    }));
  };

  /** Point reads (Deno's get / getMany: `[k, k ++ 0x00)`) go to getMany, one snapshot. */
  const readRanges = async (
    ranges: ReadRange[],
    consistency: Consistency,
  ): Promise<{ ranges: KvEntryMsg[][]; strong: boolean }> => {
    if (ranges.length === 0) return { ranges: [], strong: consistency === "strong" };
    if (ranges.every(isPointRange)) {
      const r = await o.store.getMany(ranges.map((x) => x.start), { consistency });
      return {
        ranges: r.entries.map((e) => e ? [msg(e)] : []),
        strong: r.consistency === "strong",
      };
    }
    const out: KvEntryMsg[][] = [];
    let strong = true;
    for (const r of ranges) {
      const got = await o.store.range({
        start: r.start,
        end: r.end,
        limit: r.limit,
        reverse: r.reverse,
        // One barrier is enough for every range of the request.
        consistency: out.length === 0 ? consistency : "eventual",
      });
      if (out.length === 0) strong = got.consistency === "strong";
      out.push(got.entries.map(msg));
    }
    return { ranges: out, strong };
  };

  const atomicWrite = async (body: Uint8Array, subject: KvSubject) => {
    allow(subject, "atomic_write", []);
    const w = decodeAtomicWrite(body);
    const op = toStoreOp(w);
    allow(subject, "atomic_write", [
      ...op.checks.map((c) => c.key),
      ...op.mutations.map((m) => m.key),
    ]);
    const r = await o.store.atomic(op);
    return protobuf(encodeAtomicWriteOutput(
      r.ok
        ? { status: AtomicWriteStatus.Success, versionstamp: r.versionstamp, failedChecks: [] }
        : {
          status: AtomicWriteStatus.CheckFailure,
          versionstamp: new Uint8Array(),
          failedChecks: r.failedChecks,
        },
    ));
  };

  const watch = (body: Uint8Array, dp: DataPath, subject: KvSubject) => {
    if (dp.version < 3) throw new KvConnectError(404, "watch needs protocol version 3.");
    const w = decodeWatch(body);
    if (w.keys.length > l.kvConnectWatchedKeys) {
      throw new KvConnectError(400, "Too many keys watched in a single watch request.");
    }
    for (const k of w.keys) checkReadKey(k.key);
    const keys = w.keys.map((k) => k.key);
    allow(subject, "watch", keys);
    const consistency: Consistency = dp.eventual ? "eventual" : "strong";
    // Bounded (server/watch_stream.ts): a frame waits for room in the stream's queue; a reader
    // that takes nothing meanwhile for the stall time ends the stream (KV Connect has no error
    // frame; a watch opened again starts with the keys' current state, so nothing is lost).
    const out = streams.stream(() => clearInterval(keepAlive));
    const stop = out.signal;
    // Ends with the node (closing) or the client (the stream's cancel).
    const abort = () => out.end();
    o.closing?.addEventListener("abort", abort, { once: true });
    const keepAlive = setInterval(() => {
      if (out.hasRoom) out.send(watchFrame(new Uint8Array()));
    }, keepAliveMs);
    const changes = o.store.changesAfter?.bind(o.store);
    (async () => {
      // The versionstamp each key had in the last frame sent ("" absent, undefined never).
      let last: (string | undefined)[] = keys.map(() => undefined);
      let first = true;
      // This node's change-history position the last read covers (push), if it has one.
      let position: Uint8Array | undefined;
      while (!stop.aborted) {
        await out.room();
        if (stop.aborted) break;
        let entries: (StoreEntry | null)[];
        try {
          // The position first, then the read: a commit between the two wakes the wait.
          if (changes && position === undefined) {
            position = await changes(keys, undefined, stop);
          }
          // Each frame is one consistent snapshot of every watched key (a strong watch
          // starts with a barrier; later polls read the node as it is).
          entries = (await o.store.getMany(keys, {
            consistency: first ? consistency : "eventual",
          })).entries;
        } catch {
          // Not available right now (restarting, no leader): try again shortly.
          await sleep(pollMs * 4, stop);
          continue;
        }
        const now = entries.map((e) => e ? hex(e.versionstamp) : "");
        // Every frame reports every key as changed with its current entry: Deno's client
        // (2.9.6) reads an unchanged key of a remote watch as deleted, and every client
        // drops entries whose versionstamp it already has.
        const frame: WatchKeyOutput[] = entries.map((e) =>
          e ? { changed: true, entryIfChanged: msg(e) } : { changed: true }
        );
        if (first || now.some((v, i) => v !== last[i])) {
          out.send(watchFrame(encodeWatchOutput({
            status: SnapshotReadStatus.Success,
            keys: frame,
          })));
          last = now;
          first = false;
        }
        if (!changes) {
          await sleep(pollMs, stop);
          continue;
        }
        try {
          position = await changes(keys, position, stop);
        } catch {
          // History compacted past the position, node restarting...: start again from now.
          position = undefined;
          await sleep(pollMs, stop);
        }
      }
    })().catch(() => {}).finally(() => {
      clearInterval(keepAlive);
      o.closing?.removeEventListener("abort", abort);
      out.end();
    });
    return new Response(out.readable, {
      status: 200,
      headers: { "content-type": "application/octet-stream" },
    });
  };

  const serve = async (req: Request, url: URL, body: Uint8Array | undefined) => {
    try {
      const path = url.pathname;
      if (path === "/" || path === KV_CONNECT_PATH || path === `${KV_CONNECT_PATH}/`) {
        if (req.method !== "POST") {
          throw new KvConnectError(405, "The metadata exchange is a POST request.");
        }
        return await metadata(req, url, body);
      }
      const dp = parseDataPath(path);
      if (!dp) throw new KvConnectError(404, `No KV Connect endpoint at ${path}.`);
      if (req.method !== "POST") throw new KvConnectError(405, "Data path requests are POSTs.");
      const subject = await admit(req, dp);
      const bytes = body ?? new Uint8Array();
      switch (dp.method) {
        case "snapshot_read":
          return await snapshotRead(bytes, dp, subject);
        case "atomic_write":
          if (dp.eventual) {
            throw new KvConnectError(400, "atomic_write goes to a strong endpoint.");
          }
          return await atomicWrite(bytes, subject);
        case "watch":
          return watch(bytes, dp, subject);
        default:
          throw new KvConnectError(404, `No KV Connect operation ${dp.method}.`);
      }
    } catch (e) {
      // A follower hands writes to the leader: the HTTP front end forwards the request.
      if (e instanceof NotLeaderError) throw e;
      return errorResponse(e);
    }
  };

  return (req, url, body) => {
    const p = url.pathname;
    const mine = p === KV_CONNECT_PATH || p.startsWith(`${KV_CONNECT_PATH}/`) ||
      (p === "/" && req.method === "POST");
    return mine ? serve(req, url, body) : undefined;
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

function msg(e: StoreEntry): KvEntryMsg {
  // storage/kv_model.ts ValueEncoding has the values of the wire's VE_* (1, 2, 3).
  const encoding = e.encoding as number as ValueEncoding;
  return { key: e.key, value: e.value, encoding, versionstamp: e.versionstamp };
}

/** `[k, k ++ 0x00)`: exactly the key k. */
function isPointRange(r: ReadRange): boolean {
  const s = r.start, e = r.end;
  if (e.length !== s.length + 1 || e[s.length] !== 0 || r.limit < 1) return false;
  for (let i = 0; i < s.length; i++) if (s[i] !== e[i]) return false;
  return true;
}

/** The spec's messages of the atomic limits (config/limits.ts `checkAtomic`'s limit names). */
const LIMIT_MESSAGES: Record<string, string> = {
  atomic_checks: "Too many checks included in atomic write.",
  atomic_mutations: "Too many mutations / enqueues included in atomic write.",
  atomic_key_bytes: "A key exceeds the key size limit.",
  atomic_value_bytes: "A value exceeds the value size limit.",
  atomic_total_bytes: "The total size of the atomic write is too large.",
};

/** The plain-text response of a refusal or failure. */
function errorResponse(e: unknown): Response {
  if (e instanceof KvConnectError) return text(e.status, e.message);
  if (e instanceof KvConnectDecodeError) {
    return text(400, `Request protobuf is invalid: ${e.message}.`);
  }
  if (e instanceof LimitError) return text(400, LIMIT_MESSAGES[e.limit] ?? e.message);
  if (e instanceof InvalidArgumentError || e instanceof MutationTypeError) {
    return text(400, e.message);
  }
  if (e instanceof UnavailableError || e instanceof TimeoutError) {
    return text(503, `The database is unavailable right now, try again: ${e.message}`);
  }
  // sum / min / max on a value of another encoding, and other type errors of the data model.
  if (e instanceof TypeError) return text(400, e.message);
  return text(500, `An internal server error occurred: ${(e as Error)?.message ?? e}`);
}

const ENCODINGS = new Set([ValueEncoding.V8, ValueEncoding.LE64, ValueEncoding.Bytes]);

/**
 * Validates an atomic write against Deno KV's rules and converts it. Its limits (`atomic_*`,
 * config/limits.ts) are not checked here: the service checks them, once, before proposing
 * ({@link KvService.atomic}), and {@link errorResponse} answers its `LimitError` with the
 * spec's message.
 */
export function toStoreOp(w: AtomicWrite): { checks: StoreCheck[]; mutations: StoreMutation[] } {
  if (w.enqueues.length > 0) {
    throw new KvConnectError(400, "Enqueue operations are not supported by gokv (no queues).");
  }
  const checks = w.checks.map((c): StoreCheck => {
    if (c.versionstamp.length !== 0 && c.versionstamp.length !== 10) {
      throw new KvConnectError(400, "Invalid versionstamp.");
    }
    return { key: c.key, versionstamp: c.versionstamp.length === 0 ? null : c.versionstamp };
  });
  const mutations = w.mutations.map((m): StoreMutation => {
    if (m.key.length === 0) throw new KvConnectError(400, "A key must not be empty.");
    if (m.expireAtMs < 0) throw new KvConnectError(400, "Invalid mutation expire at.");
    const v = m.value;
    const bounds = m.sumMin.length > 0 || m.sumMax.length > 0 || m.sumClamp;
    if (bounds && m.mutationType !== MutationType.Sum) {
      throw new KvConnectError(400, "Invalid mutation kind or arguments.");
    }
    switch (m.mutationType) {
      case MutationType.Set:
      case MutationType.SetSuffixVersionstampedKey: {
        if (!v || !ENCODINGS.has(v.encoding)) {
          throw new KvConnectError(400, `The value encoding ${v?.encoding ?? 0} is unknown.`);
        }
        if (v.encoding === ValueEncoding.LE64 && v.data.length !== 8) {
          throw new KvConnectError(400, "A u64 value must be 8 bytes.");
        }
        return {
          type: m.mutationType === MutationType.Set ? "set" : "setSuffixVersionstampedKey",
          key: m.key,
          value: v.data,
          encoding: v.encoding as number as StoreEntry["encoding"],
          ...(m.expireAtMs > 0 ? { expireAt: m.expireAtMs } : {}),
        };
      }
      case MutationType.Delete:
        return { type: "delete", key: m.key };
      case MutationType.Sum:
      case MutationType.Min:
      case MutationType.Max: {
        const name = m.mutationType === MutationType.Sum
          ? "sum"
          : m.mutationType === MutationType.Min
          ? "min"
          : "max";
        if (name === "sum" && v && v.encoding === ValueEncoding.V8) {
          // A sum of V8 numbers / bigints, bounded by sum_min / sum_max (V8 values of the
          // operand's type; empty: none): the operand and bounds are checked here (denokv's
          // messages, 400), the stored value's type when the write applies.
          const problem = v8SumParameterProblem(
            v.data,
            m.sumMin.length > 0 ? m.sumMin : undefined,
            m.sumMax.length > 0 ? m.sumMax : undefined,
          );
          if (problem !== undefined) throw new KvConnectError(400, problem);
          return {
            type: "sum",
            key: m.key,
            value: v.data,
            encoding: ValueEncoding.V8 as number as StoreEntry["encoding"],
            ...(m.sumMin.length > 0 ? { min: m.sumMin } : {}),
            ...(m.sumMax.length > 0 ? { max: m.sumMax } : {}),
            ...(m.sumClamp ? { clamp: true } : {}),
          };
        }
        if (!v || v.encoding !== ValueEncoding.LE64) {
          throw new KvConnectError(
            400,
            `Failed to perform '${name}' mutation: gokv supports ${name} on Deno.KvU64 operands ` +
              `${name === "sum" ? "and V8 numbers / bigints " : ""}only (value encoding ` +
              `${v?.encoding ?? 0}).`,
          );
        }
        if (v.data.length !== 8) throw new KvConnectError(400, "A u64 value must be 8 bytes.");
        if (bounds) {
          throw new KvConnectError(
            400,
            "sum_min, sum_max and sum_clamp apply to V8 number or bigint sums only.",
          );
        }
        return name === "sum"
          ? { type: "sum", key: m.key, value: v.data }
          : { type: name, key: m.key, value: v.data };
      }
      default:
        throw new KvConnectError(400, "Invalid mutation kind or arguments.");
    }
  });
  return { checks, mutations };
}

/**
 * The store of a node: its {@link KvService} (the data model through Raft) and the cluster id.
 * A range the service answers in more than one page (its byte budget, `scan_page_bytes`) is
 * read page by page until `limit` entries or its end, the pages after the first without a new
 * barrier.
 */
export function serviceStore(
  service: KvService,
  databaseId: () => Promise<string>,
): KvConnectStore {
  return {
    databaseId,
    getMany: (keys, opts) => service.getMany(keys, opts),
    atomic: (op) => service.atomic(op),
    async changesAfter(keys, after, signal) {
      const poll = await service.watchPoll({ keys, prefixes: [] }, {
        after,
        waitMs: after === undefined ? 0 : WATCH_WAIT_MS,
        maxEvents: 1,
        signal,
      });
      return poll.position;
    },
    async range(r) {
      const entries: StoreEntry[] = [];
      let cursor: Uint8Array | undefined;
      let consistency: Consistency | undefined;
      while (entries.length < r.limit) {
        const page = await service.range({
          start: r.start,
          end: r.end,
          limit: r.limit - entries.length,
          reverse: r.reverse,
          cursor,
          consistency: consistency === undefined ? r.consistency : "eventual",
        });
        consistency ??= page.consistency;
        entries.push(...page.entries);
        if (!page.cursor || page.entries.length === 0) break;
        cursor = page.cursor;
      }
      return { entries, consistency: consistency ?? r.consistency };
    },
  };
}
