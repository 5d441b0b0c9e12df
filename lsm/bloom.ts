/**
 * Bloom filter over user keys (LevelDB-compatible shape): a bit array followed
 * by one byte holding the probe count k. Double hashing derives k probes from
 * one 32-bit hash.
 * @module
 */

/** 32-bit hash of `data[off, off+len)` (murmur-like, as in LevelDB). */
export function bloomHash(data: Uint8Array, off = 0, len = data.length - off): number {
  const m = 0xc6a4a793;
  let h = (0xbc9f1d34 ^ Math.imul(len, m)) | 0;
  let i = off;
  const end = off + len;
  while (i + 4 <= end) {
    const w = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    h = Math.imul((h + w) | 0, m);
    h ^= h >>> 16;
    i += 4;
  }
  const r = end - i;
  if (r > 0) {
    if (r === 3) h = (h + (data[i + 2] << 16)) | 0;
    if (r >= 2) h = (h + (data[i + 1] << 8)) | 0;
    h = Math.imul((h + data[i]) | 0, m);
    h ^= h >>> 24;
  }
  return h >>> 0;
}

/** Builds a filter holding the given key hashes. */
export function buildBloom(hashes: Uint32Array, n: number, bitsPerKey: number): Uint8Array {
  let k = Math.round(bitsPerKey * 0.69);
  if (k < 1) k = 1;
  if (k > 30) k = 30;
  let bits = n * bitsPerKey;
  if (bits < 64) bits = 64;
  const bytes = (bits + 7) >>> 3;
  bits = bytes * 8;
  const out = new Uint8Array(bytes + 1);
  out[bytes] = k;
  for (let i = 0; i < n; i++) {
    let h = hashes[i];
    const delta = ((h >>> 17) | (h << 15)) >>> 0;
    for (let j = 0; j < k; j++) {
      const pos = h % bits;
      out[pos >>> 3] |= 1 << (pos & 7);
      h = (h + delta) >>> 0;
    }
  }
  return out;
}

/** True when the filter may contain a key with hash `h` (false = definitely absent). */
export function bloomMayContain(filter: Uint8Array, h: number): boolean {
  const len = filter.length;
  if (len < 2) return true; // no filter: everything may match
  const bits = (len - 1) * 8;
  const k = filter[len - 1];
  if (k > 30) return true; // reserved for future encodings
  const delta = ((h >>> 17) | (h << 15)) >>> 0;
  for (let j = 0; j < k; j++) {
    const pos = h % bits;
    if ((filter[pos >>> 3] & (1 << (pos & 7))) === 0) return false;
    h = (h + delta) >>> 0;
  }
  return true;
}
