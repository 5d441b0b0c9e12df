/**
 * Builds a data or index block: prefix-compressed internal keys with restart
 * points every `interval` entries (see sstable_format.ts / FORMAT.md).
 * Entry: varint shared | varint unshared | varint valueLen | key delta | value.
 * Tail: restart offsets u32 BE × n | n u32 BE.
 * @module
 */
import { ByteWriter, putVarint, writeU32 } from "./bytes.ts";
import { TRAILER, writeTrailer } from "./internal_key.ts";

/** Incremental block builder. */
export class BlockBuilder {
  private out = new ByteWriter(8192);
  private restarts: number[] = [0];
  private counter = 0;
  private last = new Uint8Array(256);
  private lastLen = 0;
  /** Entries in the block. */
  entries = 0;

  constructor(private readonly interval: number) {}

  /** Appends an entry whose internal key is (userKey, seq, kind); keys must ascend. */
  add(userKey: Uint8Array, seq: number, kind: number, value: Uint8Array): void {
    const ulen = userKey.length;
    const klen = ulen + TRAILER;
    let shared = 0;
    const lastUser = this.lastLen - TRAILER;
    if (this.counter < this.interval) {
      const n = lastUser < ulen ? lastUser : ulen;
      const last = this.last;
      while (shared < n && last[shared] === userKey[shared]) shared++;
    } else {
      this.restarts.push(this.out.len);
      this.counter = 0;
    }
    if (klen > this.last.length) {
      const nl = new Uint8Array(klen * 2);
      nl.set(this.last.subarray(0, this.lastLen));
      this.last = nl;
    }
    const last = this.last;
    for (let i = shared; i < ulen; i++) last[i] = userKey[i];
    writeTrailer(last, ulen, seq, kind);
    this.lastLen = klen;
    const unshared = klen - shared;
    const vlen = value.length;
    const o = this.out;
    o.reserve(15 + unshared + vlen);
    const buf = o.buf;
    let p = putVarint(buf, o.len, shared);
    p = putVarint(buf, p, unshared);
    p = putVarint(buf, p, vlen);
    for (let i = shared; i < klen; i++) buf[p++] = last[i];
    if (vlen <= 32) {
      for (let i = 0; i < vlen; i++) buf[p + i] = value[i];
    } else {
      buf.set(value, p);
    }
    o.len = p + vlen;
    this.counter++;
    this.entries++;
  }

  /** Appends an entry with a raw internal key (used for index blocks). */
  addRaw(ikey: Uint8Array, value: Uint8Array): void {
    const uk = ikey.subarray(0, ikey.length - TRAILER);
    const t = ikey.subarray(ikey.length - TRAILER);
    const seq = (((t[0] << 24) | (t[1] << 16) | (t[2] << 8) | t[3]) >>> 0) * 16777216 +
      ((t[4] << 16) | (t[5] << 8) | t[6]);
    this.add(uk, seq, t[7], value);
  }

  /** Estimated size of the finished block. */
  get size(): number {
    return this.out.len + this.restarts.length * 4 + 4;
  }

  /** The last key added (a view of the internal key). */
  lastKey(): Uint8Array {
    return this.last.subarray(0, this.lastLen);
  }

  /** Finishes the block; the returned view is valid until reset(). */
  finish(): Uint8Array {
    const o = this.out;
    o.reserve(this.restarts.length * 4 + 4);
    for (const r of this.restarts) {
      writeU32(o.buf, o.len, r);
      o.len += 4;
    }
    writeU32(o.buf, o.len, this.restarts.length);
    o.len += 4;
    return o.view();
  }

  /** Clears the builder for the next block. */
  reset(): void {
    this.out.reset();
    this.restarts = [0];
    this.counter = 0;
    this.lastLen = 0;
    this.entries = 0;
  }
}
