/**
 * Iterator over one decoded block (format in block_builder.ts). Malformed
 * blocks raise {@linkcode CorruptionError} naming the table file and offset.
 * @module
 */
import { getVarint, readU32, varintOut } from "./bytes.ts";
import { CorruptionError } from "./errors.ts";
import { compareInternalTo, MAX_SEQ, readTrailerSeq, TRAILER } from "./internal_key.ts";
import type { InternalIterator } from "./iterator.ts";

/** Cursor over a block's entries. */
export class BlockIterator implements InternalIterator {
  private restartsOff = 0;
  private numRestarts = 0;
  private off = -1; // offset of current entry; -1 = invalid
  private nextOff = 0;
  private key: Uint8Array = new Uint8Array(64);
  private keyLen = 0;
  private valOff = 0;
  private valLen = 0;
  private uk: Uint8Array | undefined;

  constructor(
    private data: Uint8Array,
    private readonly path: string,
    private blockOffset: number,
  ) {
    this.reset(data, blockOffset);
  }

  /** Re-targets this iterator at another block of the same file (unpositioned). */
  reset(data: Uint8Array, blockOffset: number): void {
    this.data = data;
    this.blockOffset = blockOffset;
    this.off = -1;
    this.keyLen = 0;
    this.uk = undefined;
    if (data.length < 4) this.corrupt(0, "block too short");
    this.numRestarts = readU32(data, data.length - 4);
    this.restartsOff = data.length - 4 - this.numRestarts * 4;
    if (this.numRestarts === 0 || this.restartsOff < 0) this.corrupt(0, "bad restart count");
  }

  private corrupt(at: number, msg: string): never {
    throw new CorruptionError(this.path, this.blockOffset + at, msg);
  }

  private restartPoint(i: number): number {
    const r = readU32(this.data, this.restartsOff + i * 4);
    if (r >= this.restartsOff) this.corrupt(this.restartsOff + i * 4, "bad restart offset");
    return r;
  }

  /** Decodes the entry at `off` (previous key must be in `key` for prefix sharing). */
  private parseAt(off: number): void {
    const d = this.data;
    const end = this.restartsOff;
    if (off >= end) {
      this.off = -1;
      return;
    }
    if (!getVarint(d, off, end)) this.corrupt(off, "bad entry header");
    const shared = varintOut.value;
    if (!getVarint(d, varintOut.offset, end)) this.corrupt(off, "bad entry header");
    const unshared = varintOut.value;
    if (!getVarint(d, varintOut.offset, end)) this.corrupt(off, "bad entry header");
    const vlen = varintOut.value;
    const p = varintOut.offset;
    if (shared > this.keyLen || p + unshared + vlen > end || shared + unshared < TRAILER) {
      this.corrupt(off, "bad entry lengths");
    }
    const klen = shared + unshared;
    if (klen > this.key.length) {
      const nk = new Uint8Array(klen * 2);
      nk.set(this.key.subarray(0, shared));
      this.key = nk;
    }
    const key = this.key;
    for (let i = 0; i < unshared; i++) key[shared + i] = d[p + i];
    this.uk = undefined;
    this.keyLen = klen;
    this.valOff = p + unshared;
    this.valLen = vlen;
    this.off = off;
    this.nextOff = this.valOff + vlen;
  }

  /** Compares the full key stored at restart `i` with (key, seq). */
  private cmpRestart(i: number, key: Uint8Array, seq: number): number {
    const d = this.data;
    const off = this.restartPoint(i);
    const end = this.restartsOff;
    if (!getVarint(d, off, end) || varintOut.value !== 0) this.corrupt(off, "bad restart entry");
    if (!getVarint(d, varintOut.offset, end)) this.corrupt(off, "bad restart entry");
    const klen = varintOut.value;
    if (!getVarint(d, varintOut.offset, end)) this.corrupt(off, "bad restart entry");
    const p = varintOut.offset;
    if (klen < TRAILER || p + klen > end) this.corrupt(off, "bad restart entry");
    return compareInternalTo(d, p, klen, key, seq);
  }

  valid(): boolean {
    return this.off >= 0;
  }
  seekToFirst(): void {
    this.keyLen = 0;
    this.parseAt(0);
  }
  /** Index of the last restart whose key < (key, seq), or 0. */
  private restartBefore(key: Uint8Array, seq: number): number {
    let lo = 0;
    let hi = this.numRestarts - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.cmpRestart(mid, key, seq) < 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
  seek(key: Uint8Array, seq: number): void {
    const r = this.restartBefore(key, seq);
    this.keyLen = 0;
    this.parseAt(this.restartPoint(r));
    while (this.off >= 0 && compareInternalTo(this.key, 0, this.keyLen, key, seq) < 0) {
      this.parseAt(this.nextOff);
    }
  }
  seekLT(key: Uint8Array): void {
    const r = this.restartBefore(key, MAX_SEQ);
    this.keyLen = 0;
    this.parseAt(this.restartPoint(r));
    if (this.off < 0 || compareInternalTo(this.key, 0, this.keyLen, key, MAX_SEQ) >= 0) {
      this.off = -1;
      return;
    }
    for (;;) {
      const save = this.off;
      const saveKey = this.key.slice(0, this.keyLen);
      this.parseAt(this.nextOff);
      if (this.off < 0 || compareInternalTo(this.key, 0, this.keyLen, key, MAX_SEQ) >= 0) {
        this.key.set(saveKey);
        this.keyLen = saveKey.length;
        this.uk = undefined;
        this.parseAt2(save);
        return;
      }
    }
  }
  /** Re-parses the entry at `off` whose full key is already in `key`. */
  private parseAt2(off: number): void {
    const d = this.data;
    getVarint(d, off, this.restartsOff);
    getVarint(d, varintOut.offset, this.restartsOff);
    const unshared = varintOut.value;
    getVarint(d, varintOut.offset, this.restartsOff);
    const vlen = varintOut.value;
    this.valOff = varintOut.offset + unshared;
    this.valLen = vlen;
    this.off = off;
    this.nextOff = this.valOff + vlen;
  }
  seekToLast(): void {
    this.keyLen = 0;
    this.parseAt(this.restartPoint(this.numRestarts - 1));
    while (this.off >= 0 && this.nextOff < this.restartsOff) this.parseAt(this.nextOff);
  }
  next(): void {
    this.parseAt(this.nextOff);
  }
  /** Full internal key of the current entry (a view). */
  internalKey(): Uint8Array {
    return this.key.subarray(0, this.keyLen);
  }
  userKey(): Uint8Array {
    return this.uk ??= this.key.subarray(0, this.keyLen - TRAILER);
  }
  seq(): number {
    return readTrailerSeq(this.key, this.keyLen - TRAILER);
  }
  kind(): number {
    return this.key[this.keyLen - 1];
  }
  value(): Uint8Array {
    return this.data.subarray(this.valOff, this.valOff + this.valLen);
  }
}
