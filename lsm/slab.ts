/**
 * Copy-out allocator for values and keys handed to callers. Small copies are
 * carved from shared 32 KiB slabs (one ArrayBuffer allocation per slab instead
 * of one per result, several times cheaper in V8); large ones get their own buffer.
 * A returned array is a view: its `byteOffset` may be non-zero.
 * @module
 */

const SLAB = 32 * 1024;
const SMALL = 1024;
let slab = new Uint8Array(SLAB);
let used = 0;

/** Returns a private copy of `src[off, off+len)`. */
export function copyOut(src: Uint8Array, off: number, len: number): Uint8Array {
  if (len > SMALL) return src.slice(off, off + len);
  if (used + len > SLAB) {
    slab = new Uint8Array(SLAB);
    used = 0;
  }
  const s = slab;
  const start = used;
  if (len <= 32) {
    for (let i = 0; i < len; i++) s[start + i] = src[off + i];
  } else {
    s.set(src.subarray(off, off + len), start);
  }
  used = (start + len + 7) & ~7;
  return new Uint8Array(s.buffer, start, len);
}

/** Private copy of a whole array. */
export function copyBytes(src: Uint8Array): Uint8Array {
  return copyOut(src, 0, src.length);
}
