/**
 * Internal keys: user key + 8-byte trailer (56-bit sequence, 8-bit kind). They
 * order by user key ascending, then sequence descending, so the newest version
 * of a key comes first.
 * @module
 */
import { compareRange } from "./bytes.ts";

/** Entry kind: tombstone. */
export const KIND_DELETE = 0;
/** Entry kind: value. */
export const KIND_PUT = 1;
/** Largest sequence number usable (numbers stay exact below 2^53). */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
/** Length of the internal-key trailer. */
export const TRAILER = 8;

/** Writes the trailer for (seq, kind) at `off`. */
export function writeTrailer(buf: Uint8Array, off: number, seq: number, kind: number): void {
  const hi = Math.floor(seq / 16777216);
  const lo = seq - hi * 16777216;
  buf[off] = hi >>> 24;
  buf[off + 1] = hi >>> 16;
  buf[off + 2] = hi >>> 8;
  buf[off + 3] = hi;
  buf[off + 4] = lo >>> 16;
  buf[off + 5] = lo >>> 8;
  buf[off + 6] = lo;
  buf[off + 7] = kind;
}

/** Reads the sequence number of the trailer at `off`. */
export function readTrailerSeq(buf: Uint8Array, off: number): number {
  const hi = ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
  return hi * 16777216 + ((buf[off + 4] << 16) | (buf[off + 5] << 8) | buf[off + 6]);
}

/** Builds an internal key. */
export function makeInternalKey(userKey: Uint8Array, seq: number, kind: number): Uint8Array {
  const k = new Uint8Array(userKey.length + TRAILER);
  k.set(userKey);
  writeTrailer(k, userKey.length, seq, kind);
  return k;
}

/** User-key part of an internal key (a view). */
export function userKeyOf(ikey: Uint8Array): Uint8Array {
  return ikey.subarray(0, ikey.length - TRAILER);
}

/** Sequence number of an internal key. */
export function seqOf(ikey: Uint8Array): number {
  return readTrailerSeq(ikey, ikey.length - TRAILER);
}

/** Kind of an internal key. */
export function kindOf(ikey: Uint8Array): number {
  return ikey[ikey.length - 1];
}

/**
 * Compares internal key `a[aOff, aOff+aLen)` (trailer included) with the
 * internal key formed by `(userKey, seq)`; kinds are not compared.
 */
export function compareInternalTo(
  a: Uint8Array,
  aOff: number,
  aLen: number,
  userKey: Uint8Array,
  seq: number,
): number {
  const c = compareRange(a, aOff, aLen - TRAILER, userKey, 0, userKey.length);
  if (c !== 0) return c;
  const s = readTrailerSeq(a, aOff + aLen - TRAILER);
  return s > seq ? -1 : s < seq ? 1 : 0;
}

/** Compares two whole internal keys. */
export function compareInternal(a: Uint8Array, b: Uint8Array): number {
  const c = compareRange(a, 0, a.length - TRAILER, b, 0, b.length - TRAILER);
  if (c !== 0) return c;
  const sa = readTrailerSeq(a, a.length - TRAILER);
  const sb = readTrailerSeq(b, b.length - TRAILER);
  if (sa !== sb) return sa > sb ? -1 : 1;
  return b[b.length - 1] - a[a.length - 1];
}

/** Compares `userKey` with the user-key part of internal key `ikey` (no allocation). */
export function compareUserToInternal(userKey: Uint8Array, ikey: Uint8Array): number {
  return compareRange(userKey, 0, userKey.length, ikey, 0, ikey.length - TRAILER);
}
