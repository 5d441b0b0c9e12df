/**
 * The Deno KV key codec: a key is a tuple of parts, encoded so that byte order is the order of
 * the tuples (the FoundationDB tuple layer, as Deno encodes it). Deno's own client and gokv's
 * `openKv` client (client/kv.ts) encode keys with it; the server treats keys as opaque bytes
 * (except `M_SET_SUFFIX_VERSIONSTAMPED_KEY`, which appends the versionstamp as a string part:
 * storage/kv_model.ts `suffixVersionstampedKey`).
 *
 * | part         | encoding                                                              |
 * |--------------|-----------------------------------------------------------------------|
 * | `Uint8Array` | `0x01`, the bytes with every `0x00` written `0x00 0xff`, then `0x00`  |
 * | `string`     | `0x02`, its UTF-8 escaped the same way, then `0x00`                   |
 * | `bigint`     | `0x14` for 0; `0x14 ± n` then the n big-endian magnitude bytes (n ≤ 8; negative: ones' complement); `0x1d n` / `0x0b ~n` then n bytes for n up to 255 |
 * | `number`     | `0x21` then the IEEE 754 bits big-endian, all flipped when negative, else the sign bit flipped (NaN canonical) |
 * | `false`/`true` | `0x26` / `0x27`                                                     |
 *
 * So parts of different types order bytes < strings < integers < numbers < false < true.
 *
 * @module
 */

/** One part of a key, as in `Deno.KvKeyPart`. */
export type KvKeyPart = Uint8Array | string | number | bigint | boolean;
/** A key: a tuple of parts, as in `Deno.KvKey`. */
export type KvKey = readonly KvKeyPart[];

const BYTES = 0x01;
const STRING = 0x02;
const NEGINTSTART = 0x0b;
const INTZERO = 0x14;
const POSINTEND = 0x1d;
const DOUBLE = 0x21;
const FALSE = 0x26;
const TRUE = 0x27;
const ESCAPE = 0xff;
/** Integers of up to this many magnitude bytes have their length in the tag. */
const SHORT_INT_BYTES = 8;
/** The largest integer magnitude, in bytes. */
const MAX_INT_BYTES = 255;

/** A key that cannot be encoded or bytes that are not an encoded key. */
export class KvKeyError extends TypeError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "KvKeyError";
  }
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

class Out {
  buf = new Uint8Array(64);
  len = 0;
  push(b: number): void {
    if (this.len === this.buf.length) this.grow(1);
    this.buf[this.len++] = b;
  }
  pushAll(bytes: Uint8Array): void {
    if (this.len + bytes.length > this.buf.length) this.grow(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  escaped(bytes: Uint8Array): void {
    for (const b of bytes) {
      this.push(b);
      if (b === 0) this.push(ESCAPE);
    }
    this.push(0);
  }
  grow(n: number): void {
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

function magnitudeBytes(n: bigint): Uint8Array {
  let hex = n.toString(16);
  if (hex.length % 2) hex = "0" + hex;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function encodeBigint(out: Out, v: bigint): void {
  if (v === 0n) {
    out.push(INTZERO);
    return;
  }
  const negative = v < 0n;
  const mag = magnitudeBytes(negative ? -v : v);
  const n = mag.length;
  if (n > MAX_INT_BYTES) {
    throw new KvKeyError(`a bigint key part needs ${n} bytes; at most ${MAX_INT_BYTES} fit`);
  }
  if (negative) {
    if (n <= SHORT_INT_BYTES) out.push(INTZERO - n);
    else {
      out.push(NEGINTSTART);
      out.push(n ^ 0xff);
    }
    for (const b of mag) out.push(~b & 0xff);
  } else {
    if (n <= SHORT_INT_BYTES) out.push(INTZERO + n);
    else {
      out.push(POSINTEND);
      out.push(n);
    }
    out.pushAll(mag);
  }
}

function encodeDouble(out: Out, v: number): void {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  if (Number.isNaN(v)) {
    // Canonical NaN (JavaScript has one NaN value; its sign cannot be observed).
    dv.setUint32(0, 0x7ff80000);
  } else {
    dv.setFloat64(0, v);
  }
  if (b[0] & 0x80) {
    for (let i = 0; i < 8; i++) b[i] ^= 0xff;
  } else {
    b[0] ^= 0x80;
  }
  out.push(DOUBLE);
  out.pushAll(b);
}

/** Encodes a key (a tuple of parts) to its ordered bytes. */
export function encodeKey(key: KvKey): Uint8Array {
  if (!Array.isArray(key)) throw new KvKeyError("a key must be an array of key parts");
  const out = new Out();
  for (const part of key) {
    if (part instanceof Uint8Array) {
      out.push(BYTES);
      out.escaped(part);
    } else if (typeof part === "string") {
      out.push(STRING);
      out.escaped(utf8.encode(part));
    } else if (typeof part === "bigint") {
      encodeBigint(out, part);
    } else if (typeof part === "number") {
      encodeDouble(out, part);
    } else if (part === false) {
      out.push(FALSE);
    } else if (part === true) {
      out.push(TRUE);
    } else {
      throw new KvKeyError(`a key part must be Uint8Array, string, number, bigint or boolean`);
    }
  }
  return out.finish();
}

/** Reads an escaped byte string from `at` to its terminating 0x00; returns it and the next
 * position. */
function unescape(b: Uint8Array, at: number): [Uint8Array, number] {
  const out: number[] = [];
  for (let i = at; i < b.length; i++) {
    if (b[i] === 0) {
      if (b[i + 1] === ESCAPE) {
        out.push(0);
        i++;
        continue;
      }
      return [new Uint8Array(out), i + 1];
    }
    out.push(b[i]);
  }
  throw new KvKeyError("unterminated bytes or string in key");
}

function take(b: Uint8Array, at: number, n: number): Uint8Array {
  if (at + n > b.length) throw new KvKeyError("truncated key");
  return b.subarray(at, at + n);
}

function bigintOf(mag: Uint8Array, negative: boolean): bigint {
  let v = 0n;
  for (const x of mag) v = (v << 8n) | BigInt(negative ? ~x & 0xff : x);
  return negative ? -v : v;
}

/** Decodes the bytes of an encoded key back into its parts ({@link KvKeyError} when they are
 * not an encoded key). */
export function decodeKey(bytes: Uint8Array): KvKeyPart[] {
  const key: KvKeyPart[] = [];
  let i = 0;
  while (i < bytes.length) {
    const tag = bytes[i++];
    if (tag === BYTES || tag === STRING) {
      const [raw, next] = unescape(bytes, i);
      i = next;
      if (tag === BYTES) key.push(raw);
      else {
        try {
          key.push(utf8Strict.decode(raw));
        } catch {
          throw new KvKeyError("a string key part is not valid UTF-8");
        }
      }
    } else if (tag >= INTZERO && tag <= INTZERO + SHORT_INT_BYTES) {
      const n = tag - INTZERO;
      key.push(bigintOf(take(bytes, i, n), false));
      i += n;
    } else if (tag >= INTZERO - SHORT_INT_BYTES && tag < INTZERO) {
      const n = INTZERO - tag;
      key.push(bigintOf(take(bytes, i, n), true));
      i += n;
    } else if (tag === POSINTEND || tag === NEGINTSTART) {
      const raw = take(bytes, i, 1)[0];
      const n = tag === POSINTEND ? raw : raw ^ 0xff;
      key.push(bigintOf(take(bytes, i + 1, n), tag === NEGINTSTART));
      i += 1 + n;
    } else if (tag === DOUBLE) {
      const b = take(bytes, i, 8).slice();
      i += 8;
      if (b[0] & 0x80) b[0] ^= 0x80;
      else for (let j = 0; j < 8; j++) b[j] ^= 0xff;
      key.push(new DataView(b.buffer).getFloat64(0));
    } else if (tag === FALSE) {
      key.push(false);
    } else if (tag === TRUE) {
      key.push(true);
    } else {
      throw new KvKeyError(`invalid key part tag 0x${tag.toString(16).padStart(2, "0")}`);
    }
  }
  return key;
}
