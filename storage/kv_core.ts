/**
 * The KV semantics, implemented once for every backend: the key layout inside an ordered byte
 * store, how a batch of committed commands changes it, the client session table and the reads.
 * A backend only provides an ordered store ({@link StoreReader}: point get, range scan) and applies
 * the {@link StoreOp}s that {@link KvCore.apply} returns as one atomic batch.
 *
 * ## Key layout
 *
 * - `0x01 ++ userKey` → value
 * - `0x00 0x01` → u64 applied index (written in the same batch as the commands it covers)
 * - `0x00 0x02 ++ …` → the session table of an earlier format (ignored, dropped by snapshots)
 * - `0x00 0x03` → reserved for the backend (the lsm backend's sync marker)
 * - `0x00 0x05` → u64 the state machine's clock (ms; the largest command timestamp applied)
 * - `0x00 0x06` → u64 the number of sessions
 * - `0x00 0x07 ++ u64be sessionId` → the session record ({@link SessionInfo}, varints)
 * - `0x00 0x08 ++ …` → the by-last-use index of an earlier format (ignored, dropped by snapshots)
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
import type { ApplyCommand } from "../raft/state_machine.ts";
import {
  ByteReader,
  bytesToLatin1,
  ByteWriter,
  compareBytes,
  latin1ToBytes,
  prefixEnd,
} from "./bytes.ts";
import { type Command, CommandOp, commandSizeError, decodeCommandWithHash } from "./command.ts";
import { DecodeError } from "./errors.ts";
import type {
  ApplyResult,
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
/** A store key the backend may use for itself (never in snapshots). */
export const BACKEND_KEY: Uint8Array = new Uint8Array([0x00, 0x03]);
const CLOCK_KEY = new Uint8Array([0x00, 0x05]);
const SESSION_COUNT_KEY = new Uint8Array([0x00, 0x06]);
const SESSION_PREFIX = new Uint8Array([0x00, 0x07]);
const SESSION_END = prefixEnd(SESSION_PREFIX)!;
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
      sessionCount: await readU64(view, SESSION_COUNT_KEY, "session count"),
      async *meta() {
        for await (const [k, v] of view.scan(META)) if (isSnapshotKey(k)) yield [k, v];
      },
      async *entries(): AsyncGenerator<StateEntry> {
        for await (const [k, v] of view.scan({ gte: USER_LO, lt: USER_HI })) {
          yield { key: k.subarray(1), value: v };
        }
      },
      release: once,
    };
  } catch (e) {
    once();
    throw e;
  }
}

/** The store records of an import (meta records, then user keys, then the applied index). */
export async function* importRecords(src: StateImport): AsyncGenerator<StoreOp> {
  for await (const [key, value] of src.meta) {
    if (compareBytes(key, USER_LO) >= 0 || !isSnapshotKey(key)) {
      throw new DecodeError("state import", "a meta record outside the state machine's records");
    }
    yield { type: "put", key, value };
  }
  for await (const e of src.entries) yield { type: "put", key: userKey(e.key), value: e.value };
  yield KvCore.appliedOp(src.appliedIndex);
}

/** Expired sessions a registration removes at most besides what the bound requires. */
export const EXPIRED_PER_REGISTER = 16;
/** Session records the core keeps cached in memory (the table itself stays in the store). */
export const SESSION_CACHE = 4096;

/** The store key of a user key. */
export function userKey(k: Uint8Array): Uint8Array {
  const out = new Uint8Array(k.length + 1);
  out[0] = USER;
  out.set(k, 1);
  return out;
}

/** Whether a store key belongs in a snapshot (everything but the applied index, the backend's
 * own key and an earlier format's session records). */
export function isSnapshotKey(k: Uint8Array): boolean {
  if (k.length >= 2 && k[0] === 0 && (k[1] <= 0x03 || k[1] === 0x08)) return false;
  return true;
}

function be64Key(prefix: Uint8Array, n: bigint): Uint8Array {
  const out = new Uint8Array(prefix.length + 8);
  out.set(prefix);
  new DataView(out.buffer).setBigUint64(prefix.length, n, false);
  return out;
}

function readBe64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, false);
}

function u64Value(n: number): Uint8Array {
  const w = new ByteWriter(8);
  w.u64(n);
  return w.finish();
}

async function readU64(r: StoreReader, key: Uint8Array, what: string): Promise<number> {
  const v = await r.get(key);
  return v ? new ByteReader(v, what).u64() : 0;
}

/** Reads the applied index recorded in a store. */
export function readAppliedIndex(r: StoreReader): Promise<number> {
  return readU64(r, APPLIED_KEY, "applied index");
}

/** The batch's writes on top of the store: reads see them, scans merge them. */
class Pending implements StoreReader {
  readonly #m = new Map<string, Uint8Array | null>();
  constructor(private readonly base: StoreReader) {}

  get(k: Uint8Array): Promise<Uint8Array | undefined> {
    const s = bytesToLatin1(k);
    if (this.#m.has(s)) return Promise.resolve(this.#m.get(s) ?? undefined);
    return this.base.get(k);
  }

  put(k: Uint8Array, v: Uint8Array): void {
    this.#m.set(bytesToLatin1(k), v);
  }

  delete(k: Uint8Array): void {
    this.#m.set(bytesToLatin1(k), null);
  }

  async *scan(range: StoreRange): AsyncGenerator<[Uint8Array, Uint8Array]> {
    const lo = bytesToLatin1(range.gte);
    const hi = bytesToLatin1(range.lt);
    const rev = range.reverse ?? false;
    const ov = [...this.#m].filter(([k]) => k >= lo && k < hi).sort((a, b) => a[0] < b[0] ? -1 : 1);
    if (rev) ov.reverse();
    const before = (a: string, b: string) => (rev ? a > b : a < b);
    let i = 0;
    for await (const [k, v] of this.base.scan(range)) {
      const ks = bytesToLatin1(k);
      while (i < ov.length && before(ov[i][0], ks)) {
        const [ok, ovv] = ov[i++];
        if (ovv) yield [latin1ToBytes(ok), ovv];
      }
      if (i < ov.length && ov[i][0] === ks) {
        const ovv = ov[i++][1];
        if (ovv) yield [k, ovv];
        continue;
      }
      yield [k, v];
    }
    for (; i < ov.length; i++) {
      const [ok, ovv] = ov[i];
      if (ovv) yield [latin1ToBytes(ok), ovv];
    }
  }

  ops(): StoreOp[] {
    const out: StoreOp[] = [];
    for (const [k, v] of this.#m) {
      const key = latin1ToBytes(k);
      out.push(v ? { type: "put", key, value: v } : { type: "delete", key });
    }
    return out;
  }
}

/** The first byte of a session record (its format). */
const SESSION_FORMAT = 2;

/** A session record: u8 format 2, u8 hasResult, u32 hash, uvarints lastSeq, lastActive,
 * lastIndex, idleTimeoutMs (about 20 bytes). */
function encodeSession(s: SessionInfo): Uint8Array {
  const w = new ByteWriter(40);
  w.u8(SESSION_FORMAT);
  w.u8(s.hasResult ? 1 : 0);
  w.u32(s.hash);
  w.uvarint(s.lastSeq);
  w.uvarint(s.lastActive);
  w.uvarint(s.lastIndex);
  w.uvarint(s.idleTimeoutMs);
  return w.finish();
}

function decodeSession(id: bigint, v: Uint8Array): SessionInfo {
  const r = new ByteReader(v, "session");
  const format = r.u8();
  if (format !== SESSION_FORMAT) {
    throw new DecodeError("session", `record format ${format} (expected ${SESSION_FORMAT})`);
  }
  const hasResult = r.u8() === 1;
  const hash = r.u32();
  const s: SessionInfo = {
    id,
    lastSeq: r.uvarint(),
    lastActive: r.uvarint(),
    lastIndex: r.uvarint(),
    idleTimeoutMs: r.uvarint(),
    hash,
    hasResult,
  };
  if (r.remaining !== 0) throw new DecodeError("session", `${r.remaining} trailing bytes`);
  return s;
}

/** A batch computed by {@link KvCore.apply}: write `ops` atomically, then call `commit()`. */
export interface PreparedBatch {
  /** The store writes (the applied index included). */
  ops: StoreOp[];
  /** One result per command. */
  results: ApplyResult[];
  /** Installs the batch's cached state; call after the ops are written. */
  commit(): void;
}

const OK: OkResult = { ok: true };

/** The KV semantics over one store (one instance per open state machine). */
export class KvCore {
  #clock = 0;
  /** Every session id with the log index of its last use, least recently used first. */
  readonly #lru = new Map<bigint, number>();
  /** Records of recently used sessions (at most {@link SESSION_CACHE}). */
  readonly #cache = new Map<bigint, SessionInfo>();

  private constructor() {}

  /** The core of an empty store. */
  static empty(): KvCore {
    return new KvCore();
  }

  /** The write that records `index` as applied (for a restore). */
  static appliedOp(index: number): StoreOp {
    return { type: "put", key: APPLIED_KEY, value: u64Value(index) };
  }

  /** Loads the clock and the order of last use of the sessions (from their records). */
  static async load(r: StoreReader): Promise<KvCore> {
    const c = new KvCore();
    c.#clock = await readU64(r, CLOCK_KEY, "clock");
    const all: SessionInfo[] = [];
    for await (const [k, v] of r.scan({ gte: SESSION_PREFIX, lt: SESSION_END })) {
      if (isSessionRecord(k)) all.push(decodeSession(readBe64(k, SESSION_PREFIX.length), v));
    }
    all.sort((x, y) => x.lastIndex - y.lastIndex);
    for (const s of all) c.#lru.set(s.id, s.lastIndex);
    for (const s of all.slice(-SESSION_CACHE)) c.#cache.set(s.id, s);
    return c;
  }

  /** The state machine's clock (ms): the largest command timestamp applied. */
  get clock(): number {
    return this.#clock;
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
    const v = await r.get(be64Key(SESSION_PREFIX, id));
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

  /** Computes what `cmds` do to the store `r` (which must not change until commit). */
  async apply(r: StoreReader, cmds: ApplyCommand[]): Promise<PreparedBatch> {
    const p = new Pending(r);
    const count = this.#lru.size;
    const b = new BatchState(this, p, this.#clock, count);
    const results: ApplyResult[] = [];
    for (const c of cmds) results.push(await b.applyOne(c));
    if (cmds.length > 0) p.put(APPLIED_KEY, u64Value(cmds[cmds.length - 1].index));
    if (b.clock !== this.#clock) p.put(CLOCK_KEY, u64Value(b.clock));
    if (b.count !== count) p.put(SESSION_COUNT_KEY, u64Value(b.count));
    return {
      ops: p.ops(),
      results,
      commit: () => {
        this.#clock = b.clock;
        // In order of last use within the batch, all after every session used before it.
        for (const [id, s] of b.touched) {
          this.#lru.delete(id);
          this.#cache.delete(id);
          if (!s) continue;
          this.#lru.set(id, s.lastIndex);
          this.#cache.set(id, s);
          if (this.#cache.size > SESSION_CACHE) {
            this.#cache.delete(this.#cache.keys().next().value!);
          }
        }
      },
    };
  }

  /** A cached session record (undefined: not cached). */
  cached(id: bigint): SessionInfo | undefined {
    return this.#cache.get(id);
  }

  /** The value of a user key. */
  static get(r: StoreReader, key: Uint8Array): Promise<Uint8Array | undefined> {
    return r.get(userKey(key));
  }

  /** User pairs matching `opts`, in key order (descending with `reverse`). */
  static async scan(
    r: StoreReader,
    opts: ScanOptions = {},
  ): Promise<Array<[Uint8Array, Uint8Array]>> {
    let lo = opts.start ? userKey(opts.start) : USER_LO;
    let hi = opts.end ? userKey(opts.end) : USER_HI;
    if (opts.prefix) {
      const p = userKey(opts.prefix);
      if (compareBytes(p, lo) > 0) lo = p;
      const pe = prefixEnd(p) ?? USER_HI;
      if (compareBytes(pe, hi) < 0) hi = pe;
    }
    const out: Array<[Uint8Array, Uint8Array]> = [];
    const limit = opts.limit ?? Infinity;
    const maxBytes = opts.maxBytes ?? Infinity;
    let bytes = 0;
    if (limit <= 0 || compareBytes(lo, hi) >= 0) return out;
    for await (const [k, v] of r.scan({ gte: lo, lt: hi, reverse: opts.reverse ?? false })) {
      out.push([k.subarray(1), v]);
      bytes += k.length - 1 + v.length;
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

/** The state of one batch being computed. */
class BatchState {
  readonly #lru: LruCursor;
  /** Sessions written (or removed: null) by this batch, in order of their last change. */
  readonly touched = new Map<bigint, SessionInfo | null>();

  constructor(
    private readonly core: KvCore,
    private readonly p: Pending,
    public clock: number,
    public count: number,
  ) {
    this.#lru = new LruCursor(core, this.touched);
  }

  async applyOne(c: ApplyCommand): Promise<ApplyResult> {
    if (c.data.length === 0) return null;
    let cmd: Command;
    let hash: number;
    try {
      ({ cmd, hash } = decodeCommandWithHash(c.data));
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      return { ok: false, error: "bad_command", message: e.message };
    }
    const tooBig = commandSizeError(cmd);
    if (tooBig) return { ok: false, error: "bad_command", message: tooBig };
    if (cmd.time !== undefined && cmd.time > this.clock) this.clock = cmd.time;
    if (cmd.op === CommandOp.RegisterSession) return await this.register(c.index, cmd);
    if (!cmd.session) {
      this.execute(cmd);
      return OK;
    }
    const { clientId: id, seq } = cmd.session;
    if (id === 0n) return { ok: false, error: "bad_session", message: "session id 0 is invalid" };
    const s = await this.lookup(id);
    if (!s) {
      return { ok: false, error: "session_expired", message: `session ${id} is unknown` };
    }
    if (this.expired(s)) {
      this.remove(s);
      return { ok: false, error: "session_expired", message: `session ${id} expired` };
    }
    if (seq <= s.lastSeq) {
      if (seq === s.lastSeq && s.hasResult && hash === s.hash) {
        this.touch(s, c.index);
        return OK;
      }
      return {
        ok: false,
        error: "session_seq",
        message: seq === s.lastSeq
          ? `seq ${seq} of session ${id} was already used by a different command`
          : `seq ${seq} of session ${id} is below its last acknowledged seq ${s.lastSeq}`,
      };
    }
    this.execute(cmd);
    s.lastSeq = seq;
    s.hash = hash;
    s.hasResult = true;
    this.touch(s, c.index);
    return OK;
  }

  private execute(cmd: Command): void {
    if (cmd.op === CommandOp.Put) this.p.put(userKey(cmd.key), cmd.value);
    else if (cmd.op === CommandOp.Delete) this.p.delete(userKey(cmd.key));
  }

  private expired(s: SessionInfo): boolean {
    return this.clock - s.lastActive > s.idleTimeoutMs;
  }

  private async lookup(id: bigint): Promise<SessionInfo | undefined> {
    if (this.touched.has(id)) {
      const t = this.touched.get(id);
      return t ? { ...t } : undefined;
    }
    if (!this.core.has(id)) return undefined;
    const cached = this.core.cached(id);
    if (cached) return { ...cached };
    const v = await this.p.get(be64Key(SESSION_PREFIX, id));
    if (!v) throw new DecodeError("session table", `session ${id} has no record`);
    return decodeSession(id, v);
  }

  /** Records a use of `s` at log index `index` (one store write). */
  private touch(s: SessionInfo, index: number): void {
    s.lastActive = this.clock;
    s.lastIndex = index;
    this.p.put(be64Key(SESSION_PREFIX, s.id), encodeSession(s));
    this.touched.delete(s.id);
    this.touched.set(s.id, s);
  }

  private remove(s: SessionInfo): void {
    this.p.delete(be64Key(SESSION_PREFIX, s.id));
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
