/**
 * CRC-32C for the frame format: the LSM engine's implementation (lsm/crc32c.ts) with the
 * argument order transport/ uses.
 *
 * @module
 */
import { crc32c as lsmCrc32c } from "../lsm/crc32c.ts";

/**
 * Continues a CRC-32C over `bytes[start, end)`. Start with `crc = 0`; the result of one call
 * can be passed as `crc` to the next to checksum discontiguous pieces.
 */
export function crc32cUpdate(
  crc: number,
  bytes: Uint8Array,
  start = 0,
  end: number = bytes.length,
): number {
  return lsmCrc32c(bytes, start, end - start, crc);
}

/** The CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  return crc32cUpdate(0, bytes);
}
