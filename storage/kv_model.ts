/**
 * The data model of gokv's user records, with Deno KV's semantics: every record carries its
 * value's encoding tag, the 10-byte versionstamp of the commit that wrote it and an optional
 * expiry time. Atomic operations (checks + mutations, all or nothing) are defined here as types;
 * kv_core.ts applies them and command.ts encodes them.
 *
 * ## Versionstamps
 *
 * 10 bytes: the Raft index of the log entry that carries the write (8 bytes, big-endian) followed
 * by the position of the command inside that entry (2 bytes, big-endian). A gokv log entry carries
 * exactly one command, so the position is always 0 today; it is part of the format so that a
 * future batching of several commands into one entry keeps versionstamps unique. Every mutation of
 * one atomic operation gets the same versionstamp (as in Deno KV). Raft indexes only grow in
 * commit order, across leader changes and restarts, so versionstamps are unique per commit and
 * strictly increasing in commit order. Text form: 20 lowercase hex digits.
 *
 * ## Record format (the store value of a user key)
 *
 * ```
 * u8  tag          bits 0-1: encoding (1 V8, 2 LE64, 3 BYTES); bit 7: an expiry time follows
 * 10  versionstamp
 * [u64 LE expireAt] milliseconds since the epoch (when bit 7)
 * value            the rest
 * ```
 *
 * A plain put writes one store record: the header and the value together.
 *
 * @module
 */
import { ByteReader, ByteWriter, HEAP } from "./bytes.ts";
import { DecodeError } from "./errors.ts";
import { type AtomicLimits, checkAtomic } from "../config/limits.ts";
/** The limits {@link checkAtomicLimits} applies (config/limits.ts). */
export type { AtomicLimits } from "../config/limits.ts";
import { deserialize as v8Deserialize, serialize as v8Serialize } from "node:v8";

/** The encoding of a value (the numbers of datapath.proto `ValueEncoding`). */
export enum ValueEncoding {
  /** Opaque serialized JavaScript (V8 ValueSerializer). */
  V8 = 1,
  /** A 64-bit unsigned integer, little-endian (8 bytes): the one encoding gokv interprets. */
  LE64 = 2,
  /** Plain bytes (what `put` writes). */
  BYTES = 3,
}

/** Bytes of a versionstamp. */
export const VERSIONSTAMP_BYTES = 10;

/** A key with its value, the value's encoding and the versionstamp of the commit that wrote it. */
export interface KvEntry {
  /** The key. */
  key: Uint8Array;
  /** The value bytes. */
  value: Uint8Array;
  /** The value's encoding. */
  encoding: ValueEncoding;
  /** The 10-byte versionstamp of the write. */
  versionstamp: Uint8Array;
  /** When the key expires (ms since the epoch), if it does. */
  expireAt?: number;
}

/** A check of an atomic operation: the key's versionstamp must be `versionstamp` (null: the key
 * must be absent). */
export interface AtomicCheck {
  /** The key. */
  key: Uint8Array;
  /** The expected versionstamp, or null for "absent". */
  versionstamp: Uint8Array | null;
}

/** One mutation of an atomic operation. `sum`, `min` and `max` operate on 8-byte little-endian
 * u64 values (`value`, `min`, `max`); see {@link applyU64}. */
export type AtomicMutation =
  | {
    /** Set `key` to `value`. */
    type: "set";
    /** The key. */
    key: Uint8Array;
    /** The value. */
    value: Uint8Array;
    /** Its encoding. */
    encoding: ValueEncoding;
    /** Expiry time (ms since the epoch); absent or 0: never. */
    expireAt?: number;
  }
  | {
    /** Delete `key`. */
    type: "delete";
    /** The key. */
    key: Uint8Array;
  }
  | {
    /** Add `value` to the key's u64 (wrapping; with `min`/`max`: bounded), or with
     * `encoding: V8` to its V8-serialized number or bigint (see {@link applyV8Sum}). */
    type: "sum";
    /** The key. */
    key: Uint8Array;
    /** The operand (8 bytes LE; with `encoding: V8`: a V8-serialized number or bigint). */
    value: Uint8Array;
    /** Absent or LE64: a u64 sum; V8: a sum of V8 numbers / bigints (Deno KV's M_SUM on
     * VE_V8 values). */
    encoding?: ValueEncoding;
    /** Lower bound of the result (8 bytes LE, or V8 like `value`). */
    min?: Uint8Array;
    /** Upper bound of the result (8 bytes LE, or V8 like `value`). */
    max?: Uint8Array;
    /** With bounds: clamp an out-of-range result instead of failing the operation. */
    clamp?: boolean;
  }
  | {
    /** Keep the smaller / larger of the key's u64 and `value`. */
    type: "min" | "max";
    /** The key. */
    key: Uint8Array;
    /** The operand (8 bytes LE). */
    value: Uint8Array;
  }
  | {
    /** Set `key ++ versionstamp element` to `value` (see {@link suffixVersionstampedKey}). */
    type: "setSuffixVersionstampedKey";
    /** The key prefix. */
    key: Uint8Array;
    /** The value. */
    value: Uint8Array;
    /** Its encoding. */
    encoding: ValueEncoding;
    /** Expiry time (ms since the epoch); absent or 0: never. */
    expireAt?: number;
  };

/** An atomic operation: checks, then mutations, applied all or nothing in one log entry. */
export interface AtomicOperation {
  /** Checks evaluated before any mutation. */
  checks: AtomicCheck[];
  /** Mutations, applied in order (each sees the ones before it). */
  mutations: AtomicMutation[];
}

/** The outcome of an atomic operation: committed with its versionstamp, or not applied because
 * the checks at these indexes failed. */
export type AtomicResult =
  | {
    /** Committed. */
    ok: true;
    /** The versionstamp every mutation got. */
    versionstamp: Uint8Array;
  }
  | {
    /** Not applied. */
    ok: false;
    /** Indexes (into `checks`) of the checks that failed, ascending. */
    failedChecks: number[];
  };

/** The message Deno KV gives when sum/min/max meets a stored value that is not a u64. */
export function nonU64ValueMessage(op: "sum" | "min" | "max"): string {
  return `Failed to perform '${op}' mutation on a non-U64 value in the database`;
}

/** The message of a bounded sum whose result is out of range (without `clamp`). */
export const SUM_RANGE_MESSAGE = "The result of a Sum operation would exceed its range limit";

/** denokv's messages of a V8 sum that fails (they abort the whole atomic operation); the
 * `Cannot sum A with B` ones are {@link v8SumMismatchMessage}. */
export const V8_SUM_MESSAGES = {
  /** The operand or a bound is not a V8-serialized number or bigint. */
  badParameters: "Some of the parameters are not valid V8 values",
  /** A bound is not of the operand's type. */
  boundTypes: "Min/max parameters have different types than the operand",
  /** The stored value is not a number, bigint or u64. */
  unsupported: "unsupported value type",
  /** The stored V8 value does not deserialize. */
  invalidV8: "invalid v8 value",
} as const;

/** The operand kinds of a V8 sum, named as denokv names them. */
export type SumKind = "Number" | "BigInt" | "KvU64";

/** denokv's message of a sum of a stored `stored` with an operand `operand` of another type. */
export function v8SumMismatchMessage(stored: SumKind, operand: SumKind): string {
  return `Cannot sum ${stored} with ${operand}`;
}

/** Every message a V8 sum can fail with (the session cache stores them by index). */
export const V8_SUM_ALL_MESSAGES: readonly string[] = [
  ...Object.values(V8_SUM_MESSAGES),
  ...(["Number", "BigInt", "KvU64"] as const).flatMap((a) =>
    (["Number", "BigInt"] as const).map((b) => v8SumMismatchMessage(a, b))
  ),
];

/** A decoded sum operand or stored value. */
export type SumOperand =
  | { kind: "Number"; n: number }
  | { kind: "BigInt"; n: bigint }
  | { kind: "KvU64"; n: bigint };

/** Deserializes a V8 value as a sum operand (a number or bigint); undefined for anything else
 * (including bytes that do not deserialize). node:v8 does the decoding: every replica runs the
 * same code, so the result is deterministic. */
export function parseV8SumOperand(b: Uint8Array): SumOperand | undefined {
  let v: unknown;
  try {
    v = v8Deserialize(b);
  } catch {
    return undefined;
  }
  if (typeof v === "number") return { kind: "Number", n: v };
  if (typeof v === "bigint") return { kind: "BigInt", n: v };
  return undefined;
}

/** Checks a V8 sum's operand and bounds before it enters the log: the message of the first
 * problem (denokv's), or undefined. */
export function v8SumParameterProblem(
  value: Uint8Array,
  min: Uint8Array | undefined,
  max: Uint8Array | undefined,
): string | undefined {
  const op = parseV8SumOperand(value);
  const lo = min === undefined ? undefined : parseV8SumOperand(min);
  const hi = max === undefined ? undefined : parseV8SumOperand(max);
  if (!op || (min !== undefined && !lo) || (max !== undefined && !hi)) {
    return V8_SUM_MESSAGES.badParameters;
  }
  if ((lo && lo.kind !== op.kind) || (hi && hi.kind !== op.kind)) return V8_SUM_MESSAGES.boundTypes;
  return undefined;
}

/**
 * A V8 sum (Deno KV's M_SUM on a VE_V8 operand): what the stored value `current` becomes
 * (undefined: the key is absent, the result is the operand) — its encoding and bytes — or the
 * message that aborts the operation. number + number and bigint + bigint; a bigint operand
 * without bounds on a stored u64 adds to it as a u64 (denokv's backward compatibility, when the
 * operand fits a u64). With `min` / `max` a result outside them is clamped with `clamp`, else the
 * operation aborts with {@link SUM_RANGE_MESSAGE}.
 */
export function applyV8Sum(
  m: Extract<AtomicMutation, { type: "sum" }>,
  current: { encoding: ValueEncoding; value: Uint8Array } | undefined,
): { encoding: ValueEncoding; value: Uint8Array } | string {
  const problem = v8SumParameterProblem(m.value, m.min, m.max);
  if (problem !== undefined) return problem;
  const op = parseV8SumOperand(m.value)!;
  const lo = m.min === undefined ? undefined : parseV8SumOperand(m.min)!;
  const hi = m.max === undefined ? undefined : parseV8SumOperand(m.max)!;
  if (current === undefined) {
    return { encoding: ValueEncoding.V8, value: new Uint8Array(v8Serialize(op.n)) };
  }
  let old: SumOperand;
  if (current.encoding === ValueEncoding.LE64 && current.value.length === 8) {
    old = { kind: "KvU64", n: readU64le(current.value) };
  } else if (current.encoding === ValueEncoding.V8) {
    const p = parseV8SumOperand(current.value);
    if (!p) {
      let ok = true;
      try {
        v8Deserialize(current.value);
      } catch {
        ok = false;
      }
      return ok ? V8_SUM_MESSAGES.unsupported : V8_SUM_MESSAGES.invalidV8;
    }
    old = p;
  } else {
    return V8_SUM_MESSAGES.unsupported;
  }
  const bounded = lo !== undefined || hi !== undefined || m.clamp === true;
  if (old.kind === "KvU64" && op.kind === "BigInt" && !bounded && op.n >= 0n && op.n <= MAX_U64) {
    return { encoding: ValueEncoding.LE64, value: u64le((old.n + op.n) & MAX_U64) };
  }
  if (old.kind !== op.kind) return v8SumMismatchMessage(old.kind, op.kind);
  // deno-lint-ignore no-explicit-any
  let r: any = (old.n as any) + (op.n as any);
  if (lo !== undefined && r < lo.n) {
    if (!m.clamp) return SUM_RANGE_MESSAGE;
    r = lo.n;
  }
  if (hi !== undefined && r > hi.n) {
    if (!m.clamp) return SUM_RANGE_MESSAGE;
    r = hi.n;
  }
  return { encoding: ValueEncoding.V8, value: new Uint8Array(v8Serialize(r)) };
}

/** The versionstamp of the command at `position` inside the entry at `index` (its bytes from
 * `a`). */
export function makeVersionstamp(
  index: number,
  position = 0,
  a: (n: number) => Uint8Array = HEAP,
): Uint8Array {
  const out = a(VERSIONSTAMP_BYTES);
  writeVersionstamp(out, 0, index, position);
  return out;
}

/** Writes a versionstamp at `at` (no BigInt: `index` is a safe integer). */
function writeVersionstamp(out: Uint8Array, at: number, index: number, position: number): void {
  const hi = Math.floor(index / 0x100000000);
  const lo = index >>> 0;
  out[at] = hi >>> 24;
  out[at + 1] = (hi >>> 16) & 0xff;
  out[at + 2] = (hi >>> 8) & 0xff;
  out[at + 3] = hi & 0xff;
  out[at + 4] = lo >>> 24;
  out[at + 5] = (lo >>> 16) & 0xff;
  out[at + 6] = (lo >>> 8) & 0xff;
  out[at + 7] = lo & 0xff;
  out[at + 8] = position >>> 8;
  out[at + 9] = position & 0xff;
}

/** The Raft index a versionstamp names (its first 8 bytes, big-endian; no BigInt: beyond 2^53
 * the nearest double, as `Number` of the u64 would give). */
export function versionstampIndex(vs: Uint8Array): number {
  const hi = ((vs[0] << 24) | (vs[1] << 16) | (vs[2] << 8) | vs[3]) >>> 0;
  const lo = ((vs[4] << 24) | (vs[5] << 16) | (vs[6] << 8) | vs[7]) >>> 0;
  return hi * 0x1_0000_0000 + lo;
}

/** The position a versionstamp names inside its entry (its last 2 bytes, big-endian). */
export function versionstampPosition(vs: Uint8Array): number {
  return (vs[8] << 8) | vs[9];
}

/** The position of {@link throughVersionstamp}: above every command's (a batch entry holds at
 * most 65,535 commands, positions 0 to 65,534). */
export const THROUGH_POSITION = 0xffff;

/** The versionstamp of a state through the entry at `index`: every write of that entry or before
 * has a smaller one, every later write a larger one (a watch's or an export's position). */
export function throughVersionstamp(index: number): Uint8Array {
  return makeVersionstamp(index, THROUGH_POSITION);
}

/** A versionstamp as 20 lowercase hex digits. */
export function versionstampHex(vs: Uint8Array): string {
  let s = "";
  for (const b of vs) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Parses 20 hex digits; throws RangeError otherwise. */
export function parseVersionstamp(hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{20}$/.test(hex)) {
    throw new RangeError(`a versionstamp is 20 hex digits, not "${hex}"`);
  }
  const out = new Uint8Array(VERSIONSTAMP_BYTES);
  for (let i = 0; i < VERSIONSTAMP_BYTES; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Compares two versionstamps (byte order = commit order). */
export function compareVersionstamps(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < VERSIONSTAMP_BYTES; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** Whether `e` is a valid encoding tag. */
export function isValueEncoding(e: number): e is ValueEncoding {
  return e === ValueEncoding.V8 || e === ValueEncoding.LE64 || e === ValueEncoding.BYTES;
}

/**
 * The key a `setSuffixVersionstampedKey` mutation writes: `key` followed by the versionstamp as a
 * key-tuple string element (tag 0x02, the 20 hex digits, terminator 0x00), as Deno KV does.
 */
export function suffixVersionstampedKey(key: Uint8Array, vs: Uint8Array): Uint8Array {
  const hex = versionstampHex(vs);
  const out = new Uint8Array(key.length + 2 + hex.length);
  out.set(key);
  out[key.length] = 0x02;
  for (let i = 0; i < hex.length; i++) out[key.length + 1 + i] = hex.charCodeAt(i);
  out[out.length - 1] = 0x00;
  return out;
}

/** Bytes a suffix-versionstamped key adds to its prefix. */
export const VERSIONSTAMP_SUFFIX_BYTES = 22;

/** Checks an atomic operation against the `atomic_*` limits of config/limits.ts (a
 * versionstamped key counts with the bytes the commit adds); throws its `LimitError`. */
export function checkAtomicLimits(op: AtomicOperation, limits: AtomicLimits): void {
  checkAtomic({
    checks: op.checks,
    mutations: op.mutations.map((m) => ({
      key: m.key,
      value: m.type === "delete" ? undefined : m.value,
      keySuffixBytes: m.type === "setSuffixVersionstampedKey" ? VERSIONSTAMP_SUFFIX_BYTES : 0,
    })),
  }, limits);
}

/** A u64 as 8 bytes little-endian. */
export function u64le(n: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
  return out;
}

/** Reads 8 bytes little-endian as a u64; RangeError for another length. */
export function readU64le(b: Uint8Array): bigint {
  if (b.length !== 8) throw new RangeError(`a u64 value has 8 bytes, not ${b.length}`);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

const MAX_U64 = (1n << 64n) - 1n;

/**
 * What sum/min/max make of the current u64 (`current`; undefined: the key is absent, the result
 * is the operand) and the operand. A sum wraps modulo 2^64 unless it has bounds: then a result
 * outside `[min, max]` (computed without wrapping) is clamped with `clamp`, or is an error (a
 * string: the operation aborts).
 */
export function applyU64(
  m: Extract<AtomicMutation, { type: "sum" | "min" | "max" }>,
  current: bigint | undefined,
): bigint | string {
  const operand = readU64le(m.value);
  if (m.type !== "sum") {
    if (current === undefined) return operand;
    if (m.type === "min") return operand < current ? operand : current;
    return operand > current ? operand : current;
  }
  const raw = (current ?? 0n) + operand;
  if (m.min === undefined && m.max === undefined) return raw & MAX_U64;
  const lo = m.min !== undefined ? readU64le(m.min) : 0n;
  const hi = m.max !== undefined ? readU64le(m.max) : MAX_U64;
  if (raw < lo) return m.clamp ? lo : SUM_RANGE_MESSAGE;
  if (raw > hi) return m.clamp ? hi : SUM_RANGE_MESSAGE;
  return raw;
}

/** A user record as stored. */
export interface StoredRecord {
  /** The value's encoding. */
  encoding: ValueEncoding;
  /** The write's versionstamp. */
  versionstamp: Uint8Array;
  /** Expiry time (ms), if any. */
  expireAt?: number;
  /** The value. */
  value: Uint8Array;
}

const EXPIRES = 0x80;

/** Encodes a record (header and value in one store value; its bytes from `a`). */
export function encodeRecord(r: StoredRecord, a: (n: number) => Uint8Array = HEAP): Uint8Array {
  const exp = r.expireAt !== undefined && r.expireAt > 0;
  if (exp) {
    const w = new ByteWriter(1 + VERSIONSTAMP_BYTES + 8 + r.value.length);
    w.u8(r.encoding | EXPIRES);
    w.raw(r.versionstamp);
    w.u64(r.expireAt!);
    w.raw(r.value);
    return w.finish();
  }
  // The common case (every put) in one allocation and two copies.
  const v = r.value, vs = r.versionstamp;
  const out = a(1 + VERSIONSTAMP_BYTES + v.length);
  out[0] = r.encoding;
  for (let i = 0; i < VERSIONSTAMP_BYTES; i++) out[1 + i] = vs[i];
  if (v.length > 32) out.set(v, 1 + VERSIONSTAMP_BYTES);
  else for (let i = 0; i < v.length; i++) out[1 + VERSIONSTAMP_BYTES + i] = v[i];
  return out;
}

/** Decodes a record; {@link DecodeError} for malformed bytes. */
export function decodeRecord(b: Uint8Array): StoredRecord {
  const r = new ByteReader(b, "record");
  const tag = r.u8();
  const encoding = tag & 0x7f;
  if (!isValueEncoding(encoding)) throw new DecodeError("record", `unknown encoding ${encoding}`);
  const versionstamp = r.raw(VERSIONSTAMP_BYTES);
  const rec: StoredRecord = { encoding, versionstamp, value: new Uint8Array(0) };
  if (tag & EXPIRES) rec.expireAt = r.u64();
  rec.value = r.raw(r.remaining);
  return rec;
}

/**
 * The value of a record that has no expiry, without decoding the rest of its header (a view
 * of `b`); undefined for a record with an expiry (decode it: {@link decodeRecord}).
 * {@link DecodeError} for malformed bytes, as decodeRecord.
 */
export function plainRecordValue(b: Uint8Array): Uint8Array | undefined {
  if (b.length < 1 + VERSIONSTAMP_BYTES) return decodeRecord(b).value; // throws
  const tag = b[0];
  if (tag & EXPIRES) return undefined;
  if (!isValueEncoding(tag)) throw new DecodeError("record", `unknown encoding ${tag}`);
  return b.subarray(1 + VERSIONSTAMP_BYTES);
}

/** Whether a record is expired by the state machine's clock `clock` (ms). */
export function isExpired(rec: { expireAt?: number }, clock: number): boolean {
  return rec.expireAt !== undefined && rec.expireAt <= clock;
}
