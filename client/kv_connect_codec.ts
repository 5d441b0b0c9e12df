/**
 * The KV Connect data path messages (client/kv_connect.proto) as typed values, encoded and
 * decoded by protobufjs from the embedded descriptor ({@link KV_CONNECT_PROTO_JSON}). Shared by
 * the server (server/kv_connect.ts) and the `Deno.Kv`-shaped client (client/kv.ts). Every bytes
 * field decodes to a plain `Uint8Array` (empty when absent), every 64-bit integer to a number.
 *
 * @module
 */
import protobuf from "protobufjs";
import { KV_CONNECT_PROTO_JSON } from "./kv_connect_proto.ts";

/** How a value's bytes are to be read. */
export enum ValueEncoding {
  /** Unknown: refused. */
  Unspecified = 0,
  /** V8 ValueSerializer bytes (a structured-clone value). */
  V8 = 1,
  /** An unsigned 64-bit integer, 8 bytes little-endian (`Deno.KvU64`). */
  LE64 = 2,
  /** A `Uint8Array` as is. */
  Bytes = 3,
}

/** What a mutation does. */
export enum MutationType {
  /** Unknown: refused. */
  Unspecified = 0,
  /** Set the value. */
  Set = 1,
  /** Delete the key. */
  Delete = 2,
  /** Add to the stored value. */
  Sum = 3,
  /** Keep the larger of the stored value and the operand. */
  Max = 4,
  /** Keep the smaller of the stored value and the operand. */
  Min = 5,
  /** Set at the key followed by the commit's versionstamp (a tuple string element). */
  SetSuffixVersionstampedKey = 9,
}

/** The status of a snapshot read (protocol 3) or of a watch frame. */
export enum SnapshotReadStatus {
  /** Unknown: the client aborts. */
  Unspecified = 0,
  /** The read succeeded. */
  Success = 1,
  /** This endpoint cannot serve reads now. */
  ReadDisabled = 2,
}

/** The status of an atomic write. */
export enum AtomicWriteStatus {
  /** Failed for an unknown reason; not to be retried. */
  Unspecified = 0,
  /** Committed. */
  Success = 1,
  /** A check failed: nothing was applied. */
  CheckFailure = 2,
  /** This endpoint cannot serve writes now. */
  WriteDisabled = 5,
}

/** `[start, end)` of at most `limit` entries, ascending or (`reverse`) descending. */
export interface ReadRange {
  /** First key (inclusive). */
  start: Uint8Array;
  /** End key (exclusive). */
  end: Uint8Array;
  /** Entries at most. */
  limit: number;
  /** Descending order. */
  reverse: boolean;
}

/** One key with its value, the value's encoding and its versionstamp. */
export interface KvEntryMsg {
  /** The key (tuple-encoded by the clients; opaque to the server). */
  key: Uint8Array;
  /** The value bytes. */
  value: Uint8Array;
  /** How to read `value`. */
  encoding: ValueEncoding;
  /** 10 bytes: the commit that last wrote the key. */
  versionstamp: Uint8Array;
}

/** A snapshot read request. */
export interface SnapshotRead {
  /** The ranges, read from one snapshot. */
  ranges: ReadRange[];
}

/** A snapshot read response. */
export interface SnapshotReadOutput {
  /** One output per requested range, in request order. */
  ranges: { values: KvEntryMsg[] }[];
  /** Protocol 1 and 2: reads are disabled on this endpoint. */
  readDisabled: boolean;
  /** The read came from a strongly consistent (linearizable) view. */
  readIsStronglyConsistent: boolean;
  /** Protocol 3: the outcome. */
  status: SnapshotReadStatus;
}

/** The key's versionstamp must be `versionstamp` (empty: the key must be absent). */
export interface Check {
  /** The key. */
  key: Uint8Array;
  /** 10 bytes, or empty. */
  versionstamp: Uint8Array;
}

/** A value with its encoding. */
export interface KvValueMsg {
  /** The bytes. */
  data: Uint8Array;
  /** How to read them. */
  encoding: ValueEncoding;
}

/** One mutation of an atomic write. */
export interface Mutation {
  /** The key. */
  key: Uint8Array;
  /** The value or operand (ignored for deletes). */
  value?: KvValueMsg;
  /** What to do. */
  mutationType: MutationType;
  /** Expiry, ms since the Unix epoch; 0: never. */
  expireAtMs: number;
  /** M_SUM of a V8 number or bigint: the V8-encoded lower bound (empty: none). */
  sumMin: Uint8Array;
  /** ... the upper bound (empty: none). */
  sumMax: Uint8Array;
  /** Clamp into the bounds instead of failing. */
  sumClamp: boolean;
}

/** A queue message (gokv refuses enqueues). */
export interface Enqueue {
  /** V8-encoded payload. */
  payload: Uint8Array;
  /** Delivery time, ms since the Unix epoch. */
  deadlineMs: number;
  /** Keys written with the payload when delivery gives up. */
  keysIfUndelivered: Uint8Array[];
  /** Retry delays (ms). */
  backoffSchedule: number[];
}

/** An atomic write request. */
export interface AtomicWrite {
  /** Checks, all of which must hold. */
  checks: Check[];
  /** Mutations, applied together. */
  mutations: Mutation[];
  /** Enqueues. */
  enqueues: Enqueue[];
}

/** An atomic write response. */
export interface AtomicWriteOutput {
  /** The outcome. */
  status: AtomicWriteStatus;
  /** The commit's versionstamp (10 bytes) on success. */
  versionstamp: Uint8Array;
  /** Indexes of the checks that failed. */
  failedChecks: number[];
}

/** A watch request. */
export interface Watch {
  /** The keys. */
  keys: { key: Uint8Array }[];
}

/** One watched key in a watch frame. */
export interface WatchKeyOutput {
  /** Whether the key changed since the previous frame. */
  changed: boolean;
  /** Its entry when changed (absent: deleted). */
  entryIfChanged?: KvEntryMsg;
}

/** One frame of a watch stream. */
export interface WatchOutput {
  /** The outcome. */
  status: SnapshotReadStatus;
  /** One per watched key, in request order. */
  keys: WatchKeyOutput[];
}

/** The request or response bytes are not a valid message of the expected type. */
export class KvConnectDecodeError extends Error {
  /** Creates the error for message type `type`. */
  constructor(readonly type: string, reason: string) {
    super(`invalid ${type} protobuf: ${reason}`);
    this.name = "KvConnectDecodeError";
  }
}

const root = protobuf.Root.fromJSON(KV_CONNECT_PROTO_JSON as protobuf.INamespace);
const types = new Map<string, protobuf.Type>();
function typeOf(name: string): protobuf.Type {
  let t = types.get(name);
  if (!t) types.set(name, t = root.lookupType(`gokv.kvconnect.v1.${name}`));
  return t;
}

const CONVERSION: protobuf.IConversionOptions = {
  longs: Number,
  enums: Number,
  defaults: true,
  arrays: true,
};

/** Buffers (a Uint8Array subclass) become plain Uint8Arrays, recursively. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) {
    return v.constructor === Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) o[k] = plain(o[k]);
  }
  return v;
}

/** A copy without proto3 default values (false, 0, empty bytes or lists), which are not sent. */
function compact(v: unknown): unknown {
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(compact);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x === false || x === 0 || x === undefined || x === null) continue;
      if ((x instanceof Uint8Array || Array.isArray(x)) && x.length === 0) continue;
      out[k] = compact(x);
    }
    return out;
  }
  return v;
}

function encode(name: string, value: object): Uint8Array {
  const t = typeOf(name);
  const b = t.encode(t.fromObject(compact(value) as Record<string, unknown>)).finish();
  return plain(b) as Uint8Array;
}

function decode<T>(name: string, bytes: Uint8Array): T {
  const t = typeOf(name);
  let msg: protobuf.Message;
  try {
    msg = t.decode(bytes);
  } catch (e) {
    throw new KvConnectDecodeError(name, (e as Error).message);
  }
  return plain(t.toObject(msg, CONVERSION)) as T;
}

/** Encodes a snapshot read request. */
export function encodeSnapshotRead(m: SnapshotRead): Uint8Array {
  return encode("SnapshotRead", m);
}
/** Decodes a snapshot read request ({@link KvConnectDecodeError} when malformed). */
export function decodeSnapshotRead(b: Uint8Array): SnapshotRead {
  return decode("SnapshotRead", b);
}
/** Encodes a snapshot read response. */
export function encodeSnapshotReadOutput(m: SnapshotReadOutput): Uint8Array {
  return encode("SnapshotReadOutput", m);
}
/** Decodes a snapshot read response. */
export function decodeSnapshotReadOutput(b: Uint8Array): SnapshotReadOutput {
  return decode("SnapshotReadOutput", b);
}
/** Encodes an atomic write request. */
export function encodeAtomicWrite(m: AtomicWrite): Uint8Array {
  return encode("AtomicWrite", m);
}
/** Decodes an atomic write request. */
export function decodeAtomicWrite(b: Uint8Array): AtomicWrite {
  const m = decode<AtomicWrite>("AtomicWrite", b);
  // An absent value stays absent (toObject would leave it undefined already).
  for (const mu of m.mutations) if (mu.value === null) delete mu.value;
  return m;
}
/** Encodes an atomic write response. */
export function encodeAtomicWriteOutput(m: AtomicWriteOutput): Uint8Array {
  return encode("AtomicWriteOutput", m);
}
/** Decodes an atomic write response. */
export function decodeAtomicWriteOutput(b: Uint8Array): AtomicWriteOutput {
  return decode("AtomicWriteOutput", b);
}
/** Encodes a watch request. */
export function encodeWatch(m: Watch): Uint8Array {
  return encode("Watch", m);
}
/** Decodes a watch request. */
export function decodeWatch(b: Uint8Array): Watch {
  return decode("Watch", b);
}
/** Encodes one watch frame's message (without its length prefix). */
export function encodeWatchOutput(m: WatchOutput): Uint8Array {
  return encode("WatchOutput", m);
}
/** Decodes one watch frame's message. */
export function decodeWatchOutput(b: Uint8Array): WatchOutput {
  const m = decode<WatchOutput>("WatchOutput", b);
  for (const k of m.keys) if (k.entryIfChanged === null) delete k.entryIfChanged;
  return m;
}

/** A watch stream frame: the message's length as u32 little-endian, then the message. A zero
 * length (no message) is a keep-alive. */
export function watchFrame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + message.length);
  new DataView(out.buffer).setUint32(0, message.length, true);
  out.set(message, 4);
  return out;
}
