/**
 * The gokv client wire protocol: length-prefixed binary frames over TCP, shared by the server
 * (server/client_server.ts) and the client library (client/client.ts). See client/PROTOCOL.md.
 *
 * Every frame is `u32 length` (big-endian, of the body) followed by the body. A request body is
 * `u8 op | u32 requestId | payload`; a response body is `u8 (op | 0x80) | u32 requestId |
 * u8 status | payload`. Many requests may be in flight on one connection; responses carry the
 * request id and may arrive in any order.
 *
 * @module
 */

import { LimitError, MAX_CLIENT_FRAME_BYTES } from "../config/limits.ts";
import { decodeAtomicBody, encodeAtomicBody } from "../storage/command.ts";
import { DecodeError } from "../storage/errors.ts";
import {
  type AtomicCheck,
  type AtomicMutation,
  isValueEncoding,
  type KvEntry,
  VERSIONSTAMP_BYTES,
} from "../storage/kv_model.ts";

/** Operation codes. */
export enum Op {
  /** Write a key. */
  Put = 1,
  /** Read a key. */
  Get = 2,
  /** Delete a key. */
  Delete = 3,
  /** Range scan. */
  Scan = 4,
  /** List members. */
  Members = 5,
  /** Add a member. */
  MemberAdd = 6,
  /** Remove a member. */
  MemberRemove = 7,
  /** Transfer leadership. */
  Transfer = 8,
  /** The answering node's status. */
  Status = 9,
  /** Open a client session. */
  RegisterSession = 10,
  /** Present a bearer token (the connection's handshake; numbered apart from the data ops). */
  Auth = 64,
  /** An atomic operation: checks and mutations, all or nothing. */
  Atomic = 11,
  /** Entries of several keys from one state-machine view. */
  GetMany = 12,
  /** One page of entries of a range (forward or reverse). */
  Range = 13,
  /** One poll of a watch: the changes of selected keys after a versionstamp. */
  Watch = 14,
}

/** Response status codes. */
export enum Status {
  /** Success. */
  Ok = 0,
  /** The key (or member) does not exist. */
  NotFound = 1,
  /** The node is not the leader; the payload names the leader if known. */
  NotLeader = 2,
  /** The operation timed out; it may or may not have taken effect. */
  Timeout = 3,
  /** The cluster cannot serve the request now (no leader, shutting down...). */
  Unavailable = 4,
  /** The request was malformed or refers to something invalid. */
  InvalidArgument = 5,
  /** An unexpected server failure. */
  Internal = 6,
  /** The request exceeds a limit (config/limits.ts); the payload names it. Do not retry. */
  LimitExceeded = 7,
  /** The write's session is unknown or expired: nothing was applied. */
  SessionExpired = 8,
  /** No valid token on this connection (the node has a tokens file). Do not retry as is. */
  Unauthenticated = 16,
  /** The token's role or key prefixes do not allow this request. Do not retry. */
  PermissionDenied = 17,
  /** An atomic operation's sum/min/max met a value that is not a u64 (or a bounded sum left its
   * range): nothing was applied. */
  MutationType = 9,
  /** A watch cannot resume after the given versionstamp on this node; the payload names the
   * oldest it can resume after. */
  WatchCompacted = 10,
}

/** Read consistency. */
export enum Consistency {
  /** Linearizable: a ReadIndex barrier before reading. */
  Linearizable = 0,
  /** Serializable: the answering node's local state, possibly stale. */
  Serializable = 1,
}

/** Largest frame body accepted or sent, in either direction (config/limits.ts). */
export const MAX_FRAME: number = MAX_CLIENT_FRAME_BYTES;

/** Bytes that violate the protocol. */
export class ProtocolError extends Error {
  /** Creates the error with the reason. */
  constructor(readonly reason: string) {
    super(`protocol error: ${reason}`);
    this.name = "ProtocolError";
  }
}

/** A member's addresses and role as carried on the wire. */
export interface MemberInfo {
  /** The node id. */
  id: number;
  /** True when the member is a learner (non-voting). */
  learner: boolean;
  /** Raft peer address. */
  peer: string;
  /** Client (binary protocol) address. */
  client: string;
  /** HTTP address. */
  http: string;
}

/** Bounds of a scan. */
export interface ScanRange {
  /** Inclusive lower bound. */
  start?: Uint8Array;
  /** Exclusive upper bound. */
  end?: Uint8Array;
  /** Only keys with this prefix. */
  prefix?: Uint8Array;
  /** At most this many pairs in this page (0 or absent: the server's default page size). */
  limit?: number;
  /** Continue after this cursor (the `next` of the previous page); absent: the first page. */
  cursor?: Uint8Array;
  /** Range only: descending order (the cursor then continues before its key). */
  reverse?: boolean;
}

/** A decoded request. */
export type Request =
  | {
    op: Op.Put;
    id: number;
    key: Uint8Array;
    value: Uint8Array;
    clientId: bigint;
    seq: number;
  }
  | { op: Op.Get; id: number; key: Uint8Array; consistency: Consistency }
  | { op: Op.Delete; id: number; key: Uint8Array; clientId: bigint; seq: number }
  | { op: Op.Scan; id: number; range: ScanRange; consistency: Consistency }
  | { op: Op.Members; id: number }
  | { op: Op.MemberAdd; id: number; member: Omit<MemberInfo, "learner"> }
  | { op: Op.MemberRemove; id: number; nodeId: number }
  | { op: Op.Transfer; id: number; nodeId: number }
  | { op: Op.Status; id: number }
  | { op: Op.RegisterSession; id: number }
  | { op: Op.Auth; id: number; token: string }
  | {
    op: Op.Atomic;
    id: number;
    checks: AtomicCheck[];
    mutations: AtomicMutation[];
    clientId: bigint;
    seq: number;
  }
  | { op: Op.GetMany; id: number; keys: Uint8Array[]; consistency: Consistency }
  | { op: Op.Range; id: number; range: ScanRange; consistency: Consistency }
  | {
    op: Op.Watch;
    id: number;
    keys: Uint8Array[];
    prefixes: Uint8Array[];
    after?: Uint8Array;
    waitMs: number;
  };

/** One commit's changes in a watch answer (entry null: deleted). */
export interface WireWatchEvent {
  /** The commit's versionstamp. */
  versionstamp: Uint8Array;
  /** The changed keys. */
  changes: { key: Uint8Array; entry: KvEntry | null }[];
}

/** A decoded response. Which optional fields are set depends on `op` and `status`. */
export interface Response {
  /** The operation answered. */
  op: Op;
  /** The request id. */
  id: number;
  /** The outcome. */
  status: Status;
  /** Get: the value. */
  value?: Uint8Array;
  /** Scan: the pairs in key order. */
  pairs?: [Uint8Array, Uint8Array][];
  /** Scan: the cursor of the next page (absent or empty: this was the last page). */
  next?: Uint8Array;
  /** LimitExceeded: the limit's name. */
  limit?: string;
  /** LimitExceeded: the limit's value. */
  max?: number;
  /** Members: the members. */
  members?: MemberInfo[];
  /** Status: the node status as JSON text. */
  json?: string;
  /** RegisterSession: the new session's id. */
  sessionId?: bigint;
  /** Auth: the token's name ("" when the node has no tokens file). */
  authName?: string;
  /** Auth: the token's role (read, write or admin). */
  authRole?: string;
  /** Atomic: the commit's versionstamp (absent: the checks at `failedChecks` failed). */
  versionstamp?: Uint8Array;
  /** Atomic: the indexes of the failed checks. */
  failedChecks?: number[];
  /** GetMany: one entry per key (null: absent); Range: the page. */
  entries?: (KvEntry | null)[];
  /** GetMany, Range: the consistency the read had. */
  consistency?: Consistency;
  /** Watch: the initial state (when the poll had no `after`). */
  initial?: { versionstamp: Uint8Array; entries: { key: Uint8Array; entry: KvEntry | null }[] };
  /** Watch: matching commits in order. */
  events?: WireWatchEvent[];
  /** Watch: the versionstamp through which the answer is complete (the next `after`);
   * WatchCompacted: the oldest versionstamp to resume after. */
  position?: Uint8Array;
  /** NotLeader: the leader's id (0 unknown). */
  leaderId?: number;
  /** NotLeader: the leader's client address ("" unknown). */
  leaderAddr?: string;
  /** Any error status: a human-readable reason. */
  message?: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });
const EMPTY = new Uint8Array(0);

/** Output buffers larger than this are not kept for reuse once written. */
const WRITER_KEEP_BYTES = 1024 * 1024;
/** A frame begun when the buffer already holds this much starts a new buffer: large frames are
 * not copied again and again into one buffer grown by doubling (64 writers of 256 KiB values in
 * one tick would grow it to 16 MiB, copying and zero-filling twice that). */
const WRITER_SEAL_BYTES = 256 * 1024;

/** Scratch for the u64 fields (no DataView per writer or reader). */
const SCRATCH = new DataView(new ArrayBuffer(8));

/**
 * A growable big-endian writer of frames: one frame ({@link encodeRequest},
 * {@link encodeResponse}) or a connection's output buffer that frames are appended to in place
 * ({@link encodeRequestTo}, {@link encodeResponseTo}) and handed out with {@link take}, so a
 * frame costs no allocation of its own and a write of many frames no concatenation.
 */
export class FrameWriter {
  /** The bytes; frames written so far are `buf[0, length)`. */
  buf: Uint8Array;
  /** Where the next byte goes. */
  pos = 0;
  /** Where the frame being written starts (its length prefix). */
  private start = 0;
  private spare: Uint8Array | undefined;
  /** Complete frames in earlier buffers, oldest first (handed out by {@link take} first). */
  private sealed: Uint8Array[] = [];
  private sealedBytes = 0;

  /** A writer whose buffer starts at `size` bytes. */
  constructor(size = 64) {
    this.buf = new Uint8Array(size);
  }

  /** Bytes of complete frames (and of the frame being written). */
  get length(): number {
    return this.sealedBytes + this.pos;
  }

  /** Starts a frame: reserves its length prefix. */
  begin(): void {
    if (this.pos >= WRITER_SEAL_BYTES) {
      this.sealed.push(this.buf.subarray(0, this.pos));
      this.sealedBytes += this.pos;
      this.buf = this.fresh();
      this.pos = 0;
    }
    this.start = this.pos;
    this.ensure(4);
    this.pos += 4;
  }

  /** Completes the frame begun last. One over {@link MAX_FRAME} is dropped and throws
   * {@link LimitError} (`frame_bytes`). */
  end(): void {
    const len = this.pos - this.start - 4;
    if (len > MAX_FRAME) {
      this.abort();
      throw new LimitError("frame_bytes", MAX_FRAME, len);
    }
    const b = this.buf, s = this.start;
    b[s] = len >>> 24;
    b[s + 1] = (len >>> 16) & 0xff;
    b[s + 2] = (len >>> 8) & 0xff;
    b[s + 3] = len & 0xff;
  }

  /** Drops the frame begun last (an encoding failed); a buffer it grew large is released. */
  abort(): void {
    this.pos = this.start;
    if (this.buf.length > WRITER_KEEP_BYTES && this.pos <= WRITER_KEEP_BYTES) {
      const next = new Uint8Array(Math.max(64, this.pos * 2));
      next.set(this.buf.subarray(0, this.pos));
      this.buf = next;
    }
  }

  /**
   * Hands out the complete frames written so far and continues in another buffer. The bytes
   * stay valid until they are given back with {@link recycle} (a writer keeps one spare).
   */
  take(): Uint8Array {
    const first = this.sealed.shift();
    if (first) {
      this.sealedBytes -= first.length;
      return first;
    }
    const out = this.buf.subarray(0, this.pos);
    this.buf = this.fresh();
    this.pos = this.start = 0;
    return out;
  }

  /** The next buffer: the spare, or a new one (as large as the last, within the keep bound). */
  private fresh(): Uint8Array {
    const b = this.spare ??
      new Uint8Array(Math.min(Math.max(this.buf.length, 64), WRITER_KEEP_BYTES));
    this.spare = undefined;
    return b;
  }

  /** Gives back bytes from {@link take} once written, for reuse (unless they grew large). */
  recycle(b: Uint8Array): void {
    if (b.buffer.byteLength <= WRITER_KEEP_BYTES && b.buffer !== this.buf.buffer) {
      this.spare = new Uint8Array(b.buffer);
    }
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    // Doubling for small frames; a large one gets the room it needs, not twice that.
    let size = this.buf.length * 2;
    if (size < this.pos + n) size = this.pos + n + (n >= WRITER_SEAL_BYTES ? 64 : size);
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** Appends a u8. */
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  /** Appends a u32. */
  u32(v: number): void {
    this.ensure(4);
    const b = this.buf, p = this.pos;
    b[p] = v >>> 24;
    b[p + 1] = (v >>> 16) & 0xff;
    b[p + 2] = (v >>> 8) & 0xff;
    b[p + 3] = v & 0xff;
    this.pos = p + 4;
  }

  /** Appends a u64 (the low 64 bits of `v`). */
  u64(v: bigint): void {
    SCRATCH.setBigUint64(0, BigInt.asUintN(64, v));
    this.u32(SCRATCH.getUint32(0));
    this.u32(SCRATCH.getUint32(4));
  }

  /** A non-negative safe integer as u64. */
  num(v: number): void {
    this.u32(Math.floor(v / 0x100000000));
    this.u32(v >>> 0);
  }

  /** Appends `u32 length | bytes`. */
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.raw(b);
  }

  /** Appends bytes as they are. */
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Appends a UTF-8 string as `bytes`. */
  str(s: string): void {
    this.bytes(s.length === 0 ? EMPTY : enc.encode(s));
  }
}

/**
 * A bounds-checked big-endian byte reader; every underflow is a {@link ProtocolError}. Byte
 * strings are copies, or with `views` views of `buf` (give it a buffer of its own: one copy of
 * a whole request instead of one per field, and nothing pins a connection's receive buffer).
 */
class Reader {
  pos = 0;

  constructor(private buf: Uint8Array, private readonly views = false) {}

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new ProtocolError(`truncated ${what} at byte ${this.pos}`);
    }
  }

  u8(what = "u8"): number {
    this.need(1, what);
    return this.buf[this.pos++];
  }

  u32(what = "u32"): number {
    this.need(4, what);
    const b = this.buf, p = this.pos;
    this.pos = p + 4;
    return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
  }

  u64(what = "u64"): bigint {
    const hi = this.u32(what);
    const lo = this.u32(what);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  num(what = "u64"): number {
    this.need(8, what);
    const hi = this.u32(what);
    const lo = this.u32(what);
    if (hi >= 0x200000) throw new ProtocolError(`${what} exceeds 2^53`);
    return hi * 0x100000000 + lo;
  }

  raw(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.views
      ? this.buf.subarray(this.pos, this.pos + n)
      : this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  bytes(what = "bytes"): Uint8Array {
    const n = this.u32(`${what} length`);
    // Copies (or views of a copy) so decoded values do not pin or alias the connection's
    // receive buffer.
    return this.raw(n, what);
  }

  str(what = "string"): string {
    const b = this.bytes(what);
    try {
      return dec.decode(b);
    } catch {
      throw new ProtocolError(`${what} is not valid UTF-8`);
    }
  }

  end(): void {
    if (this.pos !== this.buf.length) {
      throw new ProtocolError(`${this.buf.length - this.pos} trailing bytes`);
    }
  }
}

const SCAN_START = 1;
const SCAN_END = 2;
const SCAN_PREFIX = 4;
const SCAN_REVERSE = 8;

function checkOp(op: number): Op {
  if (typeof Op[op] !== "string") throw new ProtocolError(`unknown op ${op}`);
  return op;
}

function writeRange(w: FrameWriter, r: ScanRange, consistency: Consistency): void {
  w.u8(
    (r.start ? SCAN_START : 0) | (r.end ? SCAN_END : 0) | (r.prefix ? SCAN_PREFIX : 0) |
      (r.reverse ? SCAN_REVERSE : 0),
  );
  w.bytes(r.start ?? EMPTY);
  w.bytes(r.end ?? EMPTY);
  w.bytes(r.prefix ?? EMPTY);
  w.u32(r.limit ?? 0);
  w.u8(consistency);
  w.bytes(r.cursor ?? EMPTY);
}

function readRange(
  r: Reader,
  allowReverse: boolean,
): { range: ScanRange; consistency: Consistency } {
  const flags = r.u8("scan flags");
  const known = SCAN_START | SCAN_END | SCAN_PREFIX | (allowReverse ? SCAN_REVERSE : 0);
  if (flags & ~known) throw new ProtocolError(`unknown scan flags ${flags}`);
  const start = r.bytes("scan start");
  const end = r.bytes("scan end");
  const prefix = r.bytes("scan prefix");
  const limit = r.u32("scan limit");
  const range: ScanRange = {};
  if (flags & SCAN_START) range.start = start;
  if (flags & SCAN_END) range.end = end;
  if (flags & SCAN_PREFIX) range.prefix = prefix;
  if (flags & SCAN_REVERSE) range.reverse = true;
  if (limit > 0) range.limit = limit;
  const consistency = checkConsistency(r.u8("consistency"));
  const cursor = r.bytes("scan cursor");
  if (cursor.length > 0) range.cursor = cursor;
  return { range, consistency };
}

function readKeys(r: Reader, frame: number): Uint8Array[] {
  const n = r.u32("key count");
  if (n > frame / 4) throw new ProtocolError(`key count ${n} exceeds the frame`);
  const keys: Uint8Array[] = [];
  for (let i = 0; i < n; i++) keys.push(r.bytes("key"));
  return keys;
}

function writeChanges(w: FrameWriter, changes: { key: Uint8Array; entry: KvEntry | null }[]): void {
  w.u32(changes.length);
  for (const c of changes) {
    w.bytes(c.key);
    writeEntry(w, c.entry);
  }
}

function readChanges(r: Reader, frame: number): { key: Uint8Array; entry: KvEntry | null }[] {
  const n = r.u32("change count");
  if (n > frame / 5) throw new ProtocolError(`change count ${n} exceeds the frame`);
  const out: { key: Uint8Array; entry: KvEntry | null }[] = [];
  for (let i = 0; i < n; i++) out.push({ key: r.bytes("key"), entry: readEntry(r) });
  return out;
}

function writeEntry(w: FrameWriter, e: KvEntry | null): void {
  if (!e) {
    w.u8(0);
    return;
  }
  w.u8(e.expireAt !== undefined ? 2 : 1);
  w.bytes(e.key);
  w.bytes(e.value);
  w.u8(e.encoding);
  w.raw(e.versionstamp);
  if (e.expireAt !== undefined) w.num(e.expireAt);
}

function readEntry(r: Reader): KvEntry | null {
  const tag = r.u8("entry tag");
  if (tag === 0) return null;
  if (tag > 2) throw new ProtocolError(`unknown entry tag ${tag}`);
  const key = r.bytes("key");
  const value = r.bytes("value");
  const encoding = r.u8("encoding");
  if (!isValueEncoding(encoding)) throw new ProtocolError(`unknown value encoding ${encoding}`);
  const e: KvEntry = {
    key,
    value,
    encoding,
    versionstamp: r.raw(VERSIONSTAMP_BYTES, "versionstamp"),
  };
  if (tag === 2) e.expireAt = r.num("expiry");
  return e;
}

function checkConsistency(c: number): Consistency {
  if (c !== Consistency.Linearizable && c !== Consistency.Serializable) {
    throw new ProtocolError(`unknown consistency ${c}`);
  }
  return c;
}

/** A request without its id (a connection assigns one). */
export type RequestBody = Request extends infer R ? R extends Request ? Omit<R, "id"> : never
  : never;

/** Encodes a request as a complete frame (length prefix included). */
export function encodeRequest(req: Request): Uint8Array {
  const w = new FrameWriter(
    req.op === Op.Put
      ? 37 + req.key.length + req.value.length
      : req.op === Op.Get
      ? 14 + req.key.length
      : 64,
  );
  encodeRequestTo(w, req, req.id);
  return w.buf.subarray(0, w.pos);
}

/**
 * Appends request `body` with id `id` to `w` as a complete frame. Throws {@link LimitError}
 * (over {@link MAX_FRAME}) or what the encoding of its parts throws; nothing is appended then.
 */
export function encodeRequestTo(w: FrameWriter, body: RequestBody, id: number): void {
  w.begin();
  try {
    writeRequest(w, body, id);
  } catch (e) {
    w.abort();
    throw e;
  }
  w.end();
}

function writeRequest(w: FrameWriter, req: RequestBody, id: number): void {
  w.u8(req.op);
  w.u32(id);
  switch (req.op) {
    case Op.Put:
      w.bytes(req.key);
      w.bytes(req.value);
      w.u64(req.clientId);
      w.num(req.seq);
      break;
    case Op.Get:
      w.u8(req.consistency);
      w.bytes(req.key);
      break;
    case Op.Delete:
      w.bytes(req.key);
      w.u64(req.clientId);
      w.num(req.seq);
      break;
    case Op.Scan:
      writeRange(w, { ...req.range, reverse: false }, req.consistency);
      break;
    case Op.Range:
      writeRange(w, req.range, req.consistency);
      break;
    case Op.Atomic:
      w.u64(req.clientId);
      w.num(req.seq);
      w.bytes(encodeAtomicBody(req.checks, req.mutations));
      break;
    case Op.GetMany:
      w.u8(req.consistency);
      w.u32(req.keys.length);
      for (const k of req.keys) w.bytes(k);
      break;
    case Op.Watch:
      w.u32(req.keys.length);
      for (const k of req.keys) w.bytes(k);
      w.u32(req.prefixes.length);
      for (const p of req.prefixes) w.bytes(p);
      if (req.after) {
        w.u8(1);
        w.raw(req.after);
      } else {
        w.u8(0);
      }
      w.u32(req.waitMs);
      break;
    case Op.Members:
    case Op.Status:
    case Op.RegisterSession:
      break;
    case Op.MemberAdd:
      w.u32(req.member.id);
      w.str(req.member.peer);
      w.str(req.member.client);
      w.str(req.member.http);
      break;
    case Op.MemberRemove:
    case Op.Transfer:
      w.u32(req.nodeId);
      break;
    case Op.Auth:
      w.str(req.token);
      break;
  }
}

/**
 * Decodes a request body (the frame without its length prefix). Throws {@link ProtocolError}.
 * The byte strings of the request are views of one copy of `body` (a request lives as long as
 * it is served: nothing larger than itself stays pinned).
 */
export function decodeRequest(body: Uint8Array): Request {
  const r = new Reader(body.slice(), true);
  const op = checkOp(r.u8("op"));
  const id = r.u32("request id");
  let req: Request;
  switch (op) {
    case Op.Put:
      req = {
        op,
        id,
        key: r.bytes("key"),
        value: r.bytes("value"),
        clientId: r.u64("client id"),
        seq: r.num("seq"),
      };
      break;
    case Op.Get: {
      const consistency = checkConsistency(r.u8("consistency"));
      req = { op, id, consistency, key: r.bytes("key") };
      break;
    }
    case Op.Delete:
      req = { op, id, key: r.bytes("key"), clientId: r.u64("client id"), seq: r.num("seq") };
      break;
    case Op.Scan:
    case Op.Range:
      req = { op, id, ...readRange(r, op === Op.Range) };
      break;
    case Op.Atomic: {
      const clientId = r.u64("client id");
      const seq = r.num("seq");
      const body = r.bytes("atomic operation");
      try {
        req = { op, id, clientId, seq, ...decodeAtomicBody(body) };
      } catch (e) {
        if (e instanceof DecodeError || e instanceof RangeError) {
          throw new ProtocolError((e as Error).message);
        }
        throw e;
      }
      break;
    }
    case Op.GetMany: {
      const consistency = checkConsistency(r.u8("consistency"));
      req = { op, id, consistency, keys: readKeys(r, body.length) };
      break;
    }
    case Op.Watch: {
      const keys = readKeys(r, body.length);
      const prefixes = readKeys(r, body.length);
      const has = r.u8("after flag");
      if (has > 1) throw new ProtocolError(`bad after flag ${has}`);
      const after = has ? r.raw(VERSIONSTAMP_BYTES, "after") : undefined;
      const waitMs = r.u32("wait");
      req = after ? { op, id, keys, prefixes, after, waitMs } : { op, id, keys, prefixes, waitMs };
      break;
    }
    case Op.Members:
    case Op.Status:
    case Op.RegisterSession:
      req = { op, id };
      break;
    case Op.MemberAdd:
      req = {
        op,
        id,
        member: {
          id: r.u32("node id"),
          peer: r.str("peer"),
          client: r.str("client"),
          http: r.str("http"),
        },
      };
      break;
    case Op.MemberRemove:
    case Op.Transfer:
      req = { op, id, nodeId: r.u32("node id") };
      break;
    case Op.Auth:
      req = { op, id, token: r.str("token") };
      break;
  }
  r.end();
  return req;
}

/** Encodes a response as a complete frame (length prefix included). */
export function encodeResponse(res: Response): Uint8Array {
  const w = new FrameWriter(res.value ? 14 + res.value.length : 64);
  encodeResponseTo(w, res);
  return w.buf.subarray(0, w.pos);
}

/**
 * Appends response `res` to `w` as a complete frame. Throws {@link LimitError} (over
 * {@link MAX_FRAME}); nothing is appended then.
 */
export function encodeResponseTo(w: FrameWriter, res: Response): void {
  w.begin();
  try {
    writeResponse(w, res);
  } catch (e) {
    w.abort();
    throw e;
  }
  w.end();
}

function writeResponse(w: FrameWriter, res: Response): void {
  w.u8(res.op | 0x80);
  w.u32(res.id);
  w.u8(res.status);
  if (res.status === Status.Ok) {
    switch (res.op) {
      case Op.Get:
        w.bytes(res.value ?? EMPTY);
        break;
      case Op.Scan: {
        const pairs = res.pairs ?? [];
        w.u32(pairs.length);
        for (const [k, v] of pairs) {
          w.bytes(k);
          w.bytes(v);
        }
        w.bytes(res.next ?? EMPTY);
        break;
      }
      case Op.Members: {
        const members = res.members ?? [];
        w.u32(members.length);
        for (const m of members) {
          w.u32(m.id);
          w.u8(m.learner ? 1 : 0);
          w.str(m.peer);
          w.str(m.client);
          w.str(m.http);
        }
        break;
      }
      case Op.Status:
        w.str(res.json ?? "{}");
        break;
      case Op.RegisterSession:
        w.u64(res.sessionId ?? 0n);
        break;
      case Op.Auth:
        w.str(res.authName ?? "");
        w.str(res.authRole ?? "");
        break;
      case Op.Atomic:
        if (res.versionstamp) {
          w.u8(1);
          w.raw(res.versionstamp);
        } else {
          w.u8(0);
          const f = res.failedChecks ?? [];
          w.u32(f.length);
          for (const i of f) w.u32(i);
        }
        break;
      case Op.GetMany:
      case Op.Range: {
        w.u8(res.consistency ?? Consistency.Linearizable);
        const entries = res.entries ?? [];
        w.u32(entries.length);
        for (const e of entries) writeEntry(w, e);
        if (res.op === Op.Range) w.bytes(res.next ?? EMPTY);
        break;
      }
      case Op.Watch: {
        if (res.initial) {
          w.u8(1);
          w.raw(res.initial.versionstamp);
          writeChanges(w, res.initial.entries);
        } else {
          w.u8(0);
        }
        const events = res.events ?? [];
        w.u32(events.length);
        for (const e of events) {
          w.raw(e.versionstamp);
          writeChanges(w, e.changes);
        }
        w.raw(res.position ?? new Uint8Array(VERSIONSTAMP_BYTES));
        break;
      }
      default:
        break;
    }
  } else {
    if (res.status === Status.NotLeader) {
      w.u32(res.leaderId ?? 0);
      w.str(res.leaderAddr ?? "");
    } else if (res.status === Status.LimitExceeded) {
      w.str(res.limit ?? "");
      w.num(res.max ?? 0);
    } else if (res.status === Status.WatchCompacted) {
      w.raw(res.position ?? new Uint8Array(VERSIONSTAMP_BYTES));
    }
    w.str(res.message ?? "");
  }
}

/** Decodes a response body (the frame without its length prefix). Throws {@link ProtocolError}. */
export function decodeResponse(body: Uint8Array): Response {
  const r = new Reader(body);
  const tag = r.u8("op");
  if ((tag & 0x80) === 0) throw new ProtocolError(`response tag ${tag} lacks the response bit`);
  const op = checkOp(tag & 0x7f);
  const id = r.u32("request id");
  const status = r.u8("status");
  if (typeof Status[status] !== "string") throw new ProtocolError(`unknown status ${status}`);
  const res: Response = { op, id, status };
  if (status === Status.Ok) {
    switch (op) {
      case Op.Get:
        res.value = r.bytes("value");
        break;
      case Op.Scan: {
        const n = r.u32("pair count");
        if (n > body.length / 8) throw new ProtocolError(`pair count ${n} exceeds the frame`);
        const pairs: [Uint8Array, Uint8Array][] = new Array(n);
        for (let i = 0; i < n; i++) pairs[i] = [r.bytes("key"), r.bytes("value")];
        res.pairs = pairs;
        const next = r.bytes("scan next");
        if (next.length > 0) res.next = next;
        break;
      }
      case Op.Members: {
        const n = r.u32("member count");
        if (n > body.length / 17) throw new ProtocolError(`member count ${n} exceeds the frame`);
        const members: MemberInfo[] = [];
        for (let i = 0; i < n; i++) {
          const mid = r.u32("node id");
          const role = r.u8("role");
          if (role > 1) throw new ProtocolError(`unknown member role ${role}`);
          members.push({
            id: mid,
            learner: role === 1,
            peer: r.str("peer"),
            client: r.str("client"),
            http: r.str("http"),
          });
        }
        res.members = members;
        break;
      }
      case Op.Status:
        res.json = r.str("status");
        break;
      case Op.RegisterSession:
        res.sessionId = r.u64("session id");
        break;
      case Op.Auth:
        res.authName = r.str("token name");
        res.authRole = r.str("role");
        break;
      case Op.Atomic: {
        const committed = r.u8("committed");
        if (committed > 1) throw new ProtocolError(`bad atomic outcome ${committed}`);
        if (committed) {
          res.versionstamp = r.raw(VERSIONSTAMP_BYTES, "versionstamp");
        } else {
          const n = r.u32("failed check count");
          if (n > body.length / 4) throw new ProtocolError(`check count ${n} exceeds the frame`);
          res.failedChecks = [];
          for (let i = 0; i < n; i++) res.failedChecks.push(r.u32("failed check"));
        }
        break;
      }
      case Op.GetMany:
      case Op.Range: {
        res.consistency = checkConsistency(r.u8("consistency"));
        const n = r.u32("entry count");
        if (n > body.length) throw new ProtocolError(`entry count ${n} exceeds the frame`);
        const entries: (KvEntry | null)[] = [];
        for (let i = 0; i < n; i++) entries.push(readEntry(r));
        if (op === Op.Range) {
          if (entries.includes(null)) throw new ProtocolError("a range page with no entry");
          const next = r.bytes("range cursor");
          if (next.length > 0) res.next = next;
        }
        res.entries = entries;
        break;
      }
      case Op.Watch: {
        const has = r.u8("initial flag");
        if (has > 1) throw new ProtocolError(`bad initial flag ${has}`);
        if (has) {
          const versionstamp = r.raw(VERSIONSTAMP_BYTES, "versionstamp");
          res.initial = { versionstamp, entries: readChanges(r, body.length) };
        }
        const n = r.u32("event count");
        if (n > body.length / 14) throw new ProtocolError(`event count ${n} exceeds the frame`);
        const events: WireWatchEvent[] = [];
        for (let i = 0; i < n; i++) {
          const versionstamp = r.raw(VERSIONSTAMP_BYTES, "versionstamp");
          events.push({ versionstamp, changes: readChanges(r, body.length) });
        }
        res.events = events;
        res.position = r.raw(VERSIONSTAMP_BYTES, "position");
        break;
      }
      default:
        break;
    }
  } else {
    if (status === Status.NotLeader) {
      res.leaderId = r.u32("leader id");
      res.leaderAddr = r.str("leader address");
    } else if (status === Status.LimitExceeded) {
      res.limit = r.str("limit name");
      res.max = r.num("limit value");
    } else if (status === Status.WatchCompacted) {
      res.position = r.raw(VERSIONSTAMP_BYTES, "oldest versionstamp");
    }
    res.message = r.str("message");
  }
  r.end();
  return res;
}

/** A frame buffer above this size is released once its frames are consumed. */
const FRAME_READER_KEEP_BYTES = 64 * 1024;

/**
 * Splits a byte stream into frame bodies. Feed it chunks with {@link push}; take complete
 * bodies with {@link next}. A declared length above {@link MAX_FRAME} throws {@link ProtocolError}.
 */
export class FrameReader {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;

  constructor(private readonly maxFrame = MAX_FRAME) {}

  /**
   * The buffer size {@link push} of `chunk` will leave. A frame above 64 KiB gets a buffer of
   * exactly its size at once (allocated lazily by the OS, so only what arrives is resident;
   * no doubling garbage), so a server can reserve memory for it before reading further.
   */
  capacityAfter(chunk: Uint8Array): number {
    const empty = this.start === this.end;
    const cap = empty && this.buf.length > FRAME_READER_KEEP_BYTES ? 0 : this.buf.length;
    const live = this.end - this.start;
    const end = empty ? 0 : this.end;
    if (end + chunk.length <= cap || live + chunk.length <= cap) return cap;
    let size = Math.max(4096, cap);
    while (size < live + chunk.length) size *= 2;
    const len = this.peekLength(chunk);
    if (len !== undefined && len <= this.maxFrame && 4 + len > FRAME_READER_KEEP_BYTES) {
      size = Math.max(live + chunk.length, 4 + len);
    }
    return size;
  }

  /** The length prefix of the frame at the front, from the buffer and `chunk`, if known. */
  private peekLength(chunk: Uint8Array): number | undefined {
    const live = this.end - this.start;
    if (live + chunk.length < 4) return undefined;
    let v = 0;
    for (let i = 0; i < 4; i++) {
      v = v * 256 + (i < live ? this.buf[this.start + i] : chunk[i - live]);
    }
    return v;
  }

  /** Drops a large buffer whose frames have all been taken (memory back at once). */
  shrink(): void {
    if (this.start === this.end && this.buf.length > FRAME_READER_KEEP_BYTES) {
      this.buf = new Uint8Array(0);
      this.start = this.end = 0;
    }
  }

  /** Appends received bytes (copied). */
  push(chunk: Uint8Array): void {
    const size = this.capacityAfter(chunk);
    if (this.start === this.end) this.start = this.end = 0;
    if (size !== this.buf.length) {
      const live = this.end - this.start;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
      this.start = 0;
      this.end = live;
    } else if (this.end + chunk.length > this.buf.length) {
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next complete frame body, or undefined if more bytes are needed. The returned view is
   * valid until the next {@link push}. */
  next(): Uint8Array | undefined {
    const avail = this.end - this.start;
    if (avail < 4) return undefined;
    const b = this.buf;
    const s = this.start;
    const len = ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
    if (len > this.maxFrame) {
      throw new ProtocolError(`frame of ${len} bytes exceeds ${this.maxFrame}`);
    }
    if (len === 0) throw new ProtocolError("empty frame");
    if (avail < 4 + len) return undefined;
    this.start += 4 + len;
    if (this.start === this.end) this.start = this.end = 0;
    return b.subarray(s + 4, s + 4 + len);
  }

  /** Bytes buffered but not yet returned as frames. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Bytes allocated for buffering (at most about twice {@link buffered} once above the
   * initial 4 KiB). */
  get capacity(): number {
    return this.buf.length;
  }
}
