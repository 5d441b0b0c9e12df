/**
 * SSTable format constants shared by the writer and the reader (see FORMAT.md).
 *
 * File: data blocks | filter block | index block | footer (40 bytes).
 * Every block is followed by a 5-byte trailer: type u8 (0 = raw) | masked
 * CRC32C u32 BE of block bytes + type byte.
 * Footer: indexOffset u64 | indexSize u32 | filterOffset u64 | filterSize u32 |
 * version u32 | masked CRC32C u32 of the previous 28 bytes | magic u64.
 * @module
 */
import { readU32, readU64, writeU32, writeU64 } from "./bytes.ts";
import { crc32c, maskCrc, unmaskCrc } from "./crc32c.ts";

/** Block trailer size. */
export const BLOCK_TRAILER = 5;
/** Footer size. */
export const FOOTER_SIZE = 40;
/** Current table format version. */
export const TABLE_VERSION = 1;
/** Magic number ("gokvSST1") high and low halves. */
export const MAGIC_HI = 0x676f6b76;
/** Low half of the magic number. */
export const MAGIC_LO = 0x53535431;
/** Restart interval of data blocks. */
export const RESTART_INTERVAL = 16;

/** Decoded footer. */
export interface Footer {
  indexOffset: number;
  indexSize: number;
  filterOffset: number;
  filterSize: number;
  version: number;
}

/** Encodes a footer. */
export function encodeFooter(f: Footer): Uint8Array {
  const b = new Uint8Array(FOOTER_SIZE);
  writeU64(b, 0, f.indexOffset);
  writeU32(b, 8, f.indexSize);
  writeU64(b, 12, f.filterOffset);
  writeU32(b, 20, f.filterSize);
  writeU32(b, 24, f.version);
  writeU32(b, 28, maskCrc(crc32c(b, 0, 28)));
  writeU32(b, 32, MAGIC_HI);
  writeU32(b, 36, MAGIC_LO);
  return b;
}

/** Decodes a footer; returns an error string when invalid. */
export function decodeFooter(b: Uint8Array): Footer | string {
  if (b.length !== FOOTER_SIZE) return "short footer";
  if (readU32(b, 32) !== MAGIC_HI || readU32(b, 36) !== MAGIC_LO) return "bad magic number";
  if (unmaskCrc(readU32(b, 28)) !== crc32c(b, 0, 28)) return "footer checksum mismatch";
  const version = readU32(b, 24);
  if (version !== TABLE_VERSION) return `unsupported table version ${version}`;
  return {
    indexOffset: readU64(b, 0),
    indexSize: readU32(b, 8),
    filterOffset: readU64(b, 12),
    filterSize: readU32(b, 20),
    version,
  };
}

/** Writes the trailer for `block` (type 0) into `out` at `off`. */
export function writeBlockTrailer(block: Uint8Array, out: Uint8Array, off: number): void {
  out[off] = 0;
  writeU32(out, off + 1, maskCrc(crc32c(out, off, 1, crc32c(block))));
}

/** Checks the trailer that follows a block in `buf`; returns an error string or "". */
export function checkBlockTrailer(buf: Uint8Array, size: number): string {
  if (buf.length < size + BLOCK_TRAILER) return "block truncated";
  if (buf[size] !== 0) return `unknown block type ${buf[size]}`;
  const want = unmaskCrc(readU32(buf, size + 1));
  if (crc32c(buf, size, 1, crc32c(buf, 0, size)) !== want) return "block checksum mismatch";
  return "";
}
