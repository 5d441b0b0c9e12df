/**
 * The binary encoding of a Raft {@link Message}: fixed-shape, big-endian, written with a
 * DataView into one Uint8Array. The layout is described in transport/FORMAT.md ("Message").
 *
 * Decoding validates every field (enum ranges, flag bits, integer ranges, lengths, counts against
 * the bytes that remain, snapshot chunk bounds, no trailing bytes) and throws
 * {@link DecodeError} on anything malformed, never another exception.
 *
 * @module
 */
import {
  type ConfState,
  type Entry,
  EntryType,
  type MemberContext,
  type Message,
  MessageType,
  type SnapshotChunk,
} from "../raft/types.ts";
import { DecodeError, EncodeError } from "./errors.ts";

/** Bytes of the fixed part: type, flags, 7 u64 fields, context length, entry count. */
export const MESSAGE_FIXED_BYTES = 2 + 7 * 8 + 4 + 4;
/** Bytes of an entry without its data. */
export const ENTRY_FIXED_BYTES = 8 + 8 + 1 + 4;
/** Bytes of a snapshot chunk without conf ids and data. */
export const SNAPSHOT_FIXED_BYTES = 8 + 8 + 4 * 4 + 8 + 8 + 1 + 4;

const FLAG_REJECT = 1;
const FLAG_SNAPSHOT = 2;
/** The snapshot chunk's meta carries member contexts (set only with {@link FLAG_SNAPSHOT}). */
const FLAG_MEMBER_CONTEXTS = 4;
const KNOWN_FLAGS = FLAG_REJECT | FLAG_SNAPSHOT | FLAG_MEMBER_CONTEXTS;
const MAX_MESSAGE_TYPE = MessageType.CheckQuorum;
const MAX_ENTRY_TYPE = EntryType.ConfChange;
const TWO_32 = 0x1_0000_0000;
/** The highest `hi` word of a u64 that still gives a safe integer (2^53 - 1). */
const MAX_HI = 0x1f_ffff;
const MAX_U32 = 0xffff_ffff;
const EMPTY = new Uint8Array(0);

function checkU64(field: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new EncodeError(field, `not a safe non-negative integer: ${v}`);
  }
}

function checkLen(field: string, n: number): void {
  if (n > MAX_U32) throw new EncodeError(field, `too long: ${n}`);
}

function confIdsLength(c: ConfState): number {
  return c.voters.length + c.votersOutgoing.length + c.learners.length + c.learnersNext.length;
}

/** The snapshot meta's member contexts when there are some (encoded only then), else null. */
function contextsOf(s: SnapshotChunk): MemberContext[] | null {
  const cs = s.meta.memberContexts;
  return cs && cs.length > 0 ? cs : null;
}

/** Bytes of the member contexts section: u32 count, count × (u64 id, bytes context). */
function contextsLength(cs: MemberContext[] | null): number {
  if (cs === null) return 0;
  let n = 4;
  for (let i = 0; i < cs.length; i++) n += 12 + cs[i].context.length;
  return n;
}

/** The number of bytes {@link encodeMessageInto} writes for `m`. */
export function encodedMessageSize(m: Message): number {
  let n = MESSAGE_FIXED_BYTES + m.context.length;
  const es = m.entries;
  for (let i = 0; i < es.length; i++) n += ENTRY_FIXED_BYTES + es[i].data.length;
  const s = m.snapshot;
  if (s !== null) {
    n += SNAPSHOT_FIXED_BYTES + 8 * confIdsLength(s.meta.conf) + contextsLength(contextsOf(s)) +
      s.data.length;
  }
  return n;
}

function putU64(dv: DataView, o: number, v: number): void {
  dv.setUint32(o, Math.floor(v / TWO_32));
  dv.setUint32(o + 4, v >>> 0);
}

function putIds(dv: DataView, o: number, field: string, ids: number[]): number {
  checkLen(field, ids.length);
  dv.setUint32(o, ids.length);
  o += 4;
  for (let i = 0; i < ids.length; i++) {
    checkU64(field, ids[i]);
    putU64(dv, o, ids[i]);
    o += 8;
  }
  return o;
}

/**
 * Writes `m` into `buf` at `offset` (which must have {@link encodedMessageSize} bytes free) and
 * returns the offset after it. Throws {@link EncodeError} for a field that cannot be encoded.
 * `dv` may be passed to reuse a DataView spanning exactly `buf`.
 */
export function encodeMessageInto(
  m: Message,
  buf: Uint8Array,
  offset: number,
  dv: DataView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength),
): number {
  if (!Number.isInteger(m.type) || m.type < 0 || m.type > MAX_MESSAGE_TYPE) {
    throw new EncodeError("type", `unknown message type ${m.type}`);
  }
  checkU64("to", m.to);
  checkU64("from", m.from);
  checkU64("term", m.term);
  checkU64("logTerm", m.logTerm);
  checkU64("index", m.index);
  checkU64("commit", m.commit);
  checkU64("rejectHint", m.rejectHint);
  checkLen("context", m.context.length);
  checkLen("entries", m.entries.length);
  let o = offset;
  dv.setUint8(o, m.type);
  const contexts = m.snapshot !== null ? contextsOf(m.snapshot) : null;
  dv.setUint8(
    o + 1,
    (m.reject ? FLAG_REJECT : 0) | (m.snapshot !== null ? FLAG_SNAPSHOT : 0) |
      (contexts !== null ? FLAG_MEMBER_CONTEXTS : 0),
  );
  putU64(dv, o + 2, m.to);
  putU64(dv, o + 10, m.from);
  putU64(dv, o + 18, m.term);
  putU64(dv, o + 26, m.logTerm);
  putU64(dv, o + 34, m.index);
  putU64(dv, o + 42, m.commit);
  putU64(dv, o + 50, m.rejectHint);
  dv.setUint32(o + 58, m.context.length);
  buf.set(m.context, o + 62);
  o += 62 + m.context.length;
  const es = m.entries;
  dv.setUint32(o, es.length);
  o += 4;
  for (let i = 0; i < es.length; i++) {
    const e = es[i];
    checkU64("entries.term", e.term);
    checkU64("entries.index", e.index);
    if (e.type !== EntryType.Normal && e.type !== EntryType.ConfChange) {
      throw new EncodeError("entries.type", `unknown entry type ${e.type}`);
    }
    checkLen("entries.data", e.data.length);
    putU64(dv, o, e.term);
    putU64(dv, o + 8, e.index);
    dv.setUint8(o + 16, e.type);
    dv.setUint32(o + 17, e.data.length);
    buf.set(e.data, o + 21);
    o += 21 + e.data.length;
  }
  const s = m.snapshot;
  if (s !== null) {
    checkU64("snapshot.meta.index", s.meta.index);
    checkU64("snapshot.meta.term", s.meta.term);
    checkU64("snapshot.offset", s.offset);
    checkU64("snapshot.total", s.total);
    checkLen("snapshot.data", s.data.length);
    if (s.offset + s.data.length > s.total) {
      throw new EncodeError("snapshot", "offset + data length exceeds total");
    }
    putU64(dv, o, s.meta.index);
    putU64(dv, o + 8, s.meta.term);
    o += 16;
    const c = s.meta.conf;
    o = putIds(dv, o, "snapshot.meta.conf.voters", c.voters);
    o = putIds(dv, o, "snapshot.meta.conf.votersOutgoing", c.votersOutgoing);
    o = putIds(dv, o, "snapshot.meta.conf.learners", c.learners);
    o = putIds(dv, o, "snapshot.meta.conf.learnersNext", c.learnersNext);
    if (contexts !== null) {
      checkLen("snapshot.meta.memberContexts", contexts.length);
      dv.setUint32(o, contexts.length);
      o += 4;
      for (let i = 0; i < contexts.length; i++) {
        const mc = contexts[i];
        checkU64("snapshot.meta.memberContexts.id", mc.id);
        checkLen("snapshot.meta.memberContexts.context", mc.context.length);
        putU64(dv, o, mc.id);
        dv.setUint32(o + 8, mc.context.length);
        buf.set(mc.context, o + 12);
        o += 12 + mc.context.length;
      }
    }
    putU64(dv, o, s.offset);
    putU64(dv, o + 8, s.total);
    dv.setUint8(o + 16, s.done ? 1 : 0);
    dv.setUint32(o + 17, s.data.length);
    buf.set(s.data, o + 21);
    o += 21 + s.data.length;
  }
  return o;
}

/** Encodes `m` into a new Uint8Array. Throws {@link EncodeError} for an unencodable field. */
export function encodeMessage(m: Message): Uint8Array {
  const buf = new Uint8Array(encodedMessageSize(m));
  encodeMessageInto(m, buf, 0);
  return buf;
}

/** A bounds-checked cursor over a payload; every failure is a {@link DecodeError}. */
class Reader {
  readonly dv: DataView;
  o: number;
  readonly end: number;

  constructor(readonly buf: Uint8Array) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.o = 0;
    this.end = buf.length;
  }

  need(n: number, what: string): void {
    if (this.end - this.o < n) {
      throw new DecodeError(
        "truncated",
        `${what}: need ${n} bytes, have ${this.end - this.o}`,
        this.o,
      );
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.dv.getUint8(this.o++);
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.dv.getUint32(this.o);
    this.o += 4;
    return v;
  }

  u64(what: string): number {
    this.need(8, what);
    const hi = this.dv.getUint32(this.o);
    if (hi > MAX_HI) throw new DecodeError("bad-integer", `${what} exceeds 2^53-1`, this.o);
    const v = hi * TWO_32 + this.dv.getUint32(this.o + 4);
    this.o += 8;
    return v;
  }

  /** A u32 length followed by that many bytes, copied out of the payload. */
  bytes(what: string): Uint8Array {
    const at = this.o;
    const n = this.u32(what);
    if (n > this.end - this.o) {
      throw new DecodeError("bad-length", `${what} length ${n} exceeds remaining bytes`, at);
    }
    const v = n === 0 ? EMPTY : this.buf.slice(this.o, this.o + n);
    this.o += n;
    return v;
  }

  /** A u32 count of u64 ids. */
  ids(what: string): number[] {
    const at = this.o;
    const n = this.u32(what);
    if (n * 8 > this.end - this.o) {
      throw new DecodeError("bad-count", `${what} count ${n} exceeds remaining bytes`, at);
    }
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.u64(what);
    return out;
  }
}

/**
 * Decodes one message that fills `bytes` exactly. Byte fields are copied, so `bytes` may be
 * reused afterwards (the entries' data are views of one copy). Throws {@link DecodeError} on any malformed input.
 */
export function decodeMessage(bytes: Uint8Array): Message {
  const r = new Reader(bytes);
  const type = r.u8("type");
  if (type > MAX_MESSAGE_TYPE) throw new DecodeError("bad-enum", `message type ${type}`, 0);
  const flags = r.u8("flags");
  if ((flags & ~KNOWN_FLAGS) !== 0) throw new DecodeError("bad-flags", `flags ${flags}`, 1);
  const to = r.u64("to");
  const from = r.u64("from");
  const term = r.u64("term");
  const logTerm = r.u64("logTerm");
  const index = r.u64("index");
  const commit = r.u64("commit");
  const rejectHint = r.u64("rejectHint");
  const context = r.bytes("context");
  const countAt = r.o;
  const count = r.u32("entry count");
  if (count * ENTRY_FIXED_BYTES > r.end - r.o) {
    throw new DecodeError("bad-count", `entry count ${count} exceeds remaining bytes`, countAt);
  }
  const entries = new Array<Entry>(count);
  // The entries' data are views of one copy of the bytes they span (one buffer per message,
  // not one per entry: the log keeps every entry until it is compacted).
  const dataFrom = r.o;
  const offsets = new Array<number>(count);
  const lengths = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const eTerm = r.u64("entry term");
    const eIndex = r.u64("entry index");
    const typeAt = r.o;
    const eType = r.u8("entry type");
    if (eType > MAX_ENTRY_TYPE) throw new DecodeError("bad-enum", `entry type ${eType}`, typeAt);
    const at = r.o;
    const n = r.u32("entry data");
    if (n > r.end - r.o) {
      throw new DecodeError("bad-length", `entry data length ${n} exceeds remaining bytes`, at);
    }
    entries[i] = { term: eTerm, index: eIndex, type: eType as EntryType, data: EMPTY };
    offsets[i] = r.o;
    lengths[i] = n;
    r.o += n;
  }
  if (count > 0) {
    const copy = bytes.slice(dataFrom, r.o);
    for (let i = 0; i < count; i++) {
      const n = lengths[i];
      if (n > 0) entries[i].data = copy.subarray(offsets[i] - dataFrom, offsets[i] - dataFrom + n);
    }
  }
  let snapshot: SnapshotChunk | null = null;
  if ((flags & FLAG_SNAPSHOT) !== 0) {
    const snapAt = r.o;
    const mIndex = r.u64("snapshot index");
    const mTerm = r.u64("snapshot term");
    const voters = r.ids("voters");
    const votersOutgoing = r.ids("votersOutgoing");
    const learners = r.ids("learners");
    const learnersNext = r.ids("learnersNext");
    let memberContexts: MemberContext[] | undefined;
    if ((flags & FLAG_MEMBER_CONTEXTS) !== 0) {
      const at = r.o;
      const n = r.u32("member context count");
      // Present only when non-empty (canonical); each takes at least 12 bytes.
      if (n === 0 || n * 12 > r.end - r.o) {
        throw new DecodeError("bad-count", `member context count ${n}`, at);
      }
      memberContexts = new Array<MemberContext>(n);
      for (let i = 0; i < n; i++) {
        const id = r.u64("member context id");
        memberContexts[i] = { id, context: r.bytes("member context") };
      }
    }
    const offset = r.u64("snapshot offset");
    const total = r.u64("snapshot total");
    const doneAt = r.o;
    const done = r.u8("snapshot done");
    if (done > 1) throw new DecodeError("bad-enum", `snapshot done ${done}`, doneAt);
    const data = r.bytes("snapshot data");
    if (offset + data.length > total) {
      throw new DecodeError("bad-snapshot", "offset + data length exceeds total", snapAt);
    }
    snapshot = {
      meta: {
        index: mIndex,
        term: mTerm,
        conf: { voters, votersOutgoing, learners, learnersNext },
      },
      offset,
      total,
      data,
      done: done === 1,
    };
    if (memberContexts) snapshot.meta.memberContexts = memberContexts;
  } else if ((flags & FLAG_MEMBER_CONTEXTS) !== 0) {
    throw new DecodeError("bad-flags", `flags ${flags}: member contexts without a snapshot`, 1);
  }
  if (r.o !== r.end) throw new DecodeError("trailing-bytes", `${r.end - r.o} bytes left`, r.o);
  return {
    type: type as MessageType,
    to,
    from,
    term,
    logTerm,
    index,
    entries,
    commit,
    reject: (flags & FLAG_REJECT) !== 0,
    rejectHint,
    context,
    snapshot,
  };
}
