/**
 * CRC32C (Castagnoli) with slicing-by-8 tables, plus LevelDB-style masking so a
 * CRC stored inside checksummed data does not weaken the outer checksum.
 * @module
 */

const POLY = 0x82f63b78;
const T = new Int32Array(256 * 8);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[i] = c;
}
for (let i = 0; i < 256; i++) {
  let c = T[i];
  for (let t = 1; t < 8; t++) {
    c = T[c & 0xff] ^ (c >>> 8);
    T[t * 256 + i] = c;
  }
}

/** Extends `crc` (initially 0) over `buf[off, off+len)`; returns the unsigned CRC32C. */
export function crc32c(buf: Uint8Array, off = 0, len = buf.length - off, crc = 0): number {
  let c = ~crc;
  let i = off;
  const end = off + len;
  const end8 = end - 7;
  if (len >= 64 && LITTLE_ENDIAN) {
    // Word-at-a-time fast path over an aligned little-endian Uint32Array view.
    while (((buf.byteOffset + i) & 3) !== 0) c = T[(c ^ buf[i++]) & 0xff] ^ (c >>> 8);
    const w = new Uint32Array(buf.buffer, buf.byteOffset + i, (end - i) >>> 2);
    const n8 = w.length & ~1;
    for (let j = 0; j < n8; j += 2) {
      const lo = c ^ w[j];
      const hi = w[j + 1];
      c = T[1792 + (lo & 0xff)] ^ T[1536 + ((lo >>> 8) & 0xff)] ^
        T[1280 + ((lo >>> 16) & 0xff)] ^ T[1024 + (lo >>> 24)] ^
        T[768 + (hi & 0xff)] ^ T[512 + ((hi >>> 8) & 0xff)] ^ T[256 + ((hi >>> 16) & 0xff)] ^
        T[hi >>> 24];
    }
    i += n8 * 4;
  }
  while (i < end8) {
    const lo = c ^ (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24));
    c = T[1792 + (lo & 0xff)] ^ T[1536 + ((lo >>> 8) & 0xff)] ^
      T[1280 + ((lo >>> 16) & 0xff)] ^ T[1024 + (lo >>> 24)] ^
      T[768 + buf[i + 4]] ^ T[512 + buf[i + 5]] ^ T[256 + buf[i + 6]] ^ T[buf[i + 7]];
    i += 8;
  }
  while (i < end) c = T[(c ^ buf[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const MASK_DELTA = 0xa282ead8;

/** Masks a CRC for storage (rotate right 15 bits and add a constant). */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

/** Inverse of {@linkcode maskCrc}. */
export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
