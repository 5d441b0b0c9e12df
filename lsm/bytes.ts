/**
 * Byte helpers shared by every format: comparison, UTF-8 coercion, varints and
 * a growable output buffer.
 * @module
 */

const encoder = new TextEncoder();

/** Accepts a Uint8Array or a string (UTF-8 encoded). */
export type Bytes = Uint8Array | string;

/** Converts a key/value argument to bytes (strings are UTF-8 encoded). */
export function toBytes(b: Bytes): Uint8Array {
  return typeof b === "string" ? encoder.encode(b) : b;
}

/** Lexicographic unsigned byte comparison: negative, zero or positive. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** Compares `a[aOff, aOff+aLen)` with `b[bOff, bOff+bLen)`. */
export function compareRange(
  a: Uint8Array,
  aOff: number,
  aLen: number,
  b: Uint8Array,
  bOff: number,
  bLen: number,
): number {
  const n = aLen < bLen ? aLen : bLen;
  for (let i = 0; i < n; i++) {
    const d = a[aOff + i] - b[bOff + i];
    if (d !== 0) return d;
  }
  return aLen - bLen;
}

/** True when the two arrays hold the same bytes. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when `key` starts with `prefix`. */
export function hasPrefix(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

/**
 * Smallest key strictly greater than every key with the given prefix, or
 * undefined when no such key exists (prefix is all 0xff).
 */
export function prefixSuccessor(prefix: Uint8Array): Uint8Array | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const out = prefix.slice(0, i + 1);
      out[i]++;
      return out;
    }
  }
  return undefined;
}

/** Number of bytes a varint encoding of `v` (0 <= v < 2^53) takes. */
export function varintLength(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes `v` (0 <= v < 2^53) as a LEB128 varint at `off`; returns the new offset. */
export function putVarint(buf: Uint8Array, off: number, v: number): number {
  if (v < 0x80) {
    buf[off] = v;
    return off + 1;
  }
  while (v >= 0x80) {
    buf[off++] = (v & 0x7f) | 0x80;
    v = v < 0x80000000 ? v >>> 7 : Math.floor(v / 128);
  }
  buf[off++] = v;
  return off;
}

/** Result holder for {@linkcode getVarint} (avoids allocating per call). */
export const varintOut = { value: 0, offset: 0 };

/**
 * Reads a varint at `off` not past `end`. Stores value/offset in
 * {@linkcode varintOut}; returns false when the encoding is truncated or too long.
 */
export function getVarint(buf: Uint8Array, off: number, end: number): boolean {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 8; i++) {
    if (off >= end) return false;
    const b = buf[off++];
    result += (b & 0x7f) * mul;
    if (b < 0x80) {
      varintOut.value = result;
      varintOut.offset = off;
      return true;
    }
    mul *= 128;
  }
  return false;
}

/** A growable byte buffer used by encoders. */
export class ByteWriter {
  buf: Uint8Array;
  len = 0;
  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
  }
  /** Ensures room for `n` more bytes. */
  reserve(n: number): void {
    const need = this.len + n;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
  }
  /** Appends raw bytes. */
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** Appends a varint. */
  varint(v: number): void {
    this.reserve(10);
    this.len = putVarint(this.buf, this.len, v);
  }
  /** Appends one byte. */
  u8(v: number): void {
    this.reserve(1);
    this.buf[this.len++] = v;
  }
  /** Appends a big-endian uint32. */
  u32(v: number): void {
    this.reserve(4);
    writeU32(this.buf, this.len, v);
    this.len += 4;
  }
  /** Appends a length-prefixed byte string. */
  lenBytes(b: Uint8Array): void {
    this.varint(b.length);
    this.bytes(b);
  }
  /** Resets to empty, keeping capacity. */
  reset(): void {
    this.len = 0;
  }
  /** A view of the written bytes (valid until the next write). */
  view(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
  /** A copy of the written bytes. */
  toBytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Writes a big-endian uint32. */
export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = v >>> 16;
  buf[off + 2] = v >>> 8;
  buf[off + 3] = v;
}

/** Reads a big-endian uint32. */
export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

/** Writes a big-endian uint64 from a number < 2^53. */
export function writeU64(buf: Uint8Array, off: number, v: number): void {
  writeU32(buf, off, Math.floor(v / 4294967296));
  writeU32(buf, off + 4, v >>> 0);
}

/** Reads a big-endian uint64 as a number (exact below 2^53). */
export function readU64(buf: Uint8Array, off: number): number {
  return readU32(buf, off) * 4294967296 + readU32(buf, off + 4);
}
