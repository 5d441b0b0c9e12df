/**
 * The KV semantics, implemented once for every backend: the key layout inside an ordered byte
 * store, how a batch of committed commands changes it, the client session table and the reads.
 * A backend only provides an ordered store ({@link StoreReader}: point get, range scan) and applies
 * the {@link StoreOp}s that {@link KvCore.apply} returns as one atomic batch.
 *
 * ## Key layout
 *
 * - `0x01 ++ userKey` → the user record (kv_model.ts: encoding, versionstamp, expiry, value)
 * - `0x00 0x01` → u64 applied index (written in the same batch as the commands it covers), then
 *   uvarint (1 + the position of the last user-key change of the entry at that index; 0: it changed
 *   none). Absent (8 bytes only: written by a restore, an import or an earlier version): not known.
 *   A watch resuming inside that entry after a restart is served only when nothing of it follows
 *   (server/watch.ts).
 * - `0x00 0x02 ++ …` → the session table of an earlier format (ignored, dropped by snapshots)
 * - `0x00 0x03` → the lsm backend's sync marker of an earlier version (ignored, dropped by snapshots)
 * - `0x00 0x05` → u64 the state machine's clock (ms; the largest command timestamp applied)
 * - `0x00 0x06` → u64 the number of sessions
 * - `0x00 0x07 ++ u64be sessionId` → the session record ({@link SessionInfo}, varints)
 * - `0x00 0x08 ++ …` → the by-last-use index of an earlier format (ignored, dropped by snapshots)
 * - `0x00 0x09 ++ u64be expireAt ++ userKey` → empty (the expiry index; an entry whose key was
 *   overwritten since is stale: a sweep drops it without touching the key)
 * - `0x00 0x0a` → u8 the record format (1: kv_model.ts records); a store with user keys and
 *   without it holds raw values of an older version and is refused at open
 * - `0x00 0x0b` → the cluster id (a UUID, 36 ASCII bytes), set by the first SetClusterId command
 *   applied (see "The cluster id")
 *
 * ## The cluster id
 *
 * A SetClusterId command (the first leader proposes one with a random UUID once it sees none)
 * sets the id only when the store has none: the first one applied wins, on every replica alike,
 * and later ones change nothing. It is a state-machine record, not a user key: no read, scan or
 * write of user keys reaches it, and it travels with snapshots and backups (meta records). A
 * store of an earlier version kept the id under the user key {@link LEGACY_CLUSTER_ID_KEY}: the
 * first SetClusterId applied adopts that key's value (when it is a UUID) and deletes the key.
 *
 * ## Expiry
 *
 * A record whose `expireAt` is at or before the state machine's clock is expired: reads, checks
 * and mutations treat it as absent at once (deterministic: the clock is in the store, written in
 * the batch that moves it), and the next ExpirySweep command, which the leader proposes with its
 * clock reading when the index says a key is due, deletes it (a change that watchers see).
 *
 * ## Client sessions (the Raft thesis §6.3)
 *
 * - A `RegisterSession` command opens a session whose id is the command's log index. Before it
 *   is added, the least recently used sessions are evicted while the table holds `maxSessions`
 *   or more, and up to {@link EXPIRED_PER_REGISTER} expired ones (oldest first) in any case.
 * - The state machine's clock is the largest timestamp carried by an applied command (it never
 *   reads a clock); a session unused for longer than its idle timeout by that clock is expired.
 * - A command with a session (`clientId` = session id, `seq`): an unknown or expired session is
 *   refused with `session_expired` (nothing changes); `seq` equal to the session's last seq with
 *   the same command (op and body: {@link decodeCommandWithHash}) answers the cached result; a seq
 *   at or below the last one otherwise is refused with `session_seq`; a higher seq is applied and
 *   recorded. Session id 0 is refused with `bad_session`. Every accepted use refreshes the session.
 * - A command without a session is applied as it comes (at most once per proposal).
 *
 * A use of a session writes one store record, the session's own (its last seq, command hash,
 * last use by clock and by log index). The order of last use lives in memory only
 * ({@link KvCore.load} rebuilds it from the records' last-use log indexes, which are unique):
 * every replica holds the same order at the same applied index, so every replica evicts the same
 * sessions at the same log position. Memory: one map entry per session (the table's bound,
 * `maxSessions`, bounds it); records of recently used sessions are cached.
 *
 * @module
 */
import { putVarint, varintLength } from "../lsm/bytes.ts";
import type { ApplyCommand } from "../raft/state_machine.ts";
import {
  type Alloc,
  ByteReader,
  bytesToLatin1,
  compareBytes,
  HEAP,
  prefixEnd,
  Slab,
} from "./bytes.ts";
import {
  type AtomicCommand,
  batchable,
  CLUSTER_ID_PATTERN,
  type Command,
  CommandOp,
  commandSizeError,
  decodeBatch,
  decodeCommandWithHash,
  type ExpirySweepCommand,
  type SetClusterIdCommand,
} from "./command.ts";
import { DecodeError } from "./errors.ts";
import {
  applyU64,
  applyV8Sum,
  compareVersionstamps,
  decodeRecord,
  encodeRecord,
  isExpired,
  type KvEntry,
  makeVersionstamp,
  nonU64ValueMessage,
  plainRecordValue,
  readU64le,
  type StoredRecord,
  suffixVersionstampedKey,
  SUM_RANGE_MESSAGE,
  throughVersionstamp,
  u64le,
  V8_SUM_ALL_MESSAGES,
  ValueEncoding,
  VERSIONSTAMP_BYTES,
  versionstampIndex,
  versionstampPosition,
} from "./kv_model.ts";
import type {
  ApplyResult,
  CachedResult,
  ClusterIdResult,
  EntryResult,
  ErrorResult,
  KvChange,
  OkResult,
  RegisterResult,
  ScanOptions,
  SessionInfo,
  StateEntry,
  StateExport,
  StateImport,
} from "./kv_state_machine.ts";

/** A range of store keys `[gte, lt)`. */
export interface StoreRange {
  /** Inclusive lower bound. */
  gte: Uint8Array;
  /** Exclusive upper bound. */
  lt: Uint8Array;
  /** Descending order. */
  reverse?: boolean;
}

/** The read side of an ordered byte store (a database, one of its snapshots, a map). */
export interface StoreReader {
  /** The value of `key`, or undefined. */
  get(key: Uint8Array): Promise<Uint8Array | undefined>;
  /** The pairs in `range`, in key order; the caller may stop early. */
  scan(range: StoreRange): AsyncIterable<[Uint8Array, Uint8Array]>;
}

/** One write of a batch. */
export type StoreOp =
  | { type: "put"; key: Uint8Array; value: Uint8Array }
  | { type: "delete"; key: Uint8Array };

const USER = 0x01;
/** The store key of the applied index. */
export const APPLIED_KEY: Uint8Array = new Uint8Array([0x00, 0x01]);
const CLOCK_KEY = new Uint8Array([0x00, 0x05]);
const SESSION_COUNT_KEY = new Uint8Array([0x00, 0x06]);
const SESSION_PREFIX = new Uint8Array([0x00, 0x07]);
const SESSION_END = prefixEnd(SESSION_PREFIX)!;
const EXPIRY_PREFIX = new Uint8Array([0x00, 0x09]);
const EXPIRY_END = prefixEnd(EXPIRY_PREFIX)!;
const FORMAT_KEY = new Uint8Array([0x00, 0x0a]);
const CLUSTER_ID_KEY = new Uint8Array([0x00, 0x0b]);
/** The user key under which an earlier version kept the cluster id: `0xff "gokv:cluster-id"`
 * (adopted and deleted by the first SetClusterId applied). */
export const LEGACY_CLUSTER_ID_KEY: Uint8Array = new Uint8Array([
  0xff,
  ...new TextEncoder().encode("gokv:cluster-id"),
]);
/** The record format this version writes (kv_model.ts). */
export const RECORD_FORMAT = 1;
/** The first store key of user data. */
export const USER_LO: Uint8Array = new Uint8Array([USER]);
/** The end (exclusive) of user data. */
export const USER_HI: Uint8Array = new Uint8Array([USER + 1]);
/** The whole store. */
export const ALL: StoreRange = { gte: new Uint8Array(0), lt: new Uint8Array([0xff]) };

/** The state machine's own records (everything below user data). */
export const META: StoreRange = { gte: new Uint8Array(0), lt: USER_LO };

/** Whether a store key is a session record. */
export function isSessionRecord(k: Uint8Array): boolean {
  return k.length === SESSION_PREFIX.length + 8 && k[0] === SESSION_PREFIX[0] &&
    k[1] === SESSION_PREFIX[1];
}

/**
 * A state export over a consistent store view (see `StateExport`): its records as the caller
 * consumes them; `release` frees the view.
 */
export async function exportView(
  view: StoreReader,
  release: () => void,
): Promise<StateExport> {
  let released = false;
  const once = () => {
    if (released) return;
    released = true;
    release();
  };
  try {
    return {
      appliedIndex: await readAppliedIndex(view),
      versionstamp: throughVersionstamp(await readAppliedIndex(view)),
      sessionCount: await readU64(view, SESSION_COUNT_KEY, "session count"),
      async *meta() {
        for await (const [k, v] of view.scan(META)) if (isSnapshotKey(k)) yield [k, v];
      },
      async *entries(): AsyncGenerator<StateEntry> {
        for await (const [k, v] of view.scan({ gte: USER_LO, lt: USER_HI })) {
          const r = decodeRecord(v);
          const e: StateEntry = {
            key: k.subarray(1),
            value: r.value,
            versionstamp: r.versionstamp,
            encoding: r.encoding,
          };
          if (r.expireAt !== undefined) e.expireAt = r.expireAt;
          yield e;
        }
      },

      release: once,
    };
  } catch (e) {
    once();
    throw e;
  }
}

/**
 * The store records of an import (meta records, then user keys with their expiry index entries,
 * then the record format and the applied index). An entry without a versionstamp (a backup of an
 * older format) gets the versionstamp of the import's applied index.
 */
export async function* importRecords(src: StateImport): AsyncGenerator<StoreOp> {
  for await (const [key, value] of src.meta) {
    if (compareBytes(key, USER_LO) >= 0 || !isSnapshotKey(key)) {
      throw new DecodeError("state import", "a meta record outside the state machine's records");
    }
    yield { type: "put", key, value };
  }
  const fallback = makeVersionstamp(src.appliedIndex);
  for await (const e of src.entries) {
    const rec: StoredRecord = {
      encoding: e.encoding ?? ValueEncoding.BYTES,
      versionstamp: e.versionstamp ?? fallback,
      value: e.value,
    };
    if (e.expireAt !== undefined && e.expireAt > 0) {
      rec.expireAt = e.expireAt;
      yield { type: "put", key: expiryKey(e.expireAt, e.key), value: new Uint8Array(0) };
    }
    yield { type: "put", key: userKey(e.key), value: encodeRecord(rec) };
  }
  yield formatOp();
  yield KvCore.appliedOp(src.appliedIndex);
}

/** The write that marks a store as holding records of {@link RECORD_FORMAT}. */
export function formatOp(): StoreOp {
  return { type: "put", key: FORMAT_KEY, value: new Uint8Array([RECORD_FORMAT]) };
}

/**
 * Converts the writes of a store of an older version (raw values under user keys, no format
 * marker) into this format: each value becomes a bytes record with the versionstamp of the
 * applied index. Writes that already carry the format marker are returned unchanged.
 */
export function upgradeLegacyOps(ops: StoreOp[], appliedIndex: number): StoreOp[] {
  if (ops.some((o) => o.type === "put" && compareBytes(o.key, FORMAT_KEY) === 0)) return ops;
  const vs = makeVersionstamp(appliedIndex);
  const out = ops.map((o): StoreOp =>
    o.type === "put" && o.key[0] === USER
      ? {
        type: "put",
        key: o.key,
        value: encodeRecord({ encoding: ValueEncoding.BYTES, versionstamp: vs, value: o.value }),
      }
      : o
  );
  out.push(formatOp());
  return out;
}

function expiryKey(expireAt: number, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(EXPIRY_PREFIX.length + 8 + key.length);
  out.set(EXPIRY_PREFIX);
  new DataView(out.buffer).setBigUint64(EXPIRY_PREFIX.length, BigInt(expireAt), false);
  out.set(key, EXPIRY_PREFIX.length + 8);
  return out;
}

/** A record as an entry. */
function toEntry(key: Uint8Array, r: StoredRecord): KvEntry {
  const e: KvEntry = {
    key,
    value: r.value,
    encoding: r.encoding,
    versionstamp: r.versionstamp,
  };
  if (r.expireAt !== undefined) e.expireAt = r.expireAt;
  return e;
}

/** Reads records of one view, hiding the expired ones (the clock is read from the view, once,
 * when a record with an expiry time is met). */
class LiveReader {
  #clock: number | undefined;
  constructor(private readonly r: StoreReader) {}

  async live(v: Uint8Array | undefined): Promise<StoredRecord | undefined> {
    if (!v) return undefined;
    const rec = decodeRecord(v);
    if (rec.expireAt === undefined) return rec;
    this.#clock ??= await readU64(this.r, CLOCK_KEY, "clock");
    return isExpired(rec, this.#clock) ? undefined : rec;
  }
}

/** Where the store keys of point reads come from: they live only until the lookup is done (a
 * slab view costs a fraction of an array of its own; the slab is never reset). */
const LOOKUP = new Slab(16 * 1024, 1024);

/** Expired sessions a registration removes at most besides what the bound requires. */
export const EXPIRED_PER_REGISTER = 16;
/** Session records the core keeps cached in memory (the table itself stays in the store). */
export const SESSION_CACHE = 4096;

/** The store key of a user key (its bytes from `a`). */
export function userKey(k: Uint8Array, a: Alloc = HEAP): Uint8Array {
  const out = a(k.length + 1);
  out[0] = USER;
  if (k.length > 32) out.set(k, 1);
  else for (let i = 0; i < k.length; i++) out[1 + i] = k[i];
  return out;
}

/** Whether a store key belongs in a snapshot (everything but the applied index and the records
 * of earlier formats: sessions, the lsm sync marker, the by-last-use index). */
export function isSnapshotKey(k: Uint8Array): boolean {
  if (k.length >= 2 && k[0] === 0 && (k[1] <= 0x03 || k[1] === 0x08)) return false;
  return true;
}

/** The store key of session `id`: {@link SESSION_PREFIX} ++ u64be id (no BigInt arithmetic for
 * the ids there are: log indexes, safe integers). */
export function sessionKey(id: bigint, a: Alloc = HEAP): Uint8Array {
  if (id > MAX_SAFE_BIG || id < 0n) return be64Key(SESSION_PREFIX, id);
  const n = Number(id);
  const out = a(10);
  out[0] = SESSION_PREFIX[0];
  out[1] = SESSION_PREFIX[1];
  const hi = Math.floor(n / 0x1_0000_0000);
  const lo = n >>> 0;
  out[2] = hi >>> 24;
  out[3] = (hi >>> 16) & 0xff;
  out[4] = (hi >>> 8) & 0xff;
  out[5] = hi & 0xff;
  out[6] = lo >>> 24;
  out[7] = (lo >>> 16) & 0xff;
  out[8] = (lo >>> 8) & 0xff;
  out[9] = lo & 0xff;
  return out;
}

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** The versionstamps of applied commands: a view each into small shared chunks (they live as
 * long as a result or a cached session result; a chunk of 1 KiB holds ~100). */
const VERSIONSTAMPS = new Slab(1024, VERSIONSTAMP_BYTES);

function be64Key(prefix: Uint8Array, n: bigint): Uint8Array {
  const out = new Uint8Array(prefix.length + 8);
  out.set(prefix);
  new DataView(out.buffer).setBigUint64(prefix.length, n, false);
  return out;
}

function readBe64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, false);
}

/** `n` (a non-negative safe integer) as 8 little-endian bytes: the format of ByteWriter.u64. */
function u64Value(n: number, a: Alloc = HEAP): Uint8Array {
  const out = a(8);
  putU64le(out, n);
  return out;
}

/** Writes `n` (a non-negative safe integer) into `out[0, 8)`, little-endian. */
function putU64le(out: Uint8Array, n: number): void {
  let lo = n % 0x1_0000_0000, hi = Math.floor(n / 0x1_0000_0000);
  for (let i = 0; i < 4; i++, lo = Math.floor(lo / 256)) out[i] = lo & 0xff;
  for (let i = 4; i < 8; i++, hi = Math.floor(hi / 256)) out[i] = hi & 0xff;
}

async function readU64(r: StoreReader, key: Uint8Array, what: string): Promise<number> {
  const v = await r.get(key);
  return v ? new ByteReader(v, what).u64() : 0;
}

/** Reads the cluster id recorded in a store (undefined: none yet). */
async function readClusterId(r: StoreReader): Promise<string | undefined> {
  const v = await r.get(CLUSTER_ID_KEY);
  if (!v) return undefined;
  const id = new TextDecoder().decode(v);
  if (!CLUSTER_ID_PATTERN.test(id)) throw new DecodeError("cluster id", `not a UUID: "${id}"`);
  return id;
}

/** Reads the applied index recorded in a store. */
export function readAppliedIndex(r: StoreReader): Promise<number> {
  return readU64(r, APPLIED_KEY, "applied index");
}

/** Reads the position of the last user-key change of the entry at the applied index recorded in
 * a store: -1 when it changed none, undefined when not recorded (see the key layout). */
export async function readAppliedLastChange(r: StoreReader): Promise<number | undefined> {
  const v = await r.get(APPLIED_KEY);
  return v ? decodeAppliedLastChange(v) : undefined;
}

/** The largest position of a command in an entry. */
const MAX_POSITION = 0xfffe;

/** The last-change position of an applied-index record (see {@link readAppliedLastChange}). */
export function decodeAppliedLastChange(v: Uint8Array): number | undefined {
  const rd = new ByteReader(v, "applied index");
  rd.u64();
  if (rd.remaining === 0) return undefined;
  const n = rd.uvarint();
  if (rd.remaining !== 0 || n > MAX_POSITION + 1) {
    throw new DecodeError("applied index", "bad last-change position");
  }
  return n - 1;
}

/** The applied-index record: `index`, and the position of the last user-key change of that
 * entry (-1: none; undefined: not known, the format of an earlier version). */
function appliedValue(index: number, lastChange: number | undefined, a: Alloc = HEAP): Uint8Array {
  if (lastChange === undefined) return u64Value(index, a);
  const out = a(8 + varintLength(lastChange + 1));
  putU64le(out, index);
  putVarint(out, 8, lastChange + 1);
  return out;
}

/**
 * The batch's writes on top of the store: reads see them, scans merge them. The writes are kept
 * in order as the batch's store ops; the index by key (latin1 strings of the keys) that reads
 * need is built at the first read and kept up to date from then on, so a batch that reads
 * nothing it wrote (plain puts under cached sessions) converts no key. A key written twice stays
 * twice in {@link Pending.ops}, in order: the store applies a batch in order (the LSM gives later
 * ops higher sequence numbers), so the later write wins, as it would across two batches.
 */
class Pending implements StoreReader {
  readonly #ops: StoreOp[] = [];
  #m: Map<string, StoreOp> | undefined;
  constructor(private readonly base: StoreReader) {}

  #index(): Map<string, StoreOp> {
    if (this.#m) return this.#m;
    const m = new Map<string, StoreOp>();
    for (const op of this.#ops) m.set(bytesToLatin1(op.key), op);
    return this.#m = m;
  }

  get(k: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.#ops.length === 0) return this.base.get(k);
    const w = this.#index().get(bytesToLatin1(k));
    if (w) return Promise.resolve(w.type === "put" ? w.value : undefined);
    return this.base.get(k);
  }

  put(key: Uint8Array, value: Uint8Array): void {
    const op: StoreOp = { type: "put", key, value };
    this.#ops.push(op);
    this.#m?.set(bytesToLatin1(key), op);
  }

  delete(key: Uint8Array): void {
    const op: StoreOp = { type: "delete", key };
    this.#ops.push(op);
    this.#m?.set(bytesToLatin1(key), op);
  }

  async *scan(range: StoreRange): AsyncGenerator<[Uint8Array, Uint8Array]> {
    const lo = bytesToLatin1(range.gte);
    const hi = bytesToLatin1(range.lt);
    const rev = range.reverse ?? false;
    const ov = [...this.#index()].filter(([k]) => k >= lo && k < hi).sort((a, b) =>
      a[0] < b[0] ? -1 : 1
    );
    if (rev) ov.reverse();
    const before = (a: string, b: string) => (rev ? a > b : a < b);
    let i = 0;
    for await (const [k, v] of this.base.scan(range)) {
      const ks = bytesToLatin1(k);
      while (i < ov.length && before(ov[i][0], ks)) {
        const w = ov[i++][1];
        if (w.type === "put") yield [w.key, w.value];
      }
      if (i < ov.length && ov[i][0] === ks) {
        const w = ov[i++][1];
        if (w.type === "put") yield [k, w.value];
        continue;
      }
      yield [k, v];
    }
    for (; i < ov.length; i++) {
      const w = ov[i][1];
      if (w.type === "put") yield [w.key, w.value];
    }
  }

  /** The writes, in order. */
  ops(): StoreOp[] {
    return this.#ops;
  }
}

const VALUE_TYPE_MESSAGES = [
  nonU64ValueMessage("sum"),
  nonU64ValueMessage("min"),
  nonU64ValueMessage("max"),
  SUM_RANGE_MESSAGE,
  // Appended: the indexes above are stored in session records.
  ...V8_SUM_ALL_MESSAGES,
];

function decodeCached(r: ByteReader, lastIndex: number): CachedResult {
  const kind = r.u8();
  if (kind === 1) {
    const back = r.uvarint();
    return { kind: "ok", versionstamp: makeVersionstamp(lastIndex - back, r.uvarint()) };
  }
  if (kind === 2) {
    const mask = r.uvarint();
    const failedChecks: number[] = [];
    for (let i = 0; i < 32; i++) if (mask & (1 << i)) failedChecks.push(i);
    return { kind: "check_failed", failedChecks };
  }
  if (kind === 3) {
    const i = r.u8();
    return { kind: "value_type", message: VALUE_TYPE_MESSAGES[i] ?? "value_type" };
  }
  if (kind === 0) return { kind: "plain" };
  throw new DecodeError("session", `unknown cached result ${kind}`);
}

/** What a session keeps of a result. */
function toCached(r: ApplyResult): CachedResult {
  if (r && r.ok && "versionstamp" in r && r.versionstamp) {
    return { kind: "ok", versionstamp: r.versionstamp };
  }
  if (r && !r.ok && r.error === "check_failed") {
    return { kind: "check_failed", failedChecks: r.failedChecks ?? [] };
  }
  if (r && !r.ok && r.error === "value_type") return { kind: "value_type", message: r.message };
  return { kind: "plain" };
}

/** The result a cached result answers again. */
function fromCached(c: CachedResult | undefined): ApplyResult {
  if (!c || c.kind === "plain") return OK;
  if (c.kind === "ok") return { ok: true, versionstamp: c.versionstamp };
  if (c.kind === "check_failed") return checkFailed(c.failedChecks);
  return { ok: false, error: "value_type", message: c.message };
}

function checkFailed(failedChecks: number[]): ErrorResult {
  return {
    ok: false,
    error: "check_failed",
    message: `check${failedChecks.length > 1 ? "s" : ""} ${failedChecks.join(", ")} failed`,
    failedChecks,
  };
}

/** The first byte of a session record (its format). */
const SESSION_FORMAT = 3;

/**
 * A session record: u8 format 3, u8 hasResult, u32 hash (little-endian), uvarints lastSeq,
 * lastActive, lastIndex, lastPos (the position of that use in its entry), idleTimeoutMs, then the
 * cached result (about 20 bytes); format 2 (no lastPos: 0) is still read. Written once
 * per use of a session, so in one allocation of the exact size (the format of
 * ByteWriter's u8/u32/uvarint, which {@link decodeSession} reads).
 */
export function encodeSession(s: SessionInfo, alloc: Alloc = HEAP): Uint8Array {
  const c = s.result;
  // The cached result of the last command (absent in records written before it was kept).
  let kind = -1, a = 0, b = 0;
  if (c) {
    if (c.kind === "ok") {
      // The versionstamp as its distance back from the last use (0 for the first attempt) and
      // its position: two bytes, not ten, on every write under a session.
      const vs = c.versionstamp;
      kind = 1;
      a = s.lastIndex - versionstampIndex(vs);
      b = (vs[8] << 8) | vs[9];
    } else if (c.kind === "check_failed") {
      kind = 2;
      let mask = 0;
      for (const i of c.failedChecks) mask |= 1 << i;
      a = mask;
    } else if (c.kind === "value_type") {
      kind = 3;
      const i = VALUE_TYPE_MESSAGES.indexOf(c.message);
      a = i < 0 ? 255 : i;
    } else {
      kind = 0;
    }
  }
  let size = 6 + varintLength(s.lastSeq) + varintLength(s.lastActive) +
    varintLength(s.lastIndex) + varintLength(s.lastPos ?? 0) + varintLength(s.idleTimeoutMs);
  if (kind === 1) size += 1 + varintLength(a) + varintLength(b);
  else if (kind === 2) size += 1 + varintLength(a);
  else if (kind === 3) size += 2;
  else if (kind === 0) size += 1;
  const out = alloc(size);
  out[0] = SESSION_FORMAT;
  out[1] = s.hasResult ? 1 : 0;
  const h = s.hash >>> 0;
  out[2] = h & 0xff;
  out[3] = (h >>> 8) & 0xff;
  out[4] = (h >>> 16) & 0xff;
  out[5] = h >>> 24;
  let at = putVarint(out, 6, s.lastSeq);
  at = putVarint(out, at, s.lastActive);
  at = putVarint(out, at, s.lastIndex);
  at = putVarint(out, at, s.lastPos ?? 0);
  at = putVarint(out, at, s.idleTimeoutMs);
  if (kind >= 0) out[at++] = kind;
  if (kind === 1) {
    at = putVarint(out, at, a);
    putVarint(out, at, b);
  } else if (kind === 2) putVarint(out, at, a);
  else if (kind === 3) out[at] = a;
  return out;
}

/** Decodes a session record (see {@link encodeSession}). */
export function decodeSession(id: bigint, v: Uint8Array): SessionInfo {
  const r = new ByteReader(v, "session");
  const format = r.u8();
  if (format !== SESSION_FORMAT && format !== 2) {
    throw new DecodeError("session", `record format ${format} (expected ${SESSION_FORMAT})`);
  }
  const hasResult = r.u8() === 1;
  const hash = r.u32();
  const s: SessionInfo = {
    id,
    lastSeq: r.uvarint(),
    lastActive: r.uvarint(),
    lastIndex: r.uvarint(),
    lastPos: format === 2 ? 0 : r.uvarint(),
    idleTimeoutMs: r.uvarint(),
    hash,
    hasResult,
  };
  if (r.remaining > 0) s.result = decodeCached(r, s.lastIndex);
  if (r.remaining !== 0) throw new DecodeError("session", `${r.remaining} trailing bytes`);
  return s;
}

/** A batch computed by {@link KvCore.apply}: write `ops` atomically, then call `commit()`. */
export interface PreparedBatch {
  /** The store writes (the applied index included). */
  ops: StoreOp[];
  /** One result per entry (an array of one per command for a batch entry). */
  results: EntryResult[];
  /** The user-key changes, in commit order. */
  changes: KvChange[];
  /** The position of the last user-key change of the batch's last entry (-1: it changed none),
   * recorded with the applied index. */
  lastChange: number;
  /** Installs the batch's cached state; call after the ops are written. */
  commit(): void;
}

const OK: OkResult = { ok: true };

/** The KV semantics over one store (one instance per open state machine). */
export class KvCore {
  #clock = 0;
  #formatWritten = false;
  #clusterId: string | undefined;
  /** Every session id with the log index of its last use, least recently used first. */
  readonly #lru = new Map<bigint, number>();
  /** Records of recently used sessions (at most {@link SESSION_CACHE}). */
  readonly #cache = new Map<bigint, SessionInfo>();

  private constructor() {}

  /** The core of an empty store. */
  static empty(): KvCore {
    return new KvCore();
  }

  /** The write that records `index` as applied (for a restore: the position of that entry's
   * last change is not known, unless given as `lastChange`, -1: none). */
  static appliedOp(index: number, lastChange?: number): StoreOp {
    return { type: "put", key: APPLIED_KEY, value: appliedValue(index, lastChange) };
  }

  /** Loads the clock and the order of last use of the sessions (from their records). */
  static async load(r: StoreReader): Promise<KvCore> {
    const c = new KvCore();
    const format = await r.get(FORMAT_KEY);
    if (format) {
      if (format.length !== 1 || format[0] !== RECORD_FORMAT) {
        throw new DecodeError("state machine", `unknown record format ${format[0]}`);
      }
      c.#formatWritten = true;
    } else {
      for await (const _ of r.scan({ gte: USER_LO, lt: USER_HI })) {
        throw new DecodeError(
          "state machine",
          "user keys without versionstamps (the format of an older gokv): export them with " +
            "that version (gokv snapshot save) and restore the backup with this one",
        );
      }
    }
    c.#clock = await readU64(r, CLOCK_KEY, "clock");
    c.#clusterId = await readClusterId(r);
    const all: SessionInfo[] = [];
    for await (const [k, v] of r.scan({ gte: SESSION_PREFIX, lt: SESSION_END })) {
      if (isSessionRecord(k)) all.push(decodeSession(readBe64(k, SESSION_PREFIX.length), v));
    }
    // In order of last use: sessions used by one batch entry by their position in it.
    all.sort((x, y) => x.lastIndex - y.lastIndex || (x.lastPos ?? 0) - (y.lastPos ?? 0));
    for (const s of all) c.#lru.set(s.id, s.lastIndex);
    for (const s of all.slice(-SESSION_CACHE)) c.#cache.set(s.id, s);
    return c;
  }

  /** The state machine's clock (ms): the largest command timestamp applied. */
  get clock(): number {
    return this.#clock;
  }

  /** The cluster id (undefined until a SetClusterId command has applied). */
  get clusterId(): string | undefined {
    return this.#clusterId;
  }

  /** Sessions in the table. */
  get sessionCount(): number {
    return this.#lru.size;
  }

  /** Whether a session is in the table (as of the last committed batch). */
  has(id: bigint): boolean {
    return this.#lru.has(id);
  }

  /** The session ids, least recently used first (as of the last committed batch). */
  lruIds(): IterableIterator<bigint> {
    return this.#lru.keys();
  }

  /** One session's record, or undefined. */
  async session(r: StoreReader, id: bigint): Promise<SessionInfo | undefined> {
    const v = await r.get(sessionKey(id));
    return v ? decodeSession(id, v) : undefined;
  }

  /** Every session, least recently used first (inspection and tests). */
  async sessions(r: StoreReader): Promise<SessionInfo[]> {
    const out: SessionInfo[] = [];
    for (const id of [...this.#lru.keys()]) {
      const s = await this.session(r, id);
      if (s) out.push(s);
    }
    return out;
  }

  /**
   * Computes what `cmds` do to the store `r` (which must not change until commit). The store
   * keys and values of the plain writes (puts, deletes, session records, the applied index) are
   * taken from `scratch`: a {@link Slab} reset per batch suits only a store that copies what it
   * is given (the LSM's memtable does; the memory backend keeps the arrays).
   */
  async apply(r: StoreReader, cmds: ApplyCommand[], scratch: Alloc = HEAP): Promise<PreparedBatch> {
    const p = new Pending(r);
    const count = this.#lru.size;
    const b = new BatchState(this, p, this.#clock, count, this.#clusterId, scratch);
    const results: EntryResult[] = [];
    for (const c of cmds) {
      const r = b.applyOne(c);
      results.push(r instanceof Promise ? await r : r);
    }
    // The changes are in commit order: the last one is of the last entry if it changed any.
    const lastIndex = cmds.length > 0 ? cmds[cmds.length - 1].index : 0;
    const lastVs = b.changes.length > 0 ? b.changes[b.changes.length - 1].versionstamp : undefined;
    const lastChange = lastVs && versionstampIndex(lastVs) === lastIndex
      ? versionstampPosition(lastVs)
      : -1;
    if (cmds.length > 0) p.put(APPLIED_KEY, appliedValue(lastIndex, lastChange, scratch));
    if (!this.#formatWritten) p.put(FORMAT_KEY, new Uint8Array([RECORD_FORMAT]));
    if (b.clock !== this.#clock) p.put(CLOCK_KEY, u64Value(b.clock, scratch));
    if (b.count !== count) p.put(SESSION_COUNT_KEY, u64Value(b.count, scratch));
    return {
      ops: p.ops(),
      results,
      changes: b.changes,
      lastChange,
      commit: () => {
        this.#formatWritten = true;
        this.#clock = b.clock;
        this.#clusterId = b.clusterId;
        // In order of last use within the batch, all after every session used before it.
        const lru = this.#lru, cache = this.#cache;
        b.touched.forEach((s, id) => {
          lru.delete(id);
          cache.delete(id);
          if (!s) return;
          lru.set(id, s.lastIndex);
          cache.set(id, s);
          if (cache.size > SESSION_CACHE) cache.delete(cache.keys().next().value!);
        });
      },
    };
  }

  /** A cached session record (undefined: not cached). */
  cached(id: bigint): SessionInfo | undefined {
    return this.#cache.get(id);
  }

  /** The value of a user key (undefined: absent or expired). */
  static async get(r: StoreReader, key: Uint8Array): Promise<Uint8Array | undefined> {
    const v = await r.get(userKey(key, LOOKUP.alloc));
    if (!v) return undefined;
    // A record without an expiry (nearly every one) needs no clock and no decoded header.
    return plainRecordValue(v) ?? (await new LiveReader(r).live(v))?.value;
  }

  /** The entries of `keys` (null: absent or expired), read from `r` (give it one view). */
  static async getEntries(r: StoreReader, keys: Uint8Array[]): Promise<(KvEntry | null)[]> {
    const lr = new LiveReader(r);
    const out: (KvEntry | null)[] = [];
    for (const k of keys) {
      const rec = await lr.live(await r.get(userKey(k, LOOKUP.alloc)));
      out.push(rec ? toEntry(k, rec) : null);
    }
    return out;
  }

  /**
   * The entries of `keys` (null: absent) and every entry under each of `prefixes`, with the
   * applied index they reflect, all read from `r` (give it one view): a watch's initial state.
   * Throws RangeError when the prefixes hold more than `maxEntries` entries.
   */
  static async watchState(
    r: StoreReader,
    keys: Uint8Array[],
    prefixes: Uint8Array[],
    maxEntries: number,
  ): Promise<{ appliedIndex: number; keys: (KvEntry | null)[]; prefixes: KvEntry[][] }> {
    const appliedIndex = await readAppliedIndex(r);
    const byKey = await KvCore.getEntries(r, keys);
    const byPrefix: KvEntry[][] = [];
    let n = 0;
    for (const p of prefixes) {
      const got = await KvCore.scanEntries(r, { prefix: p, limit: maxEntries - n + 1 });
      n += got.length;
      if (n > maxEntries) {
        throw new RangeError(`more than ${maxEntries} entries under the watched prefixes`);
      }
      byPrefix.push(got);
    }
    return { appliedIndex, keys: byKey, prefixes: byPrefix };
  }

  /** The earliest time in the expiry index, or undefined. */
  static async nextExpiry(r: StoreReader): Promise<number | undefined> {
    for await (const [k] of r.scan({ gte: EXPIRY_PREFIX, lt: EXPIRY_END })) {
      return Number(readBe64(k, EXPIRY_PREFIX.length));
    }
    return undefined;
  }

  /** User pairs matching `opts`, in key order (descending with `reverse`). */
  static async scan(
    r: StoreReader,
    opts: ScanOptions = {},
  ): Promise<Array<[Uint8Array, Uint8Array]>> {
    return (await KvCore.scanEntries(r, opts)).map((e) => [e.key, e.value]);
  }

  /** User entries matching `opts`, in key order (descending with `reverse`); expired ones are
   * skipped (they count toward no limit). */
  static async scanEntries(r: StoreReader, opts: ScanOptions = {}): Promise<KvEntry[]> {
    let lo = opts.start ? userKey(opts.start) : USER_LO;
    let hi = opts.end ? userKey(opts.end) : USER_HI;
    if (opts.prefix) {
      const p = userKey(opts.prefix);
      if (compareBytes(p, lo) > 0) lo = p;
      const pe = prefixEnd(p) ?? USER_HI;
      if (compareBytes(pe, hi) < 0) hi = pe;
    }
    const out: KvEntry[] = [];
    const limit = opts.limit ?? Infinity;
    const maxBytes = opts.maxBytes ?? Infinity;
    let bytes = 0;
    if (limit <= 0 || compareBytes(lo, hi) >= 0) return out;
    const lr = new LiveReader(r);
    for await (const [k, v] of r.scan({ gte: lo, lt: hi, reverse: opts.reverse ?? false })) {
      const rec = await lr.live(v);
      if (!rec) continue;
      out.push(toEntry(k.subarray(1), rec));
      bytes += k.length - 1 + rec.value.length;
      if (out.length >= limit || bytes > maxBytes) break;
    }
    return out;
  }
}

/**
 * The least recently used session at a point of a batch: the committed order without the sessions
 * the batch used or removed, then those the batch used, in order (all newer than the committed
 * ones: their log indexes are higher).
 */
class LruCursor {
  readonly #committed: Iterator<bigint>;
  #head: bigint | undefined;
  #committedDone = false;

  constructor(core: KvCore, private readonly touched: Map<bigint, SessionInfo | null>) {
    this.#committed = core.lruIds();
  }

  /** The least recently used session's id, or undefined when the table is empty. */
  peek(): bigint | undefined {
    // A session the batch touched never becomes untouched: skipped ones stay skipped.
    while (!this.#committedDone) {
      if (this.#head !== undefined && !this.touched.has(this.#head)) return this.#head;
      const n = this.#committed.next();
      if (n.done) this.#committedDone = true;
      else this.#head = n.value;
    }
    for (const [id, s] of this.touched) if (s) return id;
    return undefined;
  }
}

/** A mutation of an atomic command staged until every one of them has succeeded. */
interface Staged {
  /** The user key. */
  key: Uint8Array;
  /** Its store key. */
  sk: Uint8Array;
  /** The new record (null: deleted). */
  rec: StoredRecord | null;
}

/** A copy of a session record a batch may change (one object of a fixed shape: cheaper than a
 * spread). */
function copySession(s: SessionInfo): SessionInfo {
  const c: SessionInfo = {
    id: s.id,
    lastSeq: s.lastSeq,
    lastActive: s.lastActive,
    lastIndex: s.lastIndex,
    lastPos: s.lastPos,
    idleTimeoutMs: s.idleTimeoutMs,
    hash: s.hash,
    hasResult: s.hasResult,
  };
  if (s.result !== undefined) c.result = s.result;
  return c;
}

/** The state of one batch being computed. */
class BatchState {
  readonly #lru: LruCursor;
  /** Sessions written (or removed: null) by this batch, in order of their last change. */
  readonly touched = new Map<bigint, SessionInfo | null>();
  /** User-key changes, in order. */
  readonly changes: KvChange[] = [];

  constructor(
    private readonly core: KvCore,
    private readonly p: Pending,
    public clock: number,
    public count: number,
    public clusterId: string | undefined,
    private readonly a: Alloc,
  ) {
    this.#lru = new LruCursor(core, this.touched);
  }

  /**
   * Applies one command. Synchronous where nothing is read from the store (a put or delete
   * under a cached session: nearly every command), a promise otherwise: no microtask turns and
   * promises per command on the common path.
   */
  applyOne(c: ApplyCommand): EntryResult | Promise<EntryResult> {
    if (c.data.length === 0) return null;
    if (c.data[0] === CommandOp.Batch) return this.applyBatch(c.index, c.data);
    return this.applyPart(c.index, 0, c.data, false);
  }

  /** A batch entry: its commands in order, command j at versionstamp (index, j), one result each
   * (the whole entry is refused only when its framing is malformed). */
  private applyBatch(index: number, data: Uint8Array): EntryResult | Promise<EntryResult> {
    let parts: Uint8Array[];
    try {
      parts = decodeBatch(data);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      return { ok: false, error: "bad_command", message: e.message };
    }
    const out: ApplyResult[] = new Array(parts.length);
    for (let j = 0; j < parts.length; j++) {
      const r = this.applyPart(index, j, parts[j], true);
      if (r instanceof Promise) return this.finishBatch(index, parts, j, r, out);
      out[j] = r;
    }
    return out;
  }

  /** The rest of {@link applyBatch} from the first command that had to read the store. */
  private async finishBatch(
    index: number,
    parts: Uint8Array[],
    j: number,
    pending: Promise<ApplyResult>,
    out: ApplyResult[],
  ): Promise<ApplyResult[]> {
    out[j] = await pending;
    for (let k = j + 1; k < parts.length; k++) {
      const r = this.applyPart(index, k, parts[k], true);
      out[k] = r instanceof Promise ? await r : r;
    }
    return out;
  }

  /** One command at versionstamp (index, pos); `inBatch`: only client writes are allowed. */
  private applyPart(
    index: number,
    pos: number,
    data: Uint8Array,
    inBatch: boolean,
  ): ApplyResult | Promise<ApplyResult> {
    let cmd: Command;
    let hash: number;
    try {
      ({ cmd, hash } = decodeCommandWithHash(data));
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      return { ok: false, error: "bad_command", message: e.message };
    }
    if (inBatch && !batchable(cmd.op)) {
      return { ok: false, error: "bad_command", message: `op ${cmd.op} cannot share an entry` };
    }
    const tooBig = commandSizeError(cmd);
    if (tooBig) return { ok: false, error: "bad_command", message: tooBig };
    if (cmd.time !== undefined && cmd.time > this.clock) this.clock = cmd.time;
    if (cmd.op === CommandOp.RegisterSession) return this.register(index, cmd);
    if (!cmd.session) return this.execute(index, pos, cmd);
    const id = cmd.session.clientId;
    if (id === 0n) return { ok: false, error: "bad_session", message: "session id 0 is invalid" };
    // Narrowed (not a registration) for the closure below.
    const write = cmd;
    const s = this.lookupNow(id);
    if (s === undefined) {
      return this.lookup(id).then((s) => this.underSession(index, pos, write, hash, s));
    }
    return this.underSession(index, pos, write, hash, s ?? undefined);
  }

  /** The rest of {@link applyOne} for a command under session `s` (undefined: unknown). */
  private underSession(
    index: number,
    pos: number,
    cmd: Exclude<Command, { op: CommandOp.RegisterSession }>,
    hash: number,
    s: SessionInfo | undefined,
  ): ApplyResult | Promise<ApplyResult> {
    const { clientId: id, seq } = cmd.session!;
    if (!s) {
      return { ok: false, error: "session_expired", message: `session ${id} is unknown` };
    }
    if (this.expired(s)) {
      this.remove(s);
      return { ok: false, error: "session_expired", message: `session ${id} expired` };
    }
    if (seq <= s.lastSeq) {
      if (seq === s.lastSeq && s.hasResult && hash === s.hash) {
        this.touch(s, index, pos);
        return fromCached(s.result);
      }
      return {
        ok: false,
        error: "session_seq",
        message: seq === s.lastSeq
          ? `seq ${seq} of session ${id} was already used by a different command`
          : `seq ${seq} of session ${id} is below its last acknowledged seq ${s.lastSeq}`,
      };
    }
    const done = (result: ApplyResult): ApplyResult => {
      s.lastSeq = seq;
      s.hash = hash;
      s.hasResult = true;
      s.result = toCached(result);
      this.touch(s, index, pos);
      return result;
    };
    const r = this.execute(index, pos, cmd);
    return r instanceof Promise ? r.then(done) : done(r);
  }

  /** Applies a data command at versionstamp (index, pos); a put or delete at once. */
  private execute(
    index: number,
    pos: number,
    cmd: Exclude<Command, { op: CommandOp.RegisterSession }>,
  ): ApplyResult | Promise<ApplyResult> {
    const versionstamp = makeVersionstamp(index, pos, VERSIONSTAMPS.alloc);
    switch (cmd.op) {
      case CommandOp.Put: {
        const entry: KvEntry = {
          key: cmd.key,
          value: cmd.value,
          encoding: ValueEncoding.BYTES,
          versionstamp,
        };
        this.p.put(userKey(cmd.key, this.a), encodeRecord(entry, this.a));
        this.changes.push({ key: cmd.key, entry, versionstamp });
        return { ok: true, versionstamp };
      }
      case CommandOp.Delete:
        this.p.delete(userKey(cmd.key, this.a));
        this.changes.push({ key: cmd.key, entry: null, versionstamp });
        return { ok: true, versionstamp };
      case CommandOp.Atomic:
        return this.atomic(versionstamp, cmd);
      case CommandOp.ExpirySweep:
        return this.sweep(versionstamp, cmd);
      case CommandOp.SetClusterId:
        return this.setClusterId(versionstamp, cmd);
    }
  }

  /** Sets the cluster id unless there is one: adopts an earlier version's user key first. */
  private async setClusterId(
    versionstamp: Uint8Array,
    cmd: SetClusterIdCommand,
  ): Promise<ClusterIdResult> {
    if (this.clusterId !== undefined) return { ok: true, clusterId: this.clusterId };
    let id = cmd.id;
    const legacy = userKey(LEGACY_CLUSTER_ID_KEY);
    const rec = await this.live(legacy);
    const old = rec ? new TextDecoder().decode(rec.value) : undefined;
    if (old !== undefined && CLUSTER_ID_PATTERN.test(old)) {
      id = old;
      this.p.delete(legacy);
      this.changes.push({ key: LEGACY_CLUSTER_ID_KEY, entry: null, versionstamp });
    }
    this.p.put(CLUSTER_ID_KEY, new TextEncoder().encode(id));
    this.clusterId = id;
    return { ok: true, clusterId: id };
  }

  /** The live record of a store key as this batch sees it (expired: undefined). */
  private async live(storeKey: Uint8Array): Promise<StoredRecord | undefined> {
    const v = await this.p.get(storeKey);
    if (!v) return undefined;
    const rec = decodeRecord(v);
    return isExpired(rec, this.clock) ? undefined : rec;
  }

  /** Checks, then mutations staged apart, written only when every one succeeded. */
  private async atomic(versionstamp: Uint8Array, cmd: AtomicCommand): Promise<ApplyResult> {
    const failed: number[] = [];
    for (let i = 0; i < cmd.checks.length; i++) {
      const c = cmd.checks[i];
      const cur = (await this.live(userKey(c.key, LOOKUP.alloc)))?.versionstamp ?? null;
      const same = cur === null || c.versionstamp === null
        ? cur === c.versionstamp
        : compareVersionstamps(cur, c.versionstamp) === 0;
      if (!same) failed.push(i);
    }
    if (failed.length > 0) return checkFailed(failed);
    // Staged by store key (its latin1 string: later mutations of a key replace earlier ones);
    // the store keys and records come from the batch's allocator, as the put path's.
    const staged = new Map<string, Staged>();
    for (const m of cmd.mutations) {
      const key = m.type === "setSuffixVersionstampedKey"
        ? suffixVersionstampedKey(m.key, versionstamp)
        : m.key;
      const sk = userKey(key, this.a);
      const id = bytesToLatin1(sk);
      if (m.type === "delete") {
        staged.set(id, { key, sk, rec: null });
        continue;
      }
      if (m.type === "set" || m.type === "setSuffixVersionstampedKey") {
        const rec: StoredRecord = { encoding: m.encoding, versionstamp, value: m.value };
        if (m.expireAt !== undefined && m.expireAt > 0) rec.expireAt = m.expireAt;
        staged.set(id, { key, sk, rec });
        continue;
      }
      const cur = staged.has(id) ? staged.get(id)!.rec ?? undefined : await this.live(sk);
      if (m.type === "sum" && m.encoding === ValueEncoding.V8) {
        const out = applyV8Sum(m, cur);
        if (typeof out === "string") return { ok: false, error: "value_type", message: out };
        staged.set(id, {
          key,
          sk,
          rec: { encoding: out.encoding, versionstamp, value: out.value },
        });
        continue;
      }
      if (cur && (cur.encoding !== ValueEncoding.LE64 || cur.value.length !== 8)) {
        return { ok: false, error: "value_type", message: nonU64ValueMessage(m.type) };
      }
      const next = applyU64(m, cur ? readU64le(cur.value) : undefined);
      if (typeof next === "string") return { ok: false, error: "value_type", message: next };
      staged.set(id, {
        key,
        sk,
        rec: { encoding: ValueEncoding.LE64, versionstamp, value: u64le(next) },
      });
    }
    for (const { key, sk, rec } of staged.values()) {
      if (rec) {
        this.p.put(sk, encodeRecord(rec, this.a));
        if (rec.expireAt !== undefined) {
          this.p.put(expiryKey(rec.expireAt, key), new Uint8Array(0));
        }
        this.changes.push({ key, entry: toEntry(key, rec), versionstamp });
      } else {
        this.p.delete(sk);
        this.changes.push({ key, entry: null, versionstamp });
      }
    }
    return { ok: true, versionstamp };
  }

  /** Deletes up to `maxKeys` keys whose expiry time is at or before the clock. */
  private async sweep(versionstamp: Uint8Array, cmd: ExpirySweepCommand): Promise<OkResult> {
    const due = new Uint8Array(EXPIRY_PREFIX.length + 8);
    due.set(EXPIRY_PREFIX);
    new DataView(due.buffer).setBigUint64(EXPIRY_PREFIX.length, BigInt(this.clock) + 1n, false);
    const entries: Uint8Array[] = [];
    let more = false;
    for await (const [k] of this.p.scan({ gte: EXPIRY_PREFIX, lt: due })) {
      if (entries.length >= cmd.maxKeys) {
        more = true;
        break;
      }
      entries.push(k);
    }
    let expired = 0;
    for (const k of entries) {
      this.p.delete(k);
      const at = Number(readBe64(k, EXPIRY_PREFIX.length));
      const key = k.slice(EXPIRY_PREFIX.length + 8);
      const sk = userKey(key);
      const v = await this.p.get(sk);
      if (!v || decodeRecord(v).expireAt !== at) continue; // overwritten since: a stale entry
      this.p.delete(sk);
      this.changes.push({ key, entry: null, versionstamp });
      expired++;
    }
    return { ok: true, versionstamp, expired, more };
  }

  private expired(s: SessionInfo): boolean {
    return this.clock - s.lastActive > s.idleTimeoutMs;
  }

  /** A copy of session `id`'s record as this batch sees it when that needs no store read
   * (null: not in the table), else undefined: ask {@link lookup}. */
  private lookupNow(id: bigint): SessionInfo | null | undefined {
    // Touched by this batch: its state (null: removed).
    const t = this.touched.get(id);
    if (t !== undefined) return t ? copySession(t) : null;
    // Cached sessions are in the table (the cache holds the most recently used of it).
    const cached = this.core.cached(id);
    if (cached) return copySession(cached);
    if (!this.core.has(id)) return null;
    return undefined;
  }

  /** A copy of session `id`'s record as this batch sees it (undefined: not in the table). */
  private async lookup(id: bigint): Promise<SessionInfo | undefined> {
    const now = this.lookupNow(id);
    if (now !== undefined) return now ?? undefined;
    const v = await this.p.get(sessionKey(id, this.a));
    if (!v) throw new DecodeError("session table", `session ${id} has no record`);
    return decodeSession(id, v);
  }

  /** Records a use of `s` at log index `index` (one store write). */
  private touch(s: SessionInfo, index: number, pos = 0): void {
    s.lastActive = this.clock;
    s.lastIndex = index;
    s.lastPos = pos;
    this.p.put(sessionKey(s.id, this.a), encodeSession(s, this.a));
    this.touched.delete(s.id);
    this.touched.set(s.id, s);
  }

  private remove(s: SessionInfo): void {
    this.p.delete(sessionKey(s.id, this.a));
    this.touched.delete(s.id);
    this.touched.set(s.id, null);
    this.count--;
  }

  private async register(
    index: number,
    cmd: { idleTimeoutMs: number; maxSessions: number },
  ): Promise<RegisterResult> {
    const max = Math.max(1, cmd.maxSessions);
    let expiredBudget = EXPIRED_PER_REGISTER;
    for (;;) {
      if (this.count < max && expiredBudget === 0) break;
      const head = this.#lru.peek();
      if (head === undefined) break;
      const s = await this.lookup(head);
      if (!s) throw new DecodeError("session table", `session ${head} has no record`);
      if (this.count >= max) {
        this.remove(s);
      } else if (this.expired(s)) {
        this.remove(s);
        expiredBudget--;
      } else {
        break;
      }
    }
    const s: SessionInfo = {
      id: BigInt(index),
      lastSeq: 0,
      lastActive: this.clock,
      lastIndex: 0,
      idleTimeoutMs: cmd.idleTimeoutMs,
      hash: 0,
      hasResult: false,
    };
    this.count++;
    this.touch(s, index);
    return { ok: true, sessionId: s.id };
  }
}
