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
 * - `0x00 0x07 ++ u64be sessionId` → the session record ({@link SessionInfo})
 * - `0x00 0x08 ++ u64be lastIndex` → u64be sessionId (sessions by last use, oldest first)
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
const LRU_PREFIX = new Uint8Array([0x00, 0x08]);
const LRU_END = prefixEnd(LRU_PREFIX)!;
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
 * own key and an earlier format's sessions). */
export function isSnapshotKey(k: Uint8Array): boolean {
  if (k.length >= 2 && k[0] === 0 && (k[1] === 0x01 || k[1] === 0x02 || k[1] === 0x03)) {
    return false;
  }
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

function encodeSession(s: SessionInfo): Uint8Array {
  const w = new ByteWriter(48);
  w.u64(s.lastSeq);
  w.u64(s.lastActive);
  w.u64(s.lastIndex);
  w.u64(s.idleTimeoutMs);
  w.u32(s.hash);
  w.u8(s.hasResult ? 1 : 0);
  return w.finish();
}

function decodeSession(id: bigint, v: Uint8Array): SessionInfo {
  const r = new ByteReader(v, "session");
  const s: SessionInfo = {
    id,
    lastSeq: r.u64(),
    lastActive: r.u64(),
    lastIndex: r.u64(),
    idleTimeoutMs: r.u64(),
    hash: r.u32(),
    hasResult: r.u8() === 1,
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
  #count = 0;
  /** Session records by id (LRU); null: known absent. */
  #cache = new Map<bigint, SessionInfo | null>();

  private constructor() {}

  /** The core of an empty store. */
  static empty(): KvCore {
    return new KvCore();
  }

  /** The write that records `index` as applied (for a restore). */
  static appliedOp(index: number): StoreOp {
    return { type: "put", key: APPLIED_KEY, value: u64Value(index) };
  }

  /** Loads the small state the core caches (clock, session count) from a store. */
  static async load(r: StoreReader): Promise<KvCore> {
    const c = new KvCore();
    c.#clock = await readU64(r, CLOCK_KEY, "clock");
    c.#count = await readU64(r, SESSION_COUNT_KEY, "session count");
    return c;
  }

  /** The state machine's clock (ms): the largest command timestamp applied. */
  get clock(): number {
    return this.#clock;
  }

  /** Sessions in the table. */
  get sessionCount(): number {
    return this.#count;
  }

  /** One session's record, or undefined. */
  async session(r: StoreReader, id: bigint): Promise<SessionInfo | undefined> {
    const v = await r.get(be64Key(SESSION_PREFIX, id));
    return v ? decodeSession(id, v) : undefined;
  }

  /** Every session, least recently used first (inspection and tests). */
  async sessions(r: StoreReader): Promise<SessionInfo[]> {
    const out: SessionInfo[] = [];
    for await (const [, v] of r.scan({ gte: LRU_PREFIX, lt: LRU_END })) {
      const s = await this.session(r, readBe64(v, 0));
      if (s) out.push(s);
    }
    return out;
  }

  /** Computes what `cmds` do to the store `r` (which must not change until commit). */
  async apply(r: StoreReader, cmds: ApplyCommand[]): Promise<PreparedBatch> {
    const p = new Pending(r);
    const b = new BatchState(this, p, this.#clock, this.#count);
    const results: ApplyResult[] = [];
    try {
      for (const c of cmds) results.push(await b.applyOne(c));
    } finally {
      await b.lru.close();
    }
    if (cmds.length > 0) p.put(APPLIED_KEY, u64Value(cmds[cmds.length - 1].index));
    if (b.clock !== this.#clock) p.put(CLOCK_KEY, u64Value(b.clock));
    if (b.count !== this.#count) p.put(SESSION_COUNT_KEY, u64Value(b.count));
    return {
      ops: p.ops(),
      results,
      commit: () => {
        this.#clock = b.clock;
        this.#count = b.count;
        for (const [id, s] of b.touched) this.cachePut(id, s);
      },
    };
  }

  /** A cached session record (undefined: not cached). */
  cached(id: bigint): SessionInfo | null | undefined {
    const s = this.#cache.get(id);
    if (s !== undefined) {
      this.#cache.delete(id);
      this.#cache.set(id, s);
    }
    return s;
  }

  private cachePut(id: bigint, s: SessionInfo | null): void {
    this.#cache.delete(id);
    this.#cache.set(id, s);
    if (this.#cache.size > SESSION_CACHE) {
      this.#cache.delete(this.#cache.keys().next().value!);
    }
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
 * The sessions in least-recently-used order during one batch: the store's index (read once, from
 * the oldest end, lazily) without the entries the batch removed, then the entries the batch added
 * (all newer: their log indexes are higher than anything in the store).
 */
class LruCursor {
  #it: AsyncIterator<[Uint8Array, Uint8Array]> | undefined;
  #storeDone = false;
  #head: { index: bigint; id: bigint } | undefined;
  readonly #removed = new Set<bigint>();
  readonly #added = new Map<bigint, bigint>();

  constructor(private readonly store: StoreReader) {}

  add(index: bigint, id: bigint): void {
    this.#added.set(index, id);
  }

  remove(index: bigint): void {
    if (!this.#added.delete(index)) this.#removed.add(index);
    if (this.#head?.index === index) this.#head = undefined;
  }

  /** The least recently used session (its index entry), or undefined when none is left. */
  async peek(): Promise<{ index: bigint; id: bigint } | undefined> {
    while (!this.#head && !this.#storeDone) {
      this.#it ??= this.store.scan({ gte: LRU_PREFIX, lt: LRU_END })[Symbol.asyncIterator]();
      const n = await this.#it.next();
      if (n.done) {
        this.#storeDone = true;
        break;
      }
      const index = readBe64(n.value[0], LRU_PREFIX.length);
      if (!this.#removed.has(index)) this.#head = { index, id: readBe64(n.value[1], 0) };
    }
    if (this.#head) return this.#head;
    const first = this.#added.entries().next();
    return first.done ? undefined : { index: first.value[0], id: first.value[1] };
  }

  async close(): Promise<void> {
    await this.#it?.return?.();
  }
}

/** The state of one batch being computed. */
class BatchState {
  readonly lru: LruCursor;
  /** Sessions written (or removed: null) by this batch. */
  readonly touched = new Map<bigint, SessionInfo | null>();

  constructor(
    private readonly core: KvCore,
    private readonly p: Pending,
    public clock: number,
    public count: number,
  ) {
    this.lru = new LruCursor(p);
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
    let s: SessionInfo | null | undefined = this.touched.has(id)
      ? this.touched.get(id)
      : this.core.cached(id);
    if (s === undefined) {
      const v = await this.p.get(be64Key(SESSION_PREFIX, id));
      s = v ? decodeSession(id, v) : null;
    }
    return s ? { ...s } : undefined;
  }

  private touch(s: SessionInfo, index: number): void {
    if (s.lastIndex !== 0) {
      this.p.delete(be64Key(LRU_PREFIX, BigInt(s.lastIndex)));
      this.lru.remove(BigInt(s.lastIndex));
    }
    s.lastActive = this.clock;
    s.lastIndex = index;
    this.p.put(be64Key(LRU_PREFIX, BigInt(index)), be64Key(new Uint8Array(0), s.id));
    this.lru.add(BigInt(index), s.id);
    this.p.put(be64Key(SESSION_PREFIX, s.id), encodeSession(s));
    this.touched.set(s.id, s);
  }

  private remove(s: SessionInfo): void {
    this.p.delete(be64Key(LRU_PREFIX, BigInt(s.lastIndex)));
    this.lru.remove(BigInt(s.lastIndex));
    this.p.delete(be64Key(SESSION_PREFIX, s.id));
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
      const head = await this.lru.peek();
      if (!head) break;
      const s = await this.lookup(head.id);
      if (!s) throw new DecodeError("session index", "entry without a session");
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
